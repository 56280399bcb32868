"""Local liveness of TT-Metal processes: ``/proc/PID``, sooner than the server's dead-PID cleanup.

The server checks its owners every 3-5 s; a monitor on the same host can tell at once that a
process was killed. A PID whose ``/proc`` entry was never seen is not judged (another PID
namespace, another host): :meth:`ProcLiveness.alive` returns None for it.
"""

from __future__ import annotations

import os

__all__ = ["ProcLiveness"]


class ProcLiveness:
    def __init__(self, proc_root: str = "/proc") -> None:
        self.root = proc_root
        self.seen: set[int] = set()

    def alive(self, pid: int) -> bool | None:
        """True if running here, False if it was seen here and is gone, None if it cannot tell."""
        if os.path.exists(os.path.join(self.root, str(pid))):
            self.seen.add(pid)
            return True
        return False if pid in self.seen else None
