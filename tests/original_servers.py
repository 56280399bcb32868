"""Build the REAL original allocation servers from their public sources, and drive them (test oracle).

No original source is in this repository. Point ``MEMTOP_ORIGINAL_SRC`` at a directory holding the
sources as ``<commit>/allocation_server_poc.cpp`` (the full 40-hex commit, or its first 8 hex
digits), fetched from ``tenstorrent/tt-metal``, folder
``tt_metal/programming_examples/alexp_examples/memory_utilization_monitor/`` (commits in
tests/data/oracle/README.md). :func:`build` compiles one of them with ``g++`` after the changes the
README lists (socket path; S4's device detection replaced by a stub reporting N Wormhole_B0
devices). The pytest fixture ``original_server`` (in test_original_layouts.py) skips, saying why,
when the compiler or the sources are missing.

Run as a script to capture fixtures: ``python tests/original_servers.py OUT_DIR`` (with
``MEMTOP_ORIGINAL_SRC`` set) writes ``s4_112_small_clients.{stdout,stderr,wire.json}``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

#: tag -> (commit, layout size)
SERVERS = {"S1": ("83d21905404187e13713ec75698ed1459e4c1ab0", 72),
           "S4": ("45039855e6467e4416281cf174bcbbe9176d73b8", 112)}
ENV = "MEMTOP_ORIGINAL_SRC"
CXXFLAGS = ["-std=c++17", "-O1", "-pthread", "-include", "array", "-include", "stdexcept", "-w"]

_STUB = '''    void detect_devices() {{
        std::cout << "🔍 Device detection (using TT-Metal APIs):" << std::endl;
        num_available_devices_ = {n};
        for (size_t i = 0; i < {n}; ++i) {{
            device_info_[i].is_available = true;
            device_info_[i].arch_type = 2;
            device_info_[i].num_dram_channels = 12;
            device_info_[i].dram_size_per_channel = 1073741824u;
            device_info_[i].l1_size_per_core = 1499136;
            device_info_[i].total_dram_size = 12ull * 1073741824ull;
            device_info_[i].total_l1_size = 1499136ull * 10 * 12;
            device_info_[i].grid_x = 10;
            device_info_[i].grid_y = 12;
            std::cout << "   Device " << i << ": Wormhole_B0 (" << (device_info_[i].total_dram_size / (1024 * 1024 * 1024))
                      << "GB DRAM, " << (device_info_[i].total_l1_size / (1024 * 1024)) << "MB L1)" << std::endl;
        }}
        std::cout << "   Total: " << num_available_devices_ << " device(s) detected" << std::endl;
    }}

public:'''


def source(tag: str) -> Path | None:
    """The source file of ``tag`` under $MEMTOP_ORIGINAL_SRC, or None."""
    root = os.environ.get(ENV)
    if not root:
        return None
    commit = SERVERS[tag][0]
    for name in (commit, commit[:8]):
        p = Path(root) / name / "allocation_server_poc.cpp"
        if p.is_file():
            return p
    return None


def why_unavailable(tag: str) -> str | None:
    """Why :func:`build` cannot build ``tag`` here (None: it can)."""
    if shutil.which("g++") is None:
        return "no C++ compiler (g++) on PATH"
    if not os.environ.get(ENV):
        return f"set {ENV} to a directory with <commit>/allocation_server_poc.cpp (see tests/original_servers.py)"
    if source(tag) is None:
        return f"{ENV} has no {SERVERS[tag][0][:8]}/allocation_server_poc.cpp"
    return None


def patched(tag: str, socket_path: str, devices: int = 2) -> str:
    text = source(tag).read_text(encoding="utf-8")
    text = text.replace('"/tmp/tt_allocation_server.sock"', json.dumps(socket_path))
    if "tt-metalium/host_api.hpp" in text:
        text = text.replace("#include <tt-metalium/host_api.hpp>\n", "")
        start = text.index("    const char* arch_to_string(tt::ARCH arch)")
        end = text.index("public:", start) + len("public:")
        text = text[:start] + _STUB.format(n=devices) + text[end:]
    return text


def build(tag: str, workdir: Path, socket_path: str, devices: int = 2) -> Path:
    """Compile ``tag`` into ``workdir``; returns the binary."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / f"{tag.lower()}.cpp"
    src.write_text(patched(tag, socket_path, devices), encoding="utf-8")
    exe = workdir / tag.lower()
    res = subprocess.run(["g++", *CXXFLAGS, "-o", str(exe), str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building {tag} failed:\n{res.stderr[-2000:]}")
    return exe


# ------------------------------------------------------------------------------------------------ driving
_HEAD = struct.Struct("<B3xiQB3xiQQ")


def req(size: int, t: int, device: int = 0, nbytes: int = 0, btype: int = 0, pid: int = 0, bid: int = 0) -> bytes:
    """A request of ``size`` bytes, zero tail, as every public client builds it (memset + fields)."""
    return _HEAD.pack(t, device, nbytes, btype, pid, bid, 0).ljust(size, b"\0")


def small_clients_steps(pid: int) -> list[dict]:
    """Issue 9.5/9.6 against a 112-byte server: a 72-byte client, a 112-byte one, validation the original lacks."""
    s72, s112 = 72, 112
    steps = []

    def send(conn, data):
        steps.append({"conn": conn, "send": data.hex()})

    def recv(conn, n):
        steps.append({"conn": conn, "recv_len": n})

    send(1, req(s72, 1, 0, 4096, 0, pid, 0x100))            # a 72-byte client (C1 / allocation_client_demo)
    send(1, req(s72, 1, 0, 0, 1, pid, 0x200))               # size 0: the 112-byte servers take it
    send(1, req(s72, 1, 1, 200 << 30, 0, pid, 0x300))       # 200 GiB: taken too (only S5 checks sizes)
    send(1, req(s72, 1, 1, 64, 7, pid, 0x400))              # buffer_type 7: refused, logged
    send(1, req(s72, 1, 1, 64, 9, pid, 0x401))              # ... every time
    send(1, req(s72, 42, 0, 0, 0, pid, 0))                  # unknown type: logged
    send(1, req(s72, 42, 0, 0, 0, pid, 0))                  # ... every time
    send(1, req(s72, 1, 0, 4096, 0, pid, 0x100))            # ref_count 2
    send(1, req(s72, 2, 0, 0, 0, pid, 0x100))               # ref_count 1 remaining
    send(1, req(s72, 3, 0))                                 # a 72-byte QUERY: answered in 112 bytes
    recv(1, s112)
    send(1, req(s72, 3, 1))
    recv(1, s112)
    send(2, req(s112, 1, 1, 8192, 1, pid, 0x500))           # a 112-byte client meanwhile
    send(2, req(s112, 3, 1))
    recv(2, s112)
    send(1, req(s72, 2, 0, 0, 0, pid, 0x100))               # FINAL
    send(1, req(s72, 2, 1, 0, 0, pid, 0x999))               # unknown buffer
    send(1, req(s72, 3, 0))
    recv(1, s112)
    steps.append({"conn": 2, "close": True})
    send(3, req(s72, 5))                                    # dump_remaining_buffers.py
    steps.append({"conn": 3, "close": True})
    return steps


def drive(path: str, steps: list[dict], pause: float = 0.01) -> list[dict]:
    """Run ``steps`` against the server at ``path``, one message per send with a pause (one struct per recv).

    Returns the steps with every ``recv_len`` replaced by the bytes received (``recv``)."""
    conns: dict[int, socket.socket] = {}
    out = []
    for step in steps:
        c = step["conn"]
        if "send" in step:
            if c not in conns:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(path)
                conns[c] = s
            conns[c].sendall(bytes.fromhex(step["send"]))
            time.sleep(pause)
            out.append(step)
        elif "recv_len" in step:
            n = step["recv_len"]
            data = b""
            while len(data) < n:
                chunk = conns[c].recv(n - len(data))
                if not chunk:
                    break
                data += chunk
            out.append({"conn": c, "recv": data.hex()})
        elif step.get("close"):
            conns.pop(c).close()
            time.sleep(pause)
            out.append(step)
    for s in conns.values():
        s.close()
    return out


def capture(out_dir: Path) -> None:
    """Build S4 (2 stub devices), drive it with :func:`small_clients_steps`, write the fixture files."""
    sock = "/tmp/oracle/s.sock"
    exe = build("S4", Path("/tmp/oracle/build"), sock, devices=2)
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    pid = os.getpid()
    steps = drive(sock, small_clients_steps(pid))
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    name = "s4_112_small_clients"
    (out_dir / f"{name}.stdout").write_bytes(stdout)
    (out_dir / f"{name}.stderr").write_bytes(stderr)
    (out_dir / f"{name}.wire.json").write_text(json.dumps({"server": "S4", "layout": 112, "pid": pid,
                                                            "steps": steps}, indent=1) + "\n")


if __name__ == "__main__":
    capture(Path(sys.argv[1]))


__all__ = ["SERVERS", "build", "capture", "drive", "req", "small_clients_steps", "why_unavailable"]
