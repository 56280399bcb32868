"""The message sequence that produced data/original_server/session_72byte.log (see its README)."""

from __future__ import annotations

from pathlib import Path

from tt_memtop.core.protocol import AllocMessage, BufferType, MsgType

DATA = Path(__file__).resolve().parent / "data"  # copies of ../shared/data: the tests need nothing outside the repo
SESSION_LOG = DATA / "original_server" / "session_72byte.log"
EXCERPTS = DATA / "log_excerpts.txt"
ORIGINAL_SOCKET = "/tmp/tt_allocation_server.sock"
PID_A = 8174
PID_B = 8216


def _alloc(pid: int, dev: int, size: int, bt: BufferType, bid: int) -> AllocMessage:
    return AllocMessage(type=MsgType.ALLOC, device_id=dev, size=size, buffer_type=int(bt), process_id=pid,
                        buffer_id=bid)


def _free(pid: int, dev: int, bid: int) -> AllocMessage:
    return AllocMessage(type=MsgType.FREE, device_id=dev, buffer_id=bid, process_id=pid)


def phase_a() -> list[AllocMessage]:
    """Steps 1-2: PID A's allocations, a ref-counted re-ALLOC, frees, an unknown free, SYSTEM_MEMORY."""
    msgs = []
    for dev in range(4):
        msgs += [_alloc(PID_A, dev, 1 << 20, BufferType.DRAM, 0x1B233EE0),
                 _alloc(PID_A, dev, 64 << 10, BufferType.L1, 0x19000 + 64 * dev),
                 _alloc(PID_A, dev, 24 << 10, BufferType.L1_SMALL, 0x8000),
                 _alloc(PID_A, dev, 12_503_040, BufferType.TRACE, 1043741824)]
    msgs += [_alloc(PID_A, 0, 64 << 10, BufferType.L1, 0x19000), _free(PID_A, 0, 0x19000),
             _free(PID_A, 1, 1043741824), _free(PID_A, 2, 0xDEAD000),
             _alloc(PID_A, 5, 256, BufferType.SYSTEM_MEMORY, 256)]
    return msgs


def phase_b() -> list[AllocMessage]:
    """Step 3: the short-lived PID B."""
    return [_alloc(PID_B, 6, 4096, BufferType.L1, 30583), _alloc(PID_B, 6, 8192, BufferType.DRAM, 34952)]


def session_lines() -> list[str]:
    return SESSION_LOG.read_text(encoding="utf-8").split("\n")[:-1]
