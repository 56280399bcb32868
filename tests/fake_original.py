"""A stand-in for the original C++ allocation servers, written from PROTOCOL.md §1-§4 (no original code).

    python tests/fake_original.py SOCKET VERSION [--busy-after-accept S]

VERSION is S1 (72 bytes, types 1-5), S2..S4 (112 bytes, types 1-7) or S5 (144 bytes, types 1-12,
MSG_PEEK resync). What matters for the tests is reproduced exactly: one ``recv(sizeof)`` per
message into a per-connection struct (short reads keep the stale tail), the S5 peek and one-byte
resync with its "Too many consecutive errors" close, "Unknown message type: N" on stderr for any
other type, QUERY / DEVICE_INFO_QUERY replies of the server's own size (zeroed but for device_id
and the counters). Counters follow ALLOC (and CB/KERNEL on S5); FREE is ignored. Every message
received is also written to stdout as ``RECV type=T n=N`` so a test can see what a client sent.
``--busy-after-accept S`` sleeps S seconds before reading a new connection (a busy server).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

SIZES = {"S1": 72, "S2": 112, "S3": 112, "S4": 112, "S5": 144}
KNOWN = {"S1": range(1, 6), "S2": range(1, 8), "S3": range(1, 8), "S4": range(1, 8), "S5": range(1, 13)}
HEADER = struct.Struct("<B3xiQB3xiQQ")


class Fake:
    def __init__(self, version: str, busy: float) -> None:
        self.version = version
        self.size = SIZES[version]
        self.busy = busy
        self.lock = threading.Lock()
        self.counters = [[0] * 6 for _ in range(8)]  # dram, l1, l1_small, trace, cb, kernel

    def err(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def out(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def reply(self, conn: socket.socket, mtype: int, device: int, info: bool) -> None:
        buf = bytearray(self.size)
        struct.pack_into("<B3xi", buf, 0, mtype, device)
        if not info and 0 <= device < 8:
            c = self.counters[device]
            struct.pack_into("<4Q", buf, 40, *c[:4])
            if self.size == 144:
                struct.pack_into("<2Q", buf, 72, *c[4:])
        conn.sendall(bytes(buf))

    def handle(self, msg: bytearray, conn: socket.socket, n: int) -> None:
        t, dev, size, btype, pid, bid, ts = HEADER.unpack_from(msg, 0)
        self.out(f"RECV type={t} n={n}")
        if t not in KNOWN[self.version] or t in (4, 7):
            self.err(f"Unknown message type: {t}")
            return
        with self.lock:
            if t == 1 and btype <= 4 and 0 <= dev < 8:
                self.counters[dev][(0, 1, 2, 2, 3)[btype]] += size
            elif t == 8 and 0 <= dev < 8:
                self.counters[dev][4] += size
            elif t == 10 and 0 <= dev < 8:
                self.counters[dev][5] += size
        if t == 3:
            self.reply(conn, 4, dev, False)
        elif t == 6:
            self.reply(conn, 7, dev, True)
        elif t == 5:
            self.out("📋 Received DUMP_REMAINING request...")

    def serve_client(self, conn: socket.socket) -> None:
        if self.busy:
            time.sleep(self.busy)
        msg = bytearray(self.size)
        errors = 0
        with conn:
            while True:
                try:
                    if self.version == "S5":
                        peek = conn.recv(self.size, socket.MSG_PEEK)
                        if not peek:
                            break
                        if not 1 <= peek[0] <= 12:
                            errors += 1
                            if errors >= 10:
                                self.err(f"⚠️  Too many consecutive errors ({errors}) - closing connection "
                                         f"(likely protocol mismatch)")
                                break
                            conn.recv(1)
                            continue
                        errors = 0
                    data = conn.recv(self.size)
                except OSError:
                    break
                if not data:
                    break
                msg[: len(data)] = data
                self.handle(msg, conn, len(data))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("version", choices=sorted(SIZES))
    ap.add_argument("--busy-after-accept", type=float, default=0.0)
    a = ap.parse_args()
    fake = Fake(a.version, a.busy_after_accept)
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.socket)
    srv.listen(128)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    fake.out(f"READY {a.version}")
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=fake.serve_client, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
