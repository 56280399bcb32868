"""Who is really on the other end of a connection, and who may change whose buffers.

The wire carries a ``process_id`` that the sender fills in itself. It is what the originals use
for everything, and what we keep for display and for the log lines. But it is only a claim: a
process in a container reports the PID of its own PID namespace (9, or 1), and any client can
write any number there. The kernel tells the truth through ``SO_PEERCRED`` (the PID, UID and GID
of the process that connected), and ``/proc/<pid>/status`` (``NSpid:``) lists that process's PID
in each nested namespace.

:class:`Ownership` uses both:

* **liveness**: a reported PID that is the sender's PID *inside its namespace* (``NSpid``) is
  alive as long as the sender's host PID is; any other reported PID is judged as the original
  does (``kill(pid, 0)``). So a container's PID 9 is not wiped because the host has no PID 9, and
  its PID 1 is cleaned up when the container process exits;
* **mismatch**: a reported PID that is neither the sender's PID nor one of its namespace PIDs is
  counted (shown in ``--json`` and the server info) and logged once per connection;
* **ownership**: the UID of the first sender that allocated as a reported PID owns that PID's
  buffers. A FREE / CB_FREE / KERNEL_UNLOAD from another UID is refused (counted, logged once
  per connection) unless the sender is root, is that PID itself (in any of its namespaces), raised
  that buffer's ref_count itself, or the server runs with ``--trust-all``. TT-Metal frees its buffers from the process that allocated
  them (a MeshBuffer's per-device buffers included), so normal use is never refused. An ALLOC of a
  live key owned by another UID replaces that entry (server.py): two users' processes cannot
  hold one device address at once, so the old entry is stale or a squatter's.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

__all__ = ["Ownership", "PeerCred", "namespace_pids", "peer_credentials"]

_UCRED = struct.Struct("3i")


@dataclass(slots=True)
class PeerCred:
    """The connecting process as the kernel saw it at ``connect`` time."""

    pid: int
    uid: int
    gid: int
    #: the process's PID in each PID namespace, outermost first (``NSpid``); just ``(pid,)`` outside containers
    ns_pids: tuple[int, ...] = ()

    def knows_as(self, reported: int) -> bool:
        """Is ``reported`` this process's PID in one of its namespaces?"""
        return reported == self.pid or reported in self.ns_pids


def namespace_pids(pid: int) -> tuple[int, ...]:
    """``NSpid`` of ``pid`` from /proc (empty if unknown)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return tuple(int(x) for x in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


def peer_credentials(sock: socket.socket | None) -> PeerCred | None:
    """SO_PEERCRED of a connected Unix socket (Linux), or None where the platform does not tell."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return None
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _UCRED.size))
    except (OSError, struct.error):
        return None
    if pid <= 0:
        return None
    return PeerCred(pid, uid, gid, namespace_pids(pid))


@dataclass(slots=True)
class Owner:
    uid: int | None
    host_pids: set[int] = field(default_factory=set)


class Ownership:
    """Reported PID -> (owning UID, host PIDs behind a namespace PID); decides liveness and FREE rights."""

    def __init__(self, trust_all: bool = False) -> None:
        self.trust_all = trust_all
        self._owners: dict[int, Owner] = {}
        #: (space, device, buffer_id) -> UIDs other than the owner's that raised its ref_count
        self._co: dict[tuple[int, int, int], set[int]] = {}
        self.refused_frees = 0
        #: the owners' UIDs: while there is only one, no FREE can be foreign (the fast path)
        self._uids: set[int] = set()
        #: bumped by every change of the owners or their UIDs: a decision taken at one version holds while
        #: it stays (producers.py lets a connection's ALLOCs of a PID already checked skip the check)
        self.version = 0

    @property
    def several_uids(self) -> bool:
        return len(self._uids) > 1

    def only_uid(self, uid: int) -> bool:
        """Is ``uid`` the only owners' UID so far, or is there none yet? (then no FREE by it can be foreign)"""
        uids = self._uids
        return not uids or (len(uids) == 1 and uid in uids)

    @property
    def sole_uid(self) -> int | None:
        return next(iter(self._uids)) if len(self._uids) == 1 else None

    # ------------------------------------------------------------------ state
    def owners(self) -> dict[int, Owner]:
        return self._owners

    def restore(self, pid: int, uid: int | None, host_pids) -> None:
        self.version += 1
        self._owners[pid] = Owner(uid, set(host_pids))
        if uid is not None:
            self._uids.add(uid)

    def forget(self, pid: int) -> None:
        """``pid`` was cleaned up: its claims end (the number may be reused)."""
        self.version += 1
        self._owners.pop(pid, None)

    # ------------------------------------------------------------------ decisions
    def observe_alloc(self, reported: int, peer: PeerCred | None) -> tuple[bool, bool]:
        """An ALLOC-like message claims ``reported``. Returns (new owner record, mismatch)."""
        if peer is None:
            return False, False
        if peer.uid not in self._uids:
            self._uids.add(peer.uid)
            self.version += 1
        o = self._owners.get(reported)
        new = False
        if o is None:
            o = self._owners[reported] = Owner(peer.uid)
            new = True
        elif o.uid != peer.uid and reported == peer.pid:
            o.uid = peer.uid  # the kernel says the sender *is* this PID: an old claim of a reused number
            new = True
        if reported != peer.pid and reported in peer.ns_pids and peer.pid not in o.host_pids:
            o.host_pids.add(peer.pid)
            new = True
        if new:
            self.version += 1
        return new, not peer.knows_as(reported)

    def observe_share(self, key: tuple[int, int, int], owner_pid: int, peer: PeerCred | None) -> None:
        """``peer`` raised the ref_count of a live buffer (``key``) owned by ``owner_pid``."""
        if peer is None:
            return
        o = self._owners.get(owner_pid)
        if o is not None and o.uid is not None and o.uid != peer.uid:
            self._co.setdefault(key, set()).add(peer.uid)

    def may_free(self, key: tuple[int, int, int], owner_pid: int, peer: PeerCred | None) -> bool:
        if self.trust_all or peer is None or peer.uid == 0 or peer.knows_as(owner_pid):
            return True
        o = self._owners.get(owner_pid)
        if o is None or o.uid is None or o.uid == peer.uid:
            return True
        if peer.uid in self._co.get(key, ()):
            return True
        self.refused_frees += 1
        return False

    def freed(self, key: tuple[int, int, int]) -> None:
        self._co.pop(key, None)

    def owner_uid(self, pid: int) -> int | None:
        o = self._owners.get(pid)
        return None if o is None else o.uid

    def alive(self, pid: int, is_alive) -> bool:
        """Is the owner of ``pid``'s buffers alive? Namespace PIDs by their host PIDs, the rest as reported."""
        o = self._owners.get(pid)
        if o is not None and o.host_pids:
            return any(is_alive(h) for h in o.host_pids)
        return is_alive(pid)
