"""``memtop --web``: the page's terminal draws the device pane, in a real headless Chromium.

The tests start ``memtop serve`` (6 GiB held on device 0 by a holder process) and ``memtop --web``
on it. One speaks the page's websocket itself (no browser needed); the other drives Chromium over
the DevTools protocol. textual-serve draws into a canvas (xterm.js),
so the DOM holds no text; two things prove the app rendered in the page:

* the bytes the page's websocket received, replayed through a terminal emulator (pyte) at the
  size the page asked for, show one row per device with its DRAM bar;
* a screenshot of the page has DRAM-bar-coloured pixels on exactly device 0's row (half of its
  DRAM is allocated) and none on device 1's (empty).

Chromium comes from the OS (CI installs Debian's ``chromium`` in ``.ci/run``); without it the
test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMTOP = [sys.executable, "-m", "tt_memtop"]
BROWSER = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)

def _dram_rgb() -> tuple[int, int, int]:
    """memtop-dark's $primary: the colour of the DRAM bar (themes/dark.tcss)."""
    from textual.color import Color

    from tt_memtop.ui.themes import THEMES

    c = Color.parse(next(t for t in THEMES if t.name == "memtop-dark").primary)
    return c.r, c.g, c.b


DRAM_RGB = _dram_rgb()


#: Installed before the page's own scripts: keep what its websocket receives and sends.
HOOK = """
window.__rx = []; window.__tx = [];
const Native = window.WebSocket;
window.WebSocket = function(url, protocols) {
  const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
  ws.addEventListener('message', (e) => {
    if (e.data instanceof ArrayBuffer) {
      let s = ''; const b = new Uint8Array(e.data);
      for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
      window.__rx.push(btoa(s));
    }
  });
  const send = ws.send.bind(ws);
  ws.send = (d) => { if (typeof d === 'string') window.__tx.push(d); return send(d); };
  return ws;
};
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
"""


