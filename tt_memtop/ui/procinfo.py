"""Process names and liveness from /proc, for PIDs that run on this machine.

Only consulted when the source is local (a replayed log's PIDs belong to another machine and
must not be matched against ours). Cached: /proc is read at most once per PID per ``ttl`` s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class ProcInfo:
    def __init__(self, local: bool, clock: Callable[[], float], proc: Path = Path("/proc"), ttl: float = 2.0) -> None:
        self.local = local
        self.clock = clock
        self.proc = proc
        self.ttl = ttl
        self.own_pid = os.getpid()
        self._cache: dict[int, tuple[float, str, str, bool | None]] = {}

    def _read(self, pid: int) -> tuple[str, str, bool | None]:
        if not self.local or pid <= 0:
            return "", "", None
        base = self.proc / str(pid)
        try:
            name = (base / "comm").read_text().strip()
            cmd = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            return name, cmd, True
        except OSError:
            return "", "", False

    def _get(self, pid: int) -> tuple[str, str, bool | None]:
        now = self.clock()
        hit = self._cache.get(pid)
        if hit is None or now - hit[0] > self.ttl:
            name, cmd, alive = self._read(pid)
            if hit is not None and not name:  # keep the name of a process that has just gone
                name, cmd = hit[1], hit[2]
            self._cache[pid] = (now, name, cmd, alive)
            return name, cmd, alive
        return hit[1], hit[2], hit[3]

    def name(self, pid: int) -> str:
        return self._get(pid)[0]

    def cmdline(self, pid: int) -> str:
        return self._get(pid)[1]

    def alive(self, pid: int) -> bool | None:
        """True / False when local, None when unknowable (remote or recorded PIDs)."""
        return self._get(pid)[2]
