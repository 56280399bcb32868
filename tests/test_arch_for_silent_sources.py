"""`--arch` for the sources that cannot say what hardware they report on: the 72-byte original server
(no DEVICE_INFO) and a log without a device-detection block (S1). Without it the bars say "capacity
unknown" (nothing is assumed); with it they have that architecture's capacities. It was ignored there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_compat_originals import Original, _alloc

MEMTOP = [sys.executable, "-m", "tt_memtop"]
SESSION = Path(__file__).resolve().parent / "data" / "original_server" / "session_72byte.log"


def _json(*args: str) -> dict:
    p = subprocess.run([*MEMTOP, *args, "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _capacities(doc: dict) -> dict:
    return {d["device"]: (d.get("capacity") or {}) for d in doc["devices"]}


def test_polling_s1_with_arch_gives_capacities(tmp_path):
    path = str(tmp_path / "s1.sock")
    srv = Original(path, "S1")
    try:
        _alloc(path, 72, 0, 1 << 20)
        without = _json("--socket", path)
        given = _json("--socket", path, "--arch", "wormhole_b0")
    finally:
        srv.stop()
    assert "Unknown message type" not in srv.err  # still no DEVICE_INFO asked of S1
    assert not any(_capacities(without)[0].values()), without["devices"][0]
    assert _capacities(given)[0].get("DRAM") == 12 * 1024**3, given["devices"][0]


def test_following_an_s1_log_with_arch_gives_capacities(tmp_path):
    given = _json("--follow", str(SESSION), "--socket", str(tmp_path / "none.sock"), "--arch", "wormhole_b0")
    assert _capacities(given)[0].get("DRAM") == 12 * 1024**3, given["devices"][0]


def test_replaying_an_s1_log_with_arch_gives_capacities_and_a_detected_one_keeps_its_own():
    given = _json("replay", str(SESSION), "--arch", "wormhole_b0")
    assert _capacities(given)[0].get("DRAM") == 12 * 1024**3, given["devices"][0]
    assert not any(_capacities(_json("replay", str(SESSION)))[0].values())
    s4 = Path(__file__).resolve().parent / "data" / "oracle" / "s4_112.stdout"  # detection block: Wormhole_B0
    assert _json("replay", str(s4), "--arch", "blackhole")["devices"][0]["arch"] == "Wormhole_B0"
