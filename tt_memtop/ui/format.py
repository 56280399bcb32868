"""Number and label formatting shared by every pane, so the same quantity always reads the same."""

from __future__ import annotations

import time

from ..core.events import EventKind
from ..core.protocol import BufferType

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
SPARK = "▁▂▃▄▅▆▇█"
MAX_ID = (1 << 64) - 1  # buffer ids are 64-bit device addresses

TYPE_NAMES = {int(t): t.name for t in BufferType}
#: short labels for narrow columns
TYPE_SHORT = {0: "DRAM", 1: "L1", 2: "SYS", 3: "L1S", 4: "TRACE", 5: "CB", 6: "KERN"}
KIND_LABELS = {
    EventKind.ALLOC: "alloc", EventKind.REF_INC: "ref+", EventKind.REF_DEC: "ref-", EventKind.FREE: "free",
    EventKind.FREE_UNKNOWN: "free?", EventKind.CLEANUP: "cleanup", EventKind.PROCESS_EXIT: "exit",
    EventKind.BAD_FRAME: "bad", EventKind.DUMP: "dump", EventKind.TOTALS: "totals",
}


def human(n: int | float, signed: bool = False) -> str:
    """Binary units, 3 significant digits: 12.0 GiB, 171.6 MiB, 256 B."""
    sign = ""
    if signed:
        sign = "+" if n > 0 else "-" if n < 0 else "±"
    n = abs(n)
    i = 0
    while n >= 1024 and i < len(_UNITS) - 1:
        n /= 1024
        i += 1
    if i == 0:
        return f"{sign}{int(n)} B"
    return f"{sign}{n:.1f} {_UNITS[i]}" if n < 100 else f"{sign}{n:.0f} {_UNITS[i]}"


def type_name(t: int) -> str:
    return TYPE_NAMES.get(t, str(t))


def buffer_id_text(buffer_id: int) -> str:
    return f"{buffer_id:#x}"


def parse_id(text: str) -> int:
    """A buffer id typed by a user: ``0x3e363c80``, ``3e363c80`` (has a-f) or ``1043741824``."""
    s = text.strip().lower().replace("_", "")
    if not s or s[0] in "+-":
        raise ValueError(f"not a buffer id: {text!r}")
    try:
        value = int(s, 16) if s.startswith("0x") or any(c in "abcdef" for c in s) else int(s, 10)
    except ValueError:
        raise ValueError(f"not a buffer id: {text.strip()!r}") from None
    if value > MAX_ID:
        raise ValueError(f"{text.strip()} is more than 64 bits: buffer ids are addresses (u64)")
    return value


def elapsed(ns: int) -> str:
    """Relative time ``HH:MM:SS.mmm`` (no wall clock: snapshots stay reproducible)."""
    if ns < 0:
        ns = 0
    ms = ns // 1_000_000
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def sparkline(values, width: int, scale: float = 0.0) -> str:
    """The last values as block characters on an absolute scale: ``scale`` is full height (a device's
    capacity, or a fixed fraction of it), so a 1 % change is a 1 % change and a flat line stays where it
    is. More values than cells: each cell shows the *max* of the values it covers (a spike is never
    averaged away). Zero is a blank; anything above zero at least the lowest block. ``scale`` 0 falls
    back to the values' own maximum."""
    vals = list(values)
    if not vals or width <= 0:
        return ""
    if len(vals) > width:
        per = len(vals) / width
        vals = [max(vals[int(i * per):max(int(i * per) + 1, int((i + 1) * per))]) for i in range(width)]
    top = scale if scale > 0 else max(vals)
    if top <= 0:
        return " " * len(vals)
    n = len(SPARK)
    out = []
    for v in vals:
        if v <= 0:
            out.append(" ")
        else:
            out.append(SPARK[min(n - 1, max(0, int(v * n / top - 1e-9)))])
    return "".join(out)


def rate(bytes_per_s: float) -> str:
    """A signed change per second: ``+1.2 MiB/s``, ``-256 B/s``; ``·`` for no change."""
    if not bytes_per_s:
        return "·"
    return human(round(bytes_per_s), signed=True) + "/s"


_wall_second: list = [None, ""]  # (second, time zone) wall_time formatted last, and its HH:MM:SS


def wall_time(ns: int) -> str:
    """Local wall-clock time of day ``HH:MM:SS.mmm`` (as TT-Metal's own logs print it). A feed's rows
    share a few seconds: the HH:MM:SS of the last second is kept (per time zone: ``tzset`` changes it)."""
    s, rem = divmod(ns, 1_000_000_000)
    key = (s, time.timezone, time.altzone, time.tzname)
    if _wall_second[0] != key:
        _wall_second[0], _wall_second[1] = key, time.strftime("%H:%M:%S", time.localtime(s))
    return f"{_wall_second[1]}.{rem // 1_000_000:03d}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 group`` / ``2 groups`` (``many`` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


#: (warn, crit) fractions of capacity; the config's [thresholds] sets them (:func:`set_thresholds`)
THRESHOLDS = [0.75, 0.90]


def set_thresholds(warn: float, crit: float) -> None:
    THRESHOLDS[0], THRESHOLDS[1] = warn, crit


def level(fraction: float) -> str:
    """Threshold name used for colours: ok, warn (≥75 % by default), crit (≥90 %)."""
    if fraction >= THRESHOLDS[1]:
        return "crit"
    if fraction >= THRESHOLDS[0]:
        return "warn"
    return "ok"
