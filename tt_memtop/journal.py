"""The server's journal (``memtop serve --journal FILE``): its registry survives a restart.

A journal is a recording (docs/RECORDING.md) written *durably*: every batch of events goes to the
file as soon as it is applied (a killed server loses nothing), the file is fsync'd once a second
and at shutdown (a machine crash loses at most the last second), and ownership records (who owns
the buffers of each reported PID: UID and host PIDs) are written as they change.

On start, :func:`load` reads the whole journal (a torn last record is skipped, as by every reader)
and rebuilds the registry; :func:`open_compacted` then replaces the file, atomically, with a new
one holding just that state (a SNAPSHOT and the ownership records) and starts the new session in
it. The journal therefore holds the live state plus one run's events, never the whole history
(use ``--record`` for that).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from .core.devices import Inventory
from .core.registry import Buffer, Registry
from .recording import RecordingReader, RecordingWriter

__all__ = ["JournalState", "load", "open_compacted"]


@dataclass(slots=True)
class JournalState:
    """What a journal held: live entries as of ``seq``, and ownership by reported PID."""

    buffers: list[Buffer]
    seq: int
    owners: dict[int, dict] = field(default_factory=dict)
    sessions: int = 0
    torn_note: str | None = None


def load(path: str) -> JournalState | None:
    """The state in the journal at ``path``; None if there is none yet (absent or empty file).

    Raises RecordingError if the file exists but is not a recording, OSError if it cannot be read.
    """
    try:
        if os.lstat(path).st_size == 0:
            return None
    except FileNotFoundError:
        return None
    if os.path.islink(path):
        raise OSError(f"{path} is a symbolic link; refusing to use it as a journal")
    _check_unlocked(path)
    reader = RecordingReader(path)
    reg = Registry()
    for batch in reader.batches():
        for ev in batch:
            reg.apply_event(ev)
    return JournalState(reg.snapshot(), reg.seq, dict(reader.owners), reader.sessions, reader.torn_note())


def _check_unlocked(path: str) -> None:
    """Refuse a journal that a running server holds (its writer keeps an exclusive flock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OSError(f"{path} is in use by another running server; choose another --journal") from None
    finally:
        os.close(fd)


def open_compacted(path: str, state: JournalState | None, inventory: Inventory, *, socket_path: str,
                   clock: Callable[[], int]) -> RecordingWriter:
    """A durable writer on a fresh journal at ``path`` that starts from ``state``; replaces the old file atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".memtop-journal-", dir=directory)  # O_EXCL, 0600
    os.close(fd)
    try:
        restored = (state.seq, state.buffers) if state is not None else None
        w = RecordingWriter(tmp, inventory, socket_path=socket_path, clock=clock, restored=restored, durable=True)
        try:
            if state is not None:
                for doc in state.owners.values():
                    w.write_owner(int(doc["pid"]), doc.get("uid"), doc.get("host_pids") or ())
            w.sync()
            os.replace(tmp, path)
        except BaseException:
            w.close()
            raise
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    w.path = path
    return w
