"""The socket file never exists without a listener behind it.

A TT-Metal process (or a monitor, or a script waiting for the file) connects as soon as
/tmp/tt_allocation_server.sock appears. anyio's create_unix_listener binds and chmods in worker
threads and only then listens, so for a few thread hops the file was there but connect() was
refused (the fault suite hit it about one run in four). memtop serve now binds, sets the mode and
listens in one step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from server_helpers import query


def _first_connect(path: str) -> OSError | None:
    """Start `memtop serve`, connect the instant the file appears; the error, if refused."""
    proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path):  # spin: no sleep, to land inside any bind..listen window
            assert proc.poll() is None, "memtop serve exited before it bound its socket"
            assert time.monotonic() < deadline, "memtop serve did not bind its socket"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(path)
        except OSError as exc:
            return exc
        finally:
            s.close()
        assert query(path) == (0, 0, 0, 0)
        return None
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_connect_as_soon_as_the_socket_file_exists_is_accepted(tmp_path):
    errors = [_first_connect(str(tmp_path / f"s{i}.sock")) for i in range(3)]
    assert errors == [None, None, None]
