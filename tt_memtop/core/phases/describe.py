"""The evidence text of a process's current phase: why the tracker thinks so (the live view's second line)."""

from __future__ import annotations

from ..protocol import BufferType
from . import evidence as ev_
from .process import Proc
from .types import Phase, PhaseConfig

__all__ = ["evidence_text", "mib"]

_NS = 1_000_000_000
_MiB = 1024 * 1024
_DRAM = int(BufferType.DRAM)


def mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


def evidence_text(proc: Proc, now: int, cfg: PhaseConfig) -> str:
    """What supports ``proc``'s current phase, at ``now`` (drops allocation times older than the window)."""
    horizon = now - int(cfg.evidence_window_s * _NS)
    while proc.allocs and proc.allocs[0] < horizon:
        proc.allocs.popleft()
    recent = f"{len(proc.allocs)} allocs in last {cfg.evidence_window_s:.1f} s"
    phase = proc.phase
    trace_devs = {d for d, _ in proc.trace}
    kinds = "DRAM (dynamic trace region)" if proc.trace_keys and all(
        k in proc.live and proc.live[k][2] == _DRAM for k in proc.trace_keys) else "TRACE"
    win = proc.window
    if phase is Phase.REPLAY:
        per_dev = sum(proc.trace.values()) // max(1, len(trace_devs))
        return f"trace {mib(per_dev)} {kinds} on {len(trace_devs)} devices held, {recent}"
    if phase is Phase.CAPTURE:
        return f"trace buffer ({kinds}) on {len(proc.capture_devs)}/{len(proc.capture_mesh)} devices of the mesh"
    if phase is Phase.EXITED:
        return proc.exit_note or "every buffer freed"
    if phase is Phase.WARMUP:
        what = "untraced work with a trace resident" if proc.trace else "churn"
        return (f"{what}: {win.counts[ev_.CHURN]} temporaries freed, {win.counts[ev_.COMPILE]} program objects, "
                f"{win.variety(proc.replay_sigs)} op shapes in the last {len(win.entries)} entries, {recent}")
    if phase is Phase.TEARDOWN:
        return f"{win.counts[ev_.LONG]} long-lived buffers freed, {len(proc.live)} left"
    if phase is Phase.LOADING:
        return f"DRAM {mib(proc.live_dram)} in {len(proc.live)} live buffers, {recent}"
    if phase is Phase.RELEASED:
        return f"trace freed, {len(proc.live)} buffers left, {recent}"
    return f"no busy allocation for {(now - proc.last_busy) / _NS:.1f} s"

