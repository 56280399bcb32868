"""A coarse per-device phase from polled totals only (the original server's QUERY: no PIDs, no events)."""

from __future__ import annotations

from .types import Phase, PhaseConfig, PhaseState, Segment

__all__ = ["PolledDevice"]

_MiB = 1024 * 1024


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


class PolledDevice:
    """A coarse phase for one device from polled totals only (no PIDs, no per-buffer events)."""

    __slots__ = ("device", "phase", "since", "closed", "prev")

    def __init__(self, device: int, ts: int) -> None:
        self.device = device
        self.phase = Phase.IDLE
        self.since = ts
        self.closed: list[Segment] = []
        self.prev: tuple[int, ...] | None = None

    def observe(self, ts: int, totals: tuple[int, ...], cfg: PhaseConfig) -> None:
        dram, trace = totals[0], totals[3]
        prev = self.prev or (0,) * len(totals)
        self.prev = tuple(totals)
        if trace:
            phase = Phase.REPLAY  # a TRACE buffer is resident: its capture has ended
        elif prev[3]:
            phase = Phase.RELEASED
        elif not any(totals):
            phase = Phase.IDLE
        elif self.phase is Phase.RELEASED and dram < prev[0]:
            phase = Phase.TEARDOWN
        elif dram - prev[0] >= cfg.load_min_bytes and self.phase in (Phase.IDLE, Phase.LOADING):
            phase = Phase.LOADING
        elif self.phase is Phase.IDLE and dram:
            phase = Phase.LOADING
        else:
            phase = self.phase
        if phase is not self.phase:
            if ts > self.since:
                self.closed.append(Segment(0, (self.device,), self.phase, self.since, ts))
            self.phase, self.since = phase, ts

    def state(self) -> PhaseState:
        trace = self.prev[3] if self.prev else 0
        evidence = f"polled totals: TRACE {_mib(trace)}" if trace else "polled totals"
        return PhaseState(0, self.phase, (self.device,), self.since, evidence)

    def segments(self, now: int) -> list[Segment]:
        return self.closed + [Segment(0, (self.device,), self.phase, self.since, max(now, self.since))]
