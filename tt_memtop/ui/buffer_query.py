"""Filter, group and rank live buffers into a top-N window. Pure; runs in a worker thread.

With a million live buffers a full sort per frame is out of the question: this runs off the
render path on a copy of the registry's rows (:meth:`Registry.buffer_list`), keeps only the top
``limit`` rows, and the table then updates those rows in place by key. Ungrouped, the selection
runs over the rows themselves (:meth:`BufferList.top`: no Buffer per live entry; about 0.1 s of
CPU for a million, ``benchmarks/bench_ranking.py``); grouping by id still makes a Buffer per entry.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

from ..core.registry import COL_DEVICE, COL_ID, COL_PID, COL_SIZE, COL_TS, COL_TYPE, Buffer, BufferList
from .filters import ViewFilter

SORT_ORDER = ("size", "age", "device", "type", "pid", "id")


@dataclass(slots=True)
class Row:
    """One table row: a buffer, or a group of buffers with one id on several devices."""

    key: str
    buffer_id: int
    devices: tuple[int, ...]
    buffer_type: int
    size: int  # per device
    owner_pid: int
    ref_count: int
    alloc_ts_ns: int
    name: str

    @property
    def total(self) -> int:
        return self.size * len(self.devices)


@dataclass(slots=True)
class Window:
    matched: int  # buffers (or groups) that pass the filter
    live: int  # live buffers examined
    rows: list[Row]


def _sort_key(sort: str) -> Callable[[Row], object]:
    return {
        "size": lambda r: (r.total, r.buffer_id, -r.devices[0]),
        # older first when "descending": a smaller timestamp is a bigger age
        "age": lambda r: (-r.alloc_ts_ns, r.buffer_id, -r.devices[0]),
        "device": lambda r: (-r.devices[0], -r.buffer_id),
        "type": lambda r: (-r.buffer_type, -r.buffer_id),
        "pid": lambda r: (-r.owner_pid, -r.buffer_id),
        "id": lambda r: (-r.buffer_id, -r.devices[0]),
    }[sort]


def _single(b: Buffer) -> Row:
    return Row(f"{b.device}:{b.buffer_type}:{b.buffer_id}", b.buffer_id, (b.device,), b.buffer_type, b.size,
               b.owner_pid, b.ref_count, b.alloc_ts_ns, b.name)


#: The buffer order of each sort as (row column, sign) pairs for :meth:`Registry.top` (the same keys as
#: ``bkey`` below: ties of one id on several devices in device order, whatever the registry's order).
ROW_ORDER = {
    "size": ((COL_SIZE, 1), (COL_ID, 1), (COL_DEVICE, -1)),
    "age": ((COL_TS, -1), (COL_ID, 1), (COL_DEVICE, -1)),
    "device": ((COL_DEVICE, -1), (COL_ID, -1)),
    "type": ((COL_TYPE, -1), (COL_ID, -1)),
    "pid": ((COL_PID, -1), (COL_ID, -1)),
    "id": ((COL_ID, -1), (COL_DEVICE, -1)),
}


def compute_window(buffers: Iterable[Buffer], view_filter: ViewFilter, sort: str = "size", invert: bool = False,
                   group: bool = False, limit: int = 500,
                   pname: Callable[[int], str] | None = None) -> Window:
    """Rows of the top ``limit`` by ``sort`` ("descending" natural order unless ``invert``).

    From a :class:`~tt_memtop.core.registry.BufferList` (what the app ranks) the selection runs over
    the registry's row tuples (:meth:`BufferList.top`): a Buffer only for each row shown."""
    f = view_filter
    if not group and isinstance(buffers, BufferList):
        where = None
        if f.text:
            text_matches = f.text_matches

            def where(row, name: str) -> bool:
                return text_matches(row[2], row[4], row[1], name, pname(row[4]) if pname else "")

        matched, best = buffers.top(limit, ROW_ORDER[sort], smallest=invert, devices=f.devices, types=f.types,
                                    pids=f.pids, where=where)
        return Window(matched, len(buffers), [_single(b) for b in best])
    live = 0
    if f.active:
        text = bool(f.text)
        sel: list[Buffer] = []
        for b in buffers:
            live += 1
            if f.matches(b.device, b.buffer_type, b.owner_pid, b.buffer_id, b.name,
                         pname(b.owner_pid) if (text and pname) else ""):
                sel.append(b)
    else:
        sel = buffers if isinstance(buffers, list) else list(buffers)
        live = len(sel)
    if group:
        groups: dict[tuple[int, int, int, int], list[Buffer]] = {}
        for b in sel:
            groups.setdefault((b.buffer_id, b.buffer_type, b.owner_pid, b.size), []).append(b)
        rows_iter: list[Row] = []
        for (bid, bt, pid, size), bs in groups.items():
            devs = tuple(sorted(b.device for b in bs))
            first = min(bs, key=attrgetter("alloc_ts_ns"))
            rows_iter.append(Row(f"g:{bt}:{bid}:{pid}:{size}", bid, devs, bt, size, pid,
                                 max(b.ref_count for b in bs), first.alloc_ts_ns, first.name))
        matched = len(rows_iter)
        key = _sort_key(sort)
        top = (heapq.nsmallest if invert else heapq.nlargest)(limit, rows_iter, key=key)
    else:
        matched = len(sel)
        key = _sort_key(sort)
        # rank Buffers directly (no Row per live buffer), then wrap only the winners
        bkey = {
            # ties (one id on several devices) in device order, whatever the registry's order
            "size": lambda b: (b.size, b.buffer_id, -b.device),
            "age": lambda b: (-b.alloc_ts_ns, b.buffer_id, -b.device),
            "device": lambda b: (-b.device, -b.buffer_id),
            "type": lambda b: (-b.buffer_type, -b.buffer_id),
            "pid": lambda b: (-b.owner_pid, -b.buffer_id),
            "id": lambda b: (-b.buffer_id, -b.device),
        }[sort]
        best = (heapq.nsmallest if invert else heapq.nlargest)(limit, sel, key=bkey)
        top = [_single(b) for b in best]
    return Window(matched, live, top)
