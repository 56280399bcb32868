"""Out of memory with memory free (PROTOCOL.md §8: "Not enough space to allocate X B L1 buffer across N
banks, where each bank needs to store Y B, but bank size is only Z B"): the main screen says, before the
allocation fails, that the next buffer of the size the program allocates will not fit, and why (the
largest free range of one bank vs what each bank needs), not only the address map behind `m`."""

from __future__ import annotations

import anyio
import pytest
from ui_fakes import FakeSource, MiB

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.insight import warning_text
from tt_memtop.core.model import MonitorState
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.device_pane import DevicePane

L1 = 1
BASE = 134_208  # Wormhole's lowest allocatable L1 address (16-byte aligned)
PER_BANK = MiB // 64  # a 1 MiB interleaved L1 buffer over Wormhole's 64 L1 banks


def fragmented_l1() -> list[list[Event]]:
    """L1 filled with 1 MiB buffers, four scattered ones freed, then the top two traded for one 2 MiB
    buffer (the size the program allocates now): 4.3 MiB free in all, 16 KiB the largest range of a bank."""
    seq = 0

    def ev(kind, addr, size):
        nonlocal seq
        seq += 1
        return Event(kind, seq=seq, ts_ns=1_000_000 * seq, pid=4242, device=0, buffer_type=L1, buffer_id=addr,
                     size=size, ref_count=1 if kind is EventKind.ALLOC else 0)

    A, F = EventKind.ALLOC, EventKind.FREE  # noqa: N806
    return [[ev(A, BASE + i * PER_BANK, MiB) for i in range(83)],
            [ev(F, BASE + i * PER_BANK, MiB) for i in (10, 30, 50, 70, 81, 82)],
            [ev(A, BASE + 81 * PER_BANK, 2 * MiB)]]


def test_the_warning_says_it_in_the_terms_of_tt_metal_s_error():
    w = {"pool": "L1", "level": "would_fail", "typical_bytes": 2 * MiB, "typical_per_bank": 32768,
         "largest_free_bytes": 16384, "banks": 64, "free_per_bank": 70592}
    assert warning_text(0, w) == ("device 0 L1: the next 2,097,152 B buffer across 64 banks needs 32,768 B per "
                                  "bank; the largest free range is 16,384 B per bank, 4,517,888 B free in all: "
                                  "it will not fit")


@pytest.mark.parametrize("size", [(200, 50), (80, 24)])
async def test_main_screen_warns_before_the_allocation_fails(size):
    app = MemtopApp(FakeSource(1, fragmented_l1()), clock=lambda: 0.0, state=MonitorState(), sample_period=0.1)
    async with app.run_test(size=size) as pilot:
        pane = app.query_one(DevicePane)
        with anyio.fail_after(20):
            while not pane.alerts:
                await pilot.pause(0.05)
        await pilot.pause(0.2)
        text = "\n".join("".join(s.text for s in ln) for ln in pane._build_lines(pane.scrollable_content_region.width))
    if size[0] >= 200:
        assert "device 0 L1: the next 2,097,152 B buffer across 64 banks needs 32,768 B per bank; the largest " \
               "free range is 16,384 B per bank" in text, text
        assert "it will not fit · m: the banks" in text
    else:
        assert "⚠ dev 0 L1: next 2.0 MiB won’t fit (32.0 KiB/bank needed, largest free 16.0 KiB" in text, text


def test_attached_to_a_fragmented_run_the_warning_needs_no_new_allocation():
    """`memtop --json` (or a monitor attaching) after the allocations: the snapshot's live buffers say what
    size the program allocates; there was no warning until the next allocation came."""
    from tt_memtop.core.registry import Registry

    reg = Registry()
    for batch in fragmented_l1():
        for e in batch:
            reg.apply_event(e)
    st = MonitorState()
    st.insight.load(reg, None, 1)
    warnings = st.insight.headroom(0).warnings
    assert [(w["pool"], w["level"], w["typical_bytes"]) for w in warnings] == [("L1", "would_fail", 2 * MiB)]
