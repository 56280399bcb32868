"""What the user chose to see: one :class:`ViewFilter` shared by the bars, feed, buffers and processes.

Kept apart from the widgets so every pane filters the same way, and so ``--device`` / ``--type`` /
``--pid`` and the on-screen filter keys produce the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.protocol import BufferType
from .format import TYPE_NAMES


def parse_int_set(text: str | None) -> frozenset[int]:
    """``"0,3"`` / ``"0-3"`` / ``"1, 5-6"`` -> {0, 3} ... Empty -> empty (= all)."""
    out: set[int] = set()
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a or b - a > 4096:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a number or a range like 0-3") from None
    return frozenset(out)


def parse_types(text: str | None) -> frozenset[int]:
    """``"TRACE,L1"`` -> {4, 1}. Names or numbers; empty -> empty (= all)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        out.add(int(part) if part.isdigit() else int(BufferType.parse(part)))
    return frozenset(out)


@dataclass(frozen=True)
class ViewFilter:
    """Empty sets mean "all". ``text`` matches id (hex/decimal), type, PID, process or buffer name."""

    devices: frozenset[int] = field(default_factory=frozenset)
    types: frozenset[int] = field(default_factory=frozenset)
    pids: frozenset[int] = field(default_factory=frozenset)
    text: str = ""

    @classmethod
    def from_args(cls, devices: str | None, types: str | None, pids: str | None) -> ViewFilter:
        return cls(parse_int_set(devices), parse_types(types), parse_int_set(pids))

    @property
    def active(self) -> bool:
        return bool(self.devices or self.types or self.pids or self.text)

    def with_(self, **kw) -> ViewFilter:
        return replace(self, **kw)

    def device_ok(self, device: int) -> bool:
        return not self.devices or device in self.devices

    def type_ok(self, t: int) -> bool:
        return not self.types or t in self.types

    def matches(self, device: int, buffer_type: int, pid: int, buffer_id: int, name: str = "",
                pname: str = "") -> bool:
        """The one predicate every list uses."""
        if self.devices and device not in self.devices:
            return False
        if self.types and buffer_type not in self.types:
            return False
        if self.pids and pid not in self.pids:
            return False
        if self.text:
            return self.text_matches(buffer_type, pid, buffer_id, name, pname)
        return True

    def text_matches(self, buffer_type: int, pid: int, buffer_id: int, name: str = "", pname: str = "") -> bool:
        t = self.text.lower()
        hay = f"{buffer_id:#x} {buffer_id} {TYPE_NAMES.get(buffer_type, '')} {pid} {name} {pname}".lower()
        return t in hay

    def describe(self) -> str:
        """What is filtered, in words, for the header ("" when nothing)."""
        parts = []
        if self.devices:
            parts.append("dev " + ",".join(str(d) for d in sorted(self.devices)))
        if self.types:
            parts.append("type " + ",".join(TYPE_NAMES.get(t, str(t)) for t in sorted(self.types)))
        if self.pids:
            parts.append("pid " + ",".join(str(p) for p in sorted(self.pids)))
        if self.text:
            parts.append(f"text “{self.text}”")
        return " · ".join(parts)
