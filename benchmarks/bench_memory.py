"""Memory per live buffer, server and monitor, compiled table and pure Python (issue 15: <= 100 B each,
1 M live buffers in <= 150 MB RSS per process).

* server: a real ``memtop serve`` process (``--quiet``), filled with ``--live`` ALLOCs through its
  socket (144-byte frames, one QUERY barrier); RSS before and after, from /proc.
* monitor: a fresh process with a :class:`MonitorState` (phase inference on, as the TUI runs it) fed
  one SNAPSHOT record of ``--live`` buffers decoded by the subscription client's codec, then asked
  what the TUI's first frame asks (every device's pool figures, which builds the bank maps); RSS
  before and after (the decoded record dropped), the peak (VmHWM), and the breakdown: the
  registry's rows and the bank maps by their own accounting, the rest by difference. ``--trace``
  adds a run under tracemalloc with the top allocating lines.
* watch (``--watch``): a monitor that *watches* ``--live`` buffers being allocated instead of
  attaching to them: a fresh :class:`MonitorState` (phase inference on) folds as many ALLOC events
  (the snapshot's buffers, in allocation order, made one chunk at a time) in chunks of 512, as the
  app's fold does, then the first frame's queries; RSS before and after, and the same breakdown.

Each figure is measured in its own process, native and pure interleaved (A B A B with --repeat 2).

    python benchmarks/bench_memory.py [--live 1000000] [--repeat 1] [--only server|monitor|watch] [--watch] [--trace]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TARGET_B, TARGET_RSS_MB = 100, 150


def _rss(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                got[k] = int(v.split()[0]) * 1024
    return got["VmRSS"], got["VmHWM"]


def server_figures(live: int, pure: bool) -> dict:
    from bench_stall import preload, query

    tmp = tempfile.mkdtemp(prefix="mtmem", dir="/tmp")
    path = os.path.join(tmp, "s.sock")
    env = {**os.environ, "MEMTOP_PURE_PYTHON": "1" if pure else "0"}
    srv = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--quiet", "--devices", "8",
                            "--cleanup-interval", "3600", "--stats-interval", "3600"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if srv.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("memtop serve did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        rss0, _ = _rss(srv.pid)
        t0 = time.perf_counter()
        preload(path, live, 8)
        fill_s = time.perf_counter() - t0
        assert query(path, 0) == 4096 * len(range(0, live, 8))
        time.sleep(1.5)  # the server's periodic tasks run once
        rss1, hwm = _rss(srv.pid)
    finally:
        srv.terminate()
        srv.wait(30)
    return {"rss0": rss0, "rss": rss1, "hwm": hwm, "per": (rss1 - rss0) / live, "fill_s": fill_s}


MONITOR = r"""
import gc, json, os, sys, time
sys.path.insert(0, sys.argv[3])
from bench_memory import _rss
from tt_memtop.core import eventcodec as codec
from tt_memtop.core.devices import Inventory
from tt_memtop.core.model import new_state
from tt_memtop.core.registry import Buffer
from tt_memtop.sources.base import Snapshot

live = int(sys.argv[1])
trace = sys.argv[2] == "trace"
watch = sys.argv[4] == "watch"
st = new_state()
gc.collect()
rss0, _ = _rss()
# one SNAPSHOT body as the server sends it: DRAM buffers over 8 devices, laid out without overlap
addr = [0x100000] * 8
if trace:
    import tracemalloc
    tracemalloc.start()
