"""Does a PID exist on this host? One ``kill(pid, 0)`` rule for the server, the SHM reader and writer."""

from __future__ import annotations

import os

__all__ = ["pid_exists"]


def pid_exists(pid: int) -> bool:
    """``kill(pid, 0)`` for a positive PID: EPERM means it exists (another user's process), as TT-Metal
    and tt_smi read it; any other failure means it does not. What a PID <= 0 means is the caller's."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:  # ProcessLookupError, or a PID the kernel rejects
        return False
    return True