def _sessions(sock: str) -> list[int]:
    """PIDs of the per-tab `memtop --read-only` processes watching ``sock``."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--read-only" in cmd and sock.encode() in cmd:
            out.append(int(d.name))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CDP:
    """The few DevTools-protocol calls this test needs, over aiohttp's websocket client."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.session: str | None = None

    async def call(self, method: str, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        await self.ws.send_str(json.dumps(msg))
        while True:
            reply = json.loads((await self.ws.receive(timeout=30)).data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def js(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r["result"].get("value")


def _screen(rx: list[str], tx: list[str]) -> tuple[list[str], int, int]:
    """The terminal the page was sent, replayed through pyte at the size the page last asked for."""
    import pyte

    cols, rows = 80, 24
    for m in tx:
        env = json.loads(m)
        if env[0] == "resize":
            cols, rows = env[1]["width"], env[1]["height"]
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    for chunk in rx:
        stream.feed(base64.b64decode(chunk))
    return list(screen.display), cols, rows


async def _drive(url: str, devtools: str, shot: Path) -> tuple[list[str], int, dict]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(devtools, max_msg_size=0) as ws:
        cdp = CDP(ws)
        target = (await cdp.call("Target.createTarget", url="about:blank"))["targetId"]
        cdp.session = (await cdp.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        await cdp.call("Page.enable")
        await cdp.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
        await cdp.call("Page.navigate", url=url)
        deadline = time.monotonic() + 90
        lines: list[str] = []
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            rx = await cdp.js("window.__rx || []") or []
            tx = await cdp.js("window.__tx || []") or []
            lines, cols, rows = _screen(rx, tx)
            if any(re.match(r"\s*1 WH\s+DRAM", line) for line in lines):
                break
        else:
            pytest.fail("the device pane never appeared in the page; screen:\n" + "\n".join(lines))
        await asyncio.sleep(1.0)  # let xterm.js paint the last frame
        first_byte = await cdp.js("document.body.classList.contains('-first-byte')")
        box = await cdp.js("(() => { const r = document.querySelector('.xterm-screen').getBoundingClientRect();"
                           " return {top: r.top, left: r.left, height: r.height, width: r.width}; })()")
        png = base64.b64decode((await cdp.call("Page.captureScreenshot", format="png"))["data"])
        shot.write_bytes(png)
        return lines, rows, {"box": box, "first_byte": first_byte}


HOLDER = """
import sys, anyio
from tt_memtop.client import AllocationClient
async def main():
    async with await AllocationClient.connect(sys.argv[1]) as c:
        await c.alloc(0, 6 << 30, 0, 0x10000)  # half of device 0's 12 GiB DRAM; device 1 stays empty
        await c.query(0)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
anyio.run(main)
"""


@pytest.fixture(scope="module")
def web_view():
    """``memtop serve`` with 6 GiB held on device 0, and ``memtop --web`` on it: yields (url, socket path)."""
    sock = str(Path(tempfile.mkdtemp(prefix="mtw", dir="/tmp")) / "s.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TEXTUAL_DRIVER", None)
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--devices", "2", "-q"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    holder = web = None
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert server.poll() is None and time.monotonic() < deadline, "memtop serve did not start"
            time.sleep(0.05)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        assert holder.stdout.readline().strip() == "ready"
        port = _free_port()
        web = subprocess.Popen([*MEMTOP, "--web", "--port", str(port), "--socket", sock, "--theme", "memtop-dark"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert web.poll() is None, web.stderr.read()
                assert time.monotonic() < deadline, "memtop --web did not listen"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/", sock
        web.send_signal(signal.SIGINT)
        assert web.wait(timeout=20) == 0, web.stderr.read()
        deadline = time.monotonic() + 10
        while _sessions(sock):
            assert time.monotonic() < deadline, f"tab processes outlived the web server: {_sessions(sock)}"
            time.sleep(0.2)
    finally:
        for proc in (web, holder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


def test_web_view_websocket_streams_the_device_pane(web_view):
    """Without a browser: the page's websocket, spoken by hand, carries a screen with one row per device."""
    import aiohttp

    url, _sock = web_view
    cols, rows = 160, 40

    async def read_screen() -> list[str]:
        rx: list[str] = []
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(url.replace("http:", "ws:") + f"ws?width={cols}&height={rows}") as ws:
            deadline = time.monotonic() + 60
            lines: list[str] = []
            while time.monotonic() < deadline:
                try:
                    msg = await ws.receive(timeout=1.0)
                except asyncio.TimeoutError:
                    msg = None
                if msg is not None and msg.type == aiohttp.WSMsgType.BINARY:
                    rx.append(base64.b64encode(msg.data).decode())
                lines = _screen(rx, [json.dumps(["resize", {"width": cols, "height": rows}])])[0]
                if any(re.match(r"\s*1 WH\s+DRAM", line) for line in lines):
                    return lines
            raise AssertionError("no device pane on the websocket; screen:\n" + "\n".join(lines))

    lines = asyncio.run(read_screen())
    row0 = next(line for line in lines if re.match(r"\s*0 WH\s+DRAM", line))
    assert "6.0 GiB" in row0 and "50.0%" in row0, row0


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (CI installs Debian's `chromium` in "
                    ".ci/run; locally: apt-get install chromium)")
def test_web_view_renders_the_device_pane_in_chromium(web_view, tmp_path):
    from PIL import Image

    url, _sock = web_view
    profile = tempfile.mkdtemp(prefix="mtchrome")
    browser = subprocess.Popen([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
                                "--remote-debugging-port=0", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        devtools = None
        deadline = time.monotonic() + 30
        while devtools is None:
            line = browser.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                devtools = m.group(1)
            assert line or browser.poll() is None, "Chromium exited"
            assert time.monotonic() < deadline, "Chromium did not open DevTools"
        lines, rows, page = asyncio.run(_drive(url, devtools, tmp_path / "web.png"))
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=15)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)

    assert page["first_byte"], "the page never marked the terminal as receiving"
    row0 = next(i for i, line in enumerate(lines) if re.match(r"\s*0 WH\s+DRAM", line))
    row1 = next(i for i, line in enumerate(lines) if re.match(r"\s*1 WH\s+DRAM", line))
    assert "6.0 GiB" in lines[row0] and "50.0%" in lines[row0], lines[row0]

    img = Image.open(tmp_path / "web.png").convert("RGB")
    box = page["box"]
    cell_h = box["height"] / rows

    def dram_pixels(row: int) -> int:
        top = int(box["top"] + row * cell_h + 1)
        band = img.crop((int(box["left"]), top, int(box["left"] + box["width"]), int(top + cell_h - 2)))
        colours = band.getcolors(band.width * band.height) or []
        return sum(n for n, px in colours if all(abs(a - b) <= 8 for a, b in zip(px, DRAM_RGB, strict=True)))

    assert len(img.getcolors(img.width * img.height) or []) > 8, "the screenshot is blank"
    on0, on1 = dram_pixels(row0), dram_pixels(row1)
    assert on0 > 200, f"no DRAM bar painted on device 0's row ({on0} px)"
    assert on1 < on0 / 10, f"device 1 (empty) shows a DRAM bar too ({on1} vs {on0} px)"
