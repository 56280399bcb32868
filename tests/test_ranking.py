"""Ranking the buffers pane from the registry's rows (:meth:`Registry.top`): the same rows, in the same
order, as ranking a Buffer per live entry did, for every sort and filter, at 200k+ live buffers; and
the pane of a real app showing that top."""

from __future__ import annotations

import random

import anyio
import pytest

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.core.registry import COL_ID, COL_SIZE, Registry
from tt_memtop.sources.base import Capability, EventBatch, Source, Status
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.buffer_query import SORT_ORDER, compute_window
from tt_memtop.ui.filters import ViewFilter

LIVE = 200_000


def _events(n: int, seed: int = 7, names: tuple[str, ...] = ("", "", "", "kv_cache", "weights")) -> list[Event]:
    """``n`` live entries with many ties: 8 devices, one id on several devices, few sizes, CBs and
    kernels sharing ids with buffers (their own id spaces), some names, equal timestamps."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        bt = rnd.choice((0, 0, 0, 1, 1, 3, 4, 5, 6))
        out.append(Event(EventKind.ALLOC, seq=i + 1, ts_ns=1_000 + i // 3, pid=100 + rnd.randrange(5),
                         device=rnd.randrange(8), buffer_type=bt, buffer_id=rnd.randrange(n // 4) * 32,
                         size=4096 * rnd.choice((1, 2, 2, 4, 64, 64)), ref_count=1,
                         name=rnd.choice(names)))
    return out


def _registry(n: int, pure: bool, names: tuple[str, ...] = ("", "", "", "kv_cache", "weights")) -> Registry:
    reg = Registry(pure=pure)
    for ev in _events(n * 6 // 5, names=names):
        reg.apply_event(ev)
    assert len(reg) >= n  # some keys repeat (replaced)
    return reg


@pytest.fixture(scope="module", params=[False, True], ids=["native", "pure"])
def registry(request) -> Registry:
    """Every sort x filter x direction: a smaller registry (the old path takes seconds a ranking)."""
    return _registry(8_000, request.param)


@pytest.fixture(scope="module")
def big_registry() -> Registry:
    """Names are rare here: the records come in big blocks (the cut by a block's own best is used)."""
    return _registry(LIVE, False, names=("",) * 2000 + ("kv_cache",))


@pytest.mark.parametrize("pure", [False, True], ids=["native", "pure"])
def test_the_top_of_big_blocks_of_records_is_the_top_from_buffers(pure):
    reg = _registry(12_000, pure, names=("",) * 500 + ("w",))
    for sort in SORT_ORDER:
        for filt in FILTERS[:4]:
            for invert in (False, True):
                new = compute_window(reg.buffer_list(), filt, sort, invert, limit=100)
                old = compute_window(iter(reg.buffer_list()), filt, sort, invert, limit=100)
                assert (new.matched, new.live, new.rows) == (old.matched, old.live, old.rows), (sort, filt, invert)


FILTERS = [ViewFilter(), ViewFilter(devices=frozenset({3})), ViewFilter(types=frozenset({1, 5})),
           ViewFilter(pids=frozenset({101, 103})), ViewFilter(devices=frozenset({0, 1}), pids=frozenset({102})),
           ViewFilter(text="kv_cache"), ViewFilter(text="0x40")]


@pytest.mark.parametrize("sort", SORT_ORDER)
def test_the_top_from_rows_is_the_top_from_buffers(registry, sort):
    for filt in FILTERS:
        for invert in (False, True):
            new = compute_window(registry.buffer_list(), filt, sort, invert, limit=300, pname=lambda p: f"proc{p}")
            old = compute_window(iter(registry.buffer_list()), filt, sort, invert, limit=300,
                                 pname=lambda p: f"proc{p}")  # a Buffer per live entry, as before
            assert (new.matched, new.live) == (old.matched, old.live), (sort, filt, invert)
            assert new.rows == old.rows, (sort, filt, invert)


@pytest.mark.parametrize("sort,filt", [("size", ViewFilter()), ("age", ViewFilter(devices=frozenset({5})))])
def test_the_top_of_200k_live_buffers_from_rows_is_the_top_from_buffers(big_registry, sort, filt):
    new = compute_window(big_registry.buffer_list(), filt, sort)
    old = compute_window(iter(big_registry.buffer_list()), filt, sort)
    assert new.live >= LIVE and (new.matched, new.live, new.rows) == (old.matched, old.live, old.rows)


def test_top_ranks_by_any_columns_and_counts_what_matches(registry):
    everything = list(registry.buffers())
    matched, best = registry.top(10, ((COL_SIZE, 1), (COL_ID, -1)), devices={2})
    on2 = [b for b in everything if b.device == 2]
    assert matched == len(on2)
    assert best == sorted(on2, key=lambda b: (-b.size, b.buffer_id))[:10]
    matched, best = registry.top(5, ((COL_SIZE, 1),), smallest=True)
    assert matched == len(everything) and [b.size for b in best] == [4096] * 5
    assert registry.top(0)[1] == [] and registry.top(0)[0] == len(everything)


class _Quiet(Source):
    """A connected source with per-buffer events that sends nothing more."""

    description = "quiet"
    local = False

    async def run(self, emit) -> None:
        emit(Status("connected", capabilities=frozenset({Capability.EVENTS, Capability.TOTALS})))
        await anyio.sleep_forever()


async def test_the_buffers_pane_shows_the_top_of_200k_live_buffers():
    events = _events(LIVE * 6 // 5, seed=11)
    state = MonitorState()
    state.apply(EventBatch(events))  # the state a long run left (folding it through the app takes longer)
    reg = state.registry
    assert len(reg) >= LIVE
    app = MemtopApp(_Quiet(), clock=lambda: 0.0, state=state, pane="buffers")
    expected = sorted(reg.buffers(), key=lambda b: (-b.size, -b.buffer_id, b.device))[:app.buffer_limit]
    async with app.run_test(size=(160, 45)) as pilot:
        with anyio.fail_after(120):
            while not (app._window is not None and app._window.live == len(reg)
                       and app.w_buffers.table.row_count == len(expected)):
                await pilot.pause(0.05)
        await pilot.pause(0.1)
        table = app.w_buffers.table
        shown = [table.key_of(row.key) for row in table.ordered_rows]  # the buffer each row shows
        assert shown == [f"{b.device}:{b.buffer_type}:{b.buffer_id}" for b in expected]


def test_ranking_makes_a_buffer_only_per_row_shown(big_registry, monkeypatch):
    import tt_memtop.core.registry as registry_module

    made = []

    class Counted(registry_module.Buffer):
        __slots__ = ()

        def __init__(self, *args, **kw) -> None:
            made.append(1)
            super().__init__(*args, **kw)

    snapshot = big_registry.buffer_list()
    monkeypatch.setattr(registry_module, "Buffer", Counted)
    for sort in ("size", "age"):
        window = compute_window(snapshot, ViewFilter(), sort, limit=200)
        assert len(window.rows) == 200 and window.live >= LIVE
    assert len(made) == 400  # not one per live buffer
