"""MonitorState: what a monitor knows after attaching to a server mid-run."""

from tt_memtop.core.devices import Inventory
from tt_memtop.core.model import MonitorState
from tt_memtop.core.phases import Phase, PhaseTracker
from tt_memtop.core.protocol import BufferType
from tt_memtop.core.registry import Buffer
from tt_memtop.sources.base import Snapshot

S = 1_000_000_000


def resident_llama(pid: int = 77) -> list[Buffer]:
    """What a T3K Llama process holds while it replays its trace: weights, then one TRACE per device."""
    bufs = []
    seq = 0
    for i in range(40):
        for d in range(8):
            seq += 1
            bufs.append(Buffer(d, 0x100000 + i * 0x800000, int(BufferType.DRAM), 8 << 20, pid, 1, i * S // 10, seq))
    for d in range(8):
        seq += 1
        bufs.append(Buffer(d, 0x3E363C80, int(BufferType.TRACE), 12_503_040, pid, 1, 10 * S + d * 1000, seq))
    return bufs


def test_attaching_during_replay_shows_replay():
    st = MonitorState(phases=PhaseTracker())
    st.apply(Snapshot(resident_llama(), 328, 20 * S, Inventory.uniform(8)))
    assert st.registry.wire_totals(3)[3] == 12_503_040
    assert st.phases.phase(77) == Phase.REPLAY
    assert st.phases.current(77).devices == tuple(range(8))


def test_attaching_to_a_process_without_trace_does_not_invent_one():
    st = MonitorState(phases=PhaseTracker())
    st.apply(Snapshot([b for b in resident_llama() if b.buffer_type != BufferType.TRACE], 320, 20 * S))
    assert st.phases.phase(77) not in (Phase.CAPTURE, Phase.REPLAY, Phase.RELEASED)


def test_a_resync_snapshot_does_not_replay_history_twice():
    st = MonitorState(phases=PhaseTracker())
    st.apply(Snapshot(resident_llama(), 328, 20 * S))
    before = st.phases.segments()
    st.apply(Snapshot(resident_llama(), 328, 21 * S))  # a slow monitor's fresh snapshot
    assert st.phases.segments() == before
