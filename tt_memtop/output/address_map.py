"""The address map of one device's memory as text: one character per slice of a bank's address range.

Why: "3 GB free" hides that no 200 MB hole is left; a map of the bank shows where the holes are,
where the TRACE region sits (the top of every DRAM bank) and which hole is the largest. All banks
of a pool hold the same intervals (interleaved buffers take the same per-bank range in each), so
one bank's map stands for all of them. Used by ``memtop report --map`` and the TUI's map screen
(which colours the same cells).

Symbols: an upper-case letter where a slice is at least half used by one type (``D`` DRAM,
``L`` L1, ``S`` L1_SMALL, ``T`` TRACE), lower-case where less than half, ``*`` where several
types share it; ``.`` free, ``~`` free and part of the DRAM / L1 pool's largest free range, ``:``
free TRACE / L1_SMALL region (at the top of the bank), ``x`` reserved (below the unreserved base,
or outside every pool).
"""

from __future__ import annotations

from ..core.bankmap import Cell
from ..core.geometry import DRAM, L1, L1_SMALL, POOLS, TRACE

__all__ = ["LEGEND", "cell_symbol", "map_cells", "render_map"]

LETTER = {DRAM: "D", L1: "L", L1_SMALL: "S", TRACE: "T"}
LEGEND = ("D/L/S/T used by DRAM / L1 / L1_SMALL / TRACE (lower case: under half the slice), * mixed, "
          ". free, ~ largest free range, : free TRACE / L1_SMALL region, x reserved")


def cell_symbol(cell: Cell) -> str:
    used = {t: n for t, n in cell.used.items() if n > 0}
    width = cell.hi - cell.lo
    if used:
        if len(used) > 1:
            return "*"
        (t, n), = used.items()
        letter = LETTER.get(t, "?")
        return letter if 2 * n >= width else letter.lower()
    if cell.pool < 0:
        return "x"
    if cell.pool in (TRACE, L1_SMALL):
        return ":"
    return "~" if cell.in_largest_free else "."


def map_cells(insight, device: int, memory: int, ncells: int) -> tuple[list[Cell], int, int]:
    """The cells of ``memory`` (DRAM or L1) on ``device`` over the whole bank: (cells, lo, hi)."""
    g = insight.geometry(device)
    hi = g.dram_bank_size if memory == DRAM else g.worker_l1_size
    return insight.space(device, memory).cells(0, hi, ncells), 0, hi


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:,.2f} {unit}"
    return f"{n:,} B"


def pool_line(st) -> str:
    known = "" if st.range_known or st.pool in ("DRAM", "L1") else " (region inferred from addresses)"
    where = f" at {st.largest_free_at:#x}" if st.largest_free_at >= 0 else ""
    return (f"{st.pool:<8} {st.banks} banks, range {st.lo:#x}-{st.hi:#x}{known}: used {_size(st.used_per_bank)} "
            f"per bank, largest free {st.largest_free:,} B per bank{where} (largest allocatable "
            f"{_size(st.largest_allocatable)}), {st.free_segments:,} free segments, "
            f"fragmentation {100 * st.fragmentation:.1f}%")


def render_map(insight, device: int, memory: int, columns: int = 64, rows: int = 8) -> list[str]:
    """Lines: a title, ``rows`` rows of ``columns`` cells each prefixed with its address, the pools' figures."""
    cells, lo, hi = map_cells(insight, device, memory, columns * rows)
    width = cells[0].hi - cells[0].lo if cells else 0
    g = insight.geometry(device)
    banks = g.dram_banks if memory == DRAM else g.l1_banks
    name = "DRAM" if memory == DRAM else "L1"
    out = [f"Device {device} {name}: {banks} banks of {hi:,} B; one character = {_size(width)} of each bank"]
    digits = max(8, len(f"{hi:x}"))
    for r in range(rows):
        row = cells[r * columns:(r + 1) * columns]
        if not row:
            break
        out.append(f"  {row[0].lo:#0{digits + 2}x} " + "".join(cell_symbol(c) for c in row))
    for pool in ((DRAM, TRACE) if memory == DRAM else (L1, L1_SMALL)):
        st = insight.pool_stats(device, pool)
        if st.bank_size > 0:
            out.append("  " + pool_line(st))
        elif pool in (TRACE, L1_SMALL):
            out.append(f"  {POOLS[pool]:<8} no region (none configured or seen)")
    return out
