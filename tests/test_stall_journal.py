"""The journal's periodic fsync runs off the event loop (issue 8.10): on a busy disk an fsync takes up
to seconds, and on the loop thread every producer's send() would wait for it."""

from __future__ import annotations

import os
import struct
import threading
import time

import anyio
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

MSG = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")  # v144


def _req(type_: int, bid: int = 0, size: int = 0) -> bytes:
    return MSG.pack(type_, 0, size, 0, 1, bid, 0, *(0,) * 18)


async def test_journal_fsync_does_not_hold_the_loop(tmp_path, monkeypatch):
    path = short_socket(tmp_path)
    fsyncs: list[str] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        fsyncs.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(1.5)  # a disk that takes its time
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    async with running_server(path, journal=str(tmp_path / "state.journal")) as server:
        def client() -> float:
            worst = 0.0
            with raw_connect(path, timeout=20) as s:
                s.sendall(_req(1, bid=1, size=4096))  # makes a sync due
                end = time.monotonic() + 3.0  # the once-a-second sync comes up meanwhile
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    s.sendall(_req(3))
                    recv_exactly(s, 144)
                    worst = max(worst, time.monotonic() - t0)
                    time.sleep(0.02)
            return worst

        worst = await anyio.to_thread.run_sync(client)
        assert len(server.registry) == 1
    periodic = [name for name in fsyncs if name != threading.main_thread().name]
    assert periodic, fsyncs  # the periodic sync ran, in a worker thread
    assert worst < 1.2, worst  # a QUERY was answered while the fsync slept (on the loop: >= 1.5 s)
