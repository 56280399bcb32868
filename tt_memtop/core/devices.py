"""Device inventory: what a server reports for DEVICE_INFO_QUERY, and capacities for the bars.

The inventory comes from configuration (``--devices N --arch A``; ``memtop serve`` also counts the
chips /dev/tenstorrent lists) and grows, like its last device, when a device beyond it is used.
Per-arch figures are the public defaults recorded in PROTOCOL.md §8; total L1 is computed the way
the original server does it (L1 per core × full grid).
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import Arch

GiB = 1024**3


@dataclass(frozen=True, slots=True)
class ArchSpec:
    arch: Arch
    name: str  # as the original prints it
    num_dram_channels: int
    dram_size_per_channel: int
    l1_size_per_core: int
    grid_x: int
    grid_y: int

    @property
    def total_dram(self) -> int:
        return self.num_dram_channels * self.dram_size_per_channel

    @property
    def total_l1(self) -> int:
        return self.l1_size_per_core * self.grid_x * self.grid_y


ARCHS: dict[str, ArchSpec] = {
    "grayskull": ArchSpec(Arch.GRAYSKULL, "Grayskull", 8, 1 * GiB, 1024 * 1024, 10, 12),
    # 12 x 1 GiB DRAM, 1,499,136 B L1 per core, full 10x12 SoC grid -> 179,896,320 B L1.
    "wormhole_b0": ArchSpec(Arch.WORMHOLE_B0, "Wormhole_B0", 12, 1 * GiB, 1_499_136, 10, 12),
    # 8 x 4 GiB GDDR6; 1.5 MiB L1 per core; 14x10 Tensix grid.
    "blackhole": ArchSpec(Arch.BLACKHOLE, "Blackhole", 8, 4 * GiB, 1_572_864, 14, 10),
}
ARCH_ALIASES = {"wormhole": "wormhole_b0", "wh": "wormhole_b0", "bh": "blackhole", "gs": "grayskull"}
ARCH_BY_ID = {spec.arch: spec for spec in ARCHS.values()}


def arch_spec(name: str) -> ArchSpec:
    key = name.strip().lower().replace("-", "_")
    key = ARCH_ALIASES.get(key, key)
    try:
        return ARCHS[key]
    except KeyError:
        raise ValueError(f"unknown arch {name!r} (expected one of {', '.join(ARCHS)})") from None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What DEVICE_INFO_RESPONSE says about one device."""

    device_id: int
    arch: Arch
    num_dram_channels: int
    dram_size_per_channel: int
    l1_size_per_core: int
    total_dram: int
    total_l1: int
    available: bool = True

    @property
    def arch_name(self) -> str:
        spec = ARCH_BY_ID.get(self.arch)
        return spec.name if spec else self.arch.name.title()


@dataclass(frozen=True, slots=True)
class Inventory:
    """The devices a server pretends to have (or a client learned from DEVICE_INFO)."""

    devices: tuple[DeviceInfo, ...] = ()

    @classmethod
    def uniform(cls, count: int, arch: str = "wormhole_b0") -> Inventory:
        spec = arch_spec(arch)
        return cls(tuple(
            DeviceInfo(i, spec.arch, spec.num_dram_channels, spec.dram_size_per_channel, spec.l1_size_per_core,
                       spec.total_dram, spec.total_l1)
            for i in range(count)
        ))

    def __len__(self) -> int:
        return len(self.devices)

    def grown_to(self, device_id: int) -> Inventory:
        """This inventory with devices up to ``device_id`` added, like its last device (same arch and
        capacities); itself when it already has that device or has no device to copy."""
        if not self.devices:
            return self
        start = max(d.device_id for d in self.devices) + 1  # a sparse inventory grows past its highest id
        if device_id < start:
            return self
        last = self.devices[-1]
        extra = tuple(DeviceInfo(i, last.arch, last.num_dram_channels, last.dram_size_per_channel,
                                 last.l1_size_per_core, last.total_dram, last.total_l1, last.available)
                      for i in range(start, device_id + 1))
        return Inventory(self.devices + extra)

    def get(self, device_id: int) -> DeviceInfo | None:
        if 0 <= device_id < len(self.devices) and self.devices[device_id].device_id == device_id:
            return self.devices[device_id]
        for d in self.devices:  # a sparse inventory (e.g. the chips that have a shared-memory region)
            if d.device_id == device_id:
                return d
        return None
