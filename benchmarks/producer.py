"""A fast fake TT-Metal process: pre-packed 144-byte ALLOC/FREE messages sent in big chunks.

Usage: producer.py SOCKET N [KEEP]. Allocates (N+KEEP)//2 buffers and frees all but KEEP of them
(N messages in all), then sends a QUERY and waits for the reply so that, when it exits, the
server has applied everything. Buffer ids are (pid << 32) | i, so producers never collide.
Prints "<pid> <seconds spent sending>".
"""

import os
import socket
import struct
import sys
import time

MSG = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")  # v144, PROTOCOL.md §2.5
TAIL = (0,) * 18


def messages(pid: int, n: int, keep: int) -> bytes:
    n_alloc = (n + keep) // 2
    n_free = n - n_alloc
    base = pid << 32
    pack = MSG.pack
    out = [pack(1, i % 4, 64 + i % 7, i % 5, pid, base | i, 0, *TAIL) for i in range(n_alloc)]
    out += [pack(2, i % 4, 0, 0, pid, base | i, 0, *TAIL) for i in range(n_free)]
    return b"".join(out)


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2])
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    pid = os.getpid()
    data = messages(pid, n, keep)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.connect(path)
    t0 = time.perf_counter()
    view = memoryview(data)
    for off in range(0, len(data), 1 << 20):
        s.sendall(view[off:off + (1 << 20)])
    s.sendall(MSG.pack(3, 0, 0, 0, pid, 0, 0, *TAIL))
    got = b""
    while len(got) < MSG.size:
        chunk = s.recv(MSG.size - len(got))
        if not chunk:
            break
        got += chunk
    print(pid, f"{time.perf_counter() - t0:.3f}", flush=True)
    s.close()


if __name__ == "__main__":
    main()
