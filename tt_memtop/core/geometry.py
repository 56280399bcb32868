"""Bank geometry: how many banks each memory pool has, where its allocatable range lies, its alignment.

Why: an allocation fails when the largest free range *of one bank* is too small, not when the
device total is; answering "will the next one fit?" needs the per-bank address range TT-Metal's
allocator hands out. Pure data; no I/O.

The model (tt_metal/impl/allocator/, read at tenstorrent/tt-metal):

* **DRAM** — one bank per DRAM channel ("view"). ``init_one_bank_per_channel``: the bank is
  ``UNRESERVED | DRAM BANK | TRACE REGION``: DRAM buffers live in ``[dram_unreserved_base,
  bank_top - trace_region_size)``, TRACE buffers in ``[bank_top - trace_region_size, bank_top)``.
  ``trace_region_size`` is carved off *every* bank, while ``end_trace_capture`` compares the sum
  of the device's trace buffers against it (mesh_trace.cpp: "Creating trace buffers of size X B on
  MeshDevice N, but only Y B is allocated for trace region"). The Llama-on-T3K log agrees: with
  ``trace_region_size`` = 30,000,000 its TRACE buffer sits at 0x3e363c80 = 2**30 - 30,000,000.
* **L1** — one bank per compute-and-store worker core (``init_compute_and_storage_l1_bank_manager``):
  L1 buffers in ``[l1_unreserved_base, worker_l1_size - l1_small_size)``, allocated top-down;
  **L1_SMALL** takes the top ``l1_small_size`` bytes of every bank. Statically allocated circular
  buffers (CBs) grow up from ``l1_unreserved_base``, so the L1 headroom is the gap between the top
  of the CBs and the lowest L1 buffer.
* An interleaved buffer of ``size`` bytes takes ``SizeBytesPerBank`` = ceil(pages / banks) x the
  page size rounded to the alignment in every bank. The wire does not carry the page size, so we
  use ``ceil(size / banks)`` rounded up to the alignment (exact when the pages divide evenly,
  which is the common case for tiles; a lower bound otherwise).

Numbers (defaults; every one can be overridden, and DEVICE_INFO replaces the bank count, bank
size and L1 size when a server reports them):

* Wormhole_B0: 12 DRAM banks of a 1 GiB view; DRAM alignment 32 and unreserved base 32 (the OOM
  "... across 12 banks ... but bank size is only 1073741792 B" = 2**30 - 32); 64 L1 banks (8x8
  compute grid: "... L1 buffer across 64 banks ..."), worker L1 1,499,136 B, L1 bank 1,364,928 B
  with no L1_SMALL ("... but bank size is only 1364928 B"), hence unreserved base 134,208; L1
  alignment 16 (hostdevcommon ``L1_ALIGNMENT``).
* Blackhole: 8 DRAM banks of 4,278,190,080 B (4 GiB - 16 MiB); DRAM alignment and unreserved base
  64 ("... across 8 banks ... but bank size is 4278190016 B"); 130 L1 banks (p150: "... L1 buffer
  across 130 banks ... bank size is 1461760 B"), worker L1 1,572,864 B, hence unreserved base
  111,104; L1 alignment 16.

The L1 unreserved base moves between TT-Metal versions (firmware size); bank sizes seen in OOM
messages range from 1,329,888 to 1,382,720 B on Wormhole. ``trace_region_size`` and
``l1_small_size`` are chosen by the program at device open and are not on the wire: unless given,
they are *inferred* from the lowest TRACE / L1_SMALL address seen (the region must reach down at
least that far), and reported as inferred.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .protocol import Arch, BufferType

__all__ = ["ARCH_GEOMETRY", "ArchGeometry", "GeometryConfig", "PoolRange", "per_bank_size"]

DRAM, L1, L1_SMALL, TRACE = int(BufferType.DRAM), int(BufferType.L1), int(BufferType.L1_SMALL), int(BufferType.TRACE)
#: The pools with a per-bank address range, and the address space (memory) each lives in.
POOLS = {DRAM: "DRAM", TRACE: "TRACE", L1: "L1", L1_SMALL: "L1_SMALL"}
SPACE_OF = {DRAM: DRAM, TRACE: DRAM, L1: L1, L1_SMALL: L1}


def per_bank_size(size: int, banks: int, alignment: int) -> int:
    """Bytes an interleaved buffer of ``size`` takes in each of ``banks`` banks (page size unknown)."""
    per = -(-size // banks) if banks > 0 else size
    return -(-per // alignment) * alignment if alignment > 1 else per


@dataclass(frozen=True, slots=True)
class ArchGeometry:
    name: str
    dram_banks: int
    dram_bank_size: int  # the DRAM view per channel: bank top address
    dram_unreserved_base: int
    dram_alignment: int
    l1_banks: int
    worker_l1_size: int  # L1 top address
    l1_unreserved_base: int
    l1_alignment: int


ARCH_GEOMETRY: dict[Arch, ArchGeometry] = {
    Arch.WORMHOLE_B0: ArchGeometry("Wormhole_B0", 12, 1 << 30, 32, 32, 64, 1_499_136, 134_208, 16),
    Arch.BLACKHOLE: ArchGeometry("Blackhole", 8, 4_278_190_080, 64, 64, 130, 1_572_864, 111_104, 16),
    # Grayskull is unsupported by current TT-Metal; kept so its devices still get a map.
    Arch.GRAYSKULL: ArchGeometry("Grayskull", 8, 1 << 30, 32, 32, 108, 1 << 20, 0x32000, 16),
}


@dataclass(frozen=True, slots=True)
class GeometryConfig:
    """What the user told us (``--trace-region-size`` etc.); None = default / infer."""

    trace_region_size: int | None = None
    l1_small_size: int | None = None
    dram_banks: int | None = None
    l1_banks: int | None = None
    l1_unreserved_base: int | None = None


@dataclass(frozen=True, slots=True)
class PoolRange:
    """One pool's allocatable per-bank range ``[lo, hi)`` and how buffers are laid out in it."""

    pool: int  # BufferType
    banks: int
    lo: int
    hi: int
    alignment: int
    known: bool = True  # False: the boundary was inferred from addresses (or is a default)

    @property
    def name(self) -> str:
        return POOLS[self.pool]

    @property
    def bank_size(self) -> int:
        return max(0, self.hi - self.lo)

    def per_bank(self, size: int) -> int:
        return per_bank_size(size, self.banks, self.alignment)