if watch:  # the same buffers as ALLOC events, folded in chunks of 512 as the app's fold does
    from tt_memtop.core.events import Event, EventKind
    ALLOC = EventKind.ALLOC
    t0 = time.perf_counter()
    for c in range(0, live, 512):
        evs = []
        for i in range(c, min(c + 512, live)):
            d = i % 8
            size = (4096, 16384, 65536, 2048)[i % 4]
            evs.append(Event(ALLOC, seq=i + 1, ts_ns=i * 600, pid=1000 + i % 4, device=d, buffer_type=0,
                             buffer_id=addr[d], size=size, ref_count=1))
            addr[d] += -(-size // 12 // 32) * 32
        st.apply_events(evs)
    del evs
else:
    body = bytearray(codec.encode_snapshot_head(1, 1, Inventory(), {}, live)[1:])
    for i in range(live):
        d = i % 8
        size = (4096, 16384, 65536, 2048)[i % 4]
        body += codec.encode_buffer(Buffer(d, addr[d], 0, size, 1000 + i % 4, 1, i * 600, i + 1))  # 1 M over 0.6 s
        addr[d] += -(-size // 12 // 32) * 32
    body = bytes(body)
    t0 = time.perf_counter()
    rec = codec.decode_snapshot_body(body)
    del body
    st.apply(Snapshot(rec.buffers, rec.seq, rec.ts_ns, rec.inventory))
    del rec
gc.collect()
load_s = time.perf_counter() - t0
rss_load, _ = _rss()
t0 = time.process_time()
for d in range(8):  # what the TUI's first frame asks: every device's pool figures (builds the bank maps)
    st.insight.device_doc(d)
query_s = time.process_time() - t0
gc.collect()
rss1, hwm = _rss()
reg = st.registry.nbytes() if hasattr(st.registry, "nbytes") else 0
maps = st.insight.map_nbytes() if hasattr(st.insight, "map_nbytes") else 0
out = {"rss0": rss0, "rss": rss1, "hwm": hwm, "per": (rss1 - rss0) / live, "per_load": (rss_load - rss0) / live,
       "load_s": load_s, "query_s": query_s, "native": getattr(st.registry, "native", False),
       "registry_per": reg / live, "maps_per": maps / live}
if trace:
    top = tracemalloc.take_snapshot().statistics("lineno")
    here = os.path.dirname(sys.argv[3])
    out["traced_per"] = sum(x.size for x in top) / live
    out["top"] = [(os.path.relpath(x.traceback[0].filename, here), x.traceback[0].lineno, x.size / live, x.count)
                  for x in top[:8]]
print(json.dumps(out))
"""


def monitor_figures(live: int, pure: bool, trace: bool = False, watch: bool = False) -> dict:
    env = {**os.environ, "MEMTOP_PURE_PYTHON": "1" if pure else "0"}
    out = subprocess.run([sys.executable, "-c", MONITOR, str(live), "trace" if trace else "", HERE,
                          "watch" if watch else ""], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def watch_figures(live: int, pure: bool, trace: bool = False) -> dict:
    return monitor_figures(live, pure, trace, watch=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", choices=("server", "monitor", "watch"))
    ap.add_argument("--watch", action="store_true", help="also the monitor that watches the buffers being allocated")
    ap.add_argument("--trace", action="store_true",
                    help="monitor: one more run per implementation under tracemalloc, its top lines by file:line")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.live:,} live buffers; target <= {TARGET_B} B/buffer, "
          f"<= {TARGET_RSS_MB} MB RSS (at 1 M)")
    for what, fn in (("server", server_figures), ("monitor", monitor_figures), ("watch", watch_figures)):
        if (args.only and args.only != what) or (what == "watch" and not (args.watch or args.only == "watch")):
            continue
        runs: dict[str, list[dict]] = {"native": [], "pure": []}
        for _ in range(args.repeat):
            for impl in ("native", "pure"):
                runs[impl].append(fn(args.live, impl == "pure"))
        for impl, rs in runs.items():
            per = statistics.median(r["per"] for r in rs)
            rss = statistics.median(r["rss"] for r in rs) / 1e6
            hwm = statistics.median(r["hwm"] for r in rs) / 1e6
            print(f"{what:<8}{impl:<7} {per:6.0f} B/buffer ({per / TARGET_B:.2f}x target); RSS {rss:6.0f} MB "
                  f"({rss / TARGET_RSS_MB:.2f}x), peak {hwm:.0f} MB; started at {rs[0]['rss0'] / 1e6:.0f} MB", flush=True)
            if what in ("monitor", "watch"):
                reg = statistics.median(r["registry_per"] for r in rs)
                maps = statistics.median(r["maps_per"] for r in rs)
                print(f"{'':15} breakdown: registry {reg:.0f} B, bank maps {maps:.0f} B, the rest {per - reg - maps:.0f} B "
                      f"(feed, phases, history, leaks, allocator slack); {statistics.median(r['per_load'] for r in rs):.0f} B "
                      f"before the first query; load {statistics.median(r['load_s'] for r in rs):.1f} s, first query "
                      f"{statistics.median(r['query_s'] for r in rs):.2f} s CPU")
        if what in ("monitor", "watch") and args.trace:
            for impl in ("native", "pure"):
                r = fn(args.live, impl == "pure", trace=True)
                print(f"{what} {impl} under tracemalloc: {r['traced_per']:.0f} B/buffer traced; the top lines:")
                for path, line, per, count in r["top"]:
                    print(f"    {per:6.1f} B/buffer  {count:>9,} blocks  {path}:{line}")


if __name__ == "__main__":
    main()