def device_geometry(arch: Arch | None, config: GeometryConfig, info=None) -> ArchGeometry:
    """The geometry of one device: its arch's defaults, DEVICE_INFO's figures, then the user's overrides."""
    g = ARCH_GEOMETRY.get(arch, ARCH_GEOMETRY[Arch.WORMHOLE_B0]) if arch is not None else ARCH_GEOMETRY[Arch.WORMHOLE_B0]
    if info is not None and getattr(info, "available", True):
        if info.num_dram_channels > 0 and info.dram_size_per_channel > 0:
            g = replace(g, dram_banks=info.num_dram_channels, dram_bank_size=info.dram_size_per_channel)
        if info.l1_size_per_core > g.l1_unreserved_base:
            g = replace(g, worker_l1_size=info.l1_size_per_core)
    if config.dram_banks:
        g = replace(g, dram_banks=config.dram_banks)
    if config.l1_banks:
        g = replace(g, l1_banks=config.l1_banks)
    if config.l1_unreserved_base is not None:
        g = replace(g, l1_unreserved_base=config.l1_unreserved_base)
    return g


def pool_ranges(g: ArchGeometry, trace_region: int, trace_known: bool, l1_small: int,
                l1_small_known: bool) -> dict[int, PoolRange]:
    """The four pools' ranges for region sizes ``trace_region`` and ``l1_small`` (per bank)."""
    trace_lo = max(g.dram_unreserved_base, g.dram_bank_size - trace_region)
    small_lo = max(g.l1_unreserved_base, g.worker_l1_size - l1_small)
    return {
        DRAM: PoolRange(DRAM, g.dram_banks, g.dram_unreserved_base, trace_lo, g.dram_alignment, trace_known),
        TRACE: PoolRange(TRACE, g.dram_banks, trace_lo, g.dram_bank_size, g.dram_alignment, trace_known),
        L1: PoolRange(L1, g.l1_banks, g.l1_unreserved_base, small_lo, g.l1_alignment, l1_small_known),
        L1_SMALL: PoolRange(L1_SMALL, g.l1_banks, small_lo, g.worker_l1_size, g.l1_alignment, l1_small_known),
    }


def round_region(nbytes: int, alignment: int, banks: int) -> int:
    """``nbytes`` rounded up the way ``generate_config`` rounds ``trace_region_size`` (alignment x banks)."""
    step = max(1, alignment * max(1, banks))
    return -(-nbytes // step) * step
