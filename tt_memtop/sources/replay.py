"""Replay a finished server log or a tt-memtop recording, with pause, step, seek and speed.

Why: post-mortems. :class:`ReplaySource` plays a :mod:`.timeline` (a log at a rate of lines per
second, a recording with its own timestamps) on the monitor's clock, takes the player's controls
from the UI and, after a seek, sends the state at the new position as a fresh snapshot.
"""

from __future__ import annotations

import os
import time

import anyio

from ..core.events import Event
from .base import Capability, Emit, EventBatch, Snapshot, Source, Status, stamp
from .logfile import is_recording
from .timeline import LogTimeline, RecordingTimeline

__all__ = ["DEFAULT_RATE", "MAX_PER_TICK", "REPLAY_CAPS", "ReplaySource"]

#: Lines per second when replaying a log (logs carry no timestamps).
DEFAULT_RATE = 5000.0
REPLAY_CAPS = frozenset({Capability.EVENTS, Capability.TOTALS, Capability.SEEK})
#: Events (lines of a log) one playback tick reads at most: at a speed the monitor cannot follow the
#: replay falls behind its clock instead of reading millions of events into one batch.
MAX_PER_TICK = 100_000


class ReplaySource(Source):
    """Replay a server log or a recording, with the controls a player needs.

    Logs have no timestamps: they play at ``rate`` lines per second (log time = line / rate).
    Recordings play with their own timestamps. ``speed`` scales both. The control methods are
    meant to be called from the UI's event loop while :meth:`run` is running; after a seek the
    new state is sent as a :class:`Snapshot` with ``reset=True`` (consumers drop their feed and
    history: they belong to another point in time), then playback continues from there.

    ``min_duration_s`` (logs): when the whole log would play in less than this at ``rate``, the
    rate is lowered so that it lasts that long (a 200-line log at 5000 lines/s is over before
    it is drawn).
    """

    capabilities = REPLAY_CAPS
    local = False  # recorded PIDs belong to another time (or machine): never look them up in /proc

    def __init__(self, path: str, speed: float = 1.0, *, rate: float = DEFAULT_RATE, paused: bool = False,
                 tick: float = 0.05, hold_at_end: bool = True, checkpoint_every: int = 20_000,
                 min_duration_s: float = 0.0, arch: str | None = None) -> None:
        self.path = path
        self.speed = speed
        self.rate = rate
        self.tick = tick
        self.hold_at_end = hold_at_end
        self.recording = is_recording(path)
        self.timeline = (RecordingTimeline(path, checkpoint_every) if self.recording
                         else LogTimeline(path, rate, checkpoint_every, arch))
        if not self.recording and min_duration_s > 0 and self.timeline.total / rate < min_duration_s:
            self.rate = self.timeline.rate = max(1.0, self.timeline.total / min_duration_s)
        self.paused = paused
        self.description = f"replay of {'recording' if self.recording else 'log'} {path}"
        self.short_description = f"{'recording' if self.recording else 'log'} {os.path.basename(path)}"
        self._clock_s = 0.0  # playback position in log time (seconds)
        self._ops: list[tuple[str, float]] = []
        self._carry: list[Event] = []  # read but not sent: a step of N events ended inside a line's events
        self._wake: anyio.Event | None = None

    # ------------------------------------------------------------------ controls
    def _push(self, op: str, arg: float = 0.0) -> None:
        self._ops.append((op, arg))
        if self._wake is not None:
            self._wake.set()

    def pause(self) -> None:
        self._push("pause")

    def resume(self) -> None:
        self._push("resume")

    def toggle(self) -> None:
        """Pause or resume; at the end, play again from the start (as a media player does)."""
        self._push("toggle")

    def step(self, n: int = 1) -> None:
        """Pause and advance ``n`` lines (logs) or events (recordings)."""
        self._push("step", n)

    def step_events(self, n: int = 1) -> None:
        """Pause and advance by ``n`` events (a log's lines without an event are passed over)."""
        self._push("step_events", n)

    def seek(self, fraction: float | None = None, *, seconds: float | None = None) -> None:
        """Jump to a fraction of the file (0..1) or to a time in seconds of log time."""
        if seconds is None:
            seconds = max(0.0, min(1.0, fraction or 0.0)) * self.duration_s
        self._push("seek", max(0.0, seconds))

    def skip(self, seconds: float) -> None:
        """Seek relative to the current position (negative: back). Queued skips add up."""
        self._push("skip", seconds)

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.01, float(speed))
        self._push("noop")

    @property
    def duration_s(self) -> float:
        return self.timeline.duration_s

    @property
    def position_s(self) -> float:
        return self._clock_s

    @property
    def fraction(self) -> float:
        return self.timeline.pos / self.timeline.total if self.timeline.total else 1.0

    @property
    def at_end(self) -> bool:
        return self.timeline.pos >= self.timeline.total and not self._carry

    @property
    def position(self) -> int:
        """Lines (logs) or events (recordings) played so far; see :attr:`length` and :attr:`unit`."""
        return self.timeline.pos

    @property
    def length(self) -> int:
        return self.timeline.total

    @property
    def unit(self) -> str:
        return self.timeline.unit

    @property
    def origin_ns(self) -> int:
        """The timestamp of the file's start: events' ``ts_ns`` minus this is log time."""
        return self.timeline.t0 if self.recording else 0

    # ------------------------------------------------------------------ playback
    def _status(self, emit: Emit, state: str | None = None) -> None:
        tl = self.timeline
        state = state or ("ended" if self.at_end else "paused" if self.paused else "playing")
        emit(Status(state, f"{self.description}: {tl.pos:,}/{tl.total:,} {tl.unit}, "
                           f"{self._clock_s:.1f}/{self.duration_s:.1f} s at {self.speed:g}x", REPLAY_CAPS))

    def _batch(self, emit: Emit, events: list[Event], stamped: bool = False) -> None:
        if not events:
            return
        if not self.recording and not stamped:
            stamp(events, int(self._clock_s * 1e9))
        emit(EventBatch(events))

    def _snapshot(self, emit: Emit, reset: bool = False) -> None:
        buffers, seq = self.timeline.state()
        ts = self.origin_ns + int(self._clock_s * 1e9)
        emit(Snapshot(buffers, seq, ts, self.timeline.inventory(), reset=reset))
        sample = getattr(self.timeline, "last_sample", None)
        if sample:  # a recording of sampled totals: the snapshot's buffers do not hold them
            emit(EventBatch(list(sample)))

    def _seek_to(self, emit: Emit, seconds: float) -> None:
        tl = self.timeline
        seconds = max(0.0, min(seconds, self.duration_s))
        if self.recording:
            tl.seek_time(seconds)
        else:
            tl.seek(tl.pos_of(seconds))
        self._clock_s = seconds
        self._carry = []
        self._snapshot(emit, reset=True)

    def _advance(self, emit: Emit, dt: float) -> None:
        tl = self.timeline
        self._clock_s = min(self.duration_s, self._clock_s + dt * self.speed)
        if self.recording:
            events = tl.read_until(self._clock_s, MAX_PER_TICK)
            if len(events) >= MAX_PER_TICK:  # behind: the clock waits for the events
                self._clock_s = tl.time_of(tl.pos)
        else:
            want = max(0, tl.pos_of(self._clock_s) - tl.pos)
            events = tl.read(min(want, MAX_PER_TICK))
            if want > MAX_PER_TICK:
                self._clock_s = tl.time_of(tl.pos)
        if self._carry:
            events, self._carry = self._carry + events, []
        self._batch(emit, events)

    def _apply_ops(self, emit: Emit) -> None:
        ops, self._ops = self._ops, []
        tl = self.timeline
        for op, arg in ops:
            if op == "pause":
                self.paused = True
            elif op == "resume":
                self.paused = False
            elif op == "toggle":
                if self.at_end:
                    self._seek_to(emit, 0.0)
                    self.paused = False
                else:
                    self.paused = not self.paused
            elif op == "step":
                self.paused = True
                events, self._carry = self._carry + tl.read(int(arg)), []
                self._clock_s = tl.time_of(tl.pos)
                self._batch(emit, events)
            elif op == "step_events":  # exactly n: a line with several events may leave some for later
                self.paused = True
                n = int(arg)
                events = self._carry + tl.read_events(max(0, n - len(self._carry)))
                events, self._carry = events[:n], events[n:]
                self._clock_s = tl.time_of(tl.pos)
                self._batch(emit, events, stamped=True)
            elif op == "seek":
                self._seek_to(emit, arg)
            elif op == "skip":
                self._seek_to(emit, self._clock_s + arg)
        if ops:
            self._status(emit)

    async def run(self, emit: Emit) -> None:
        self._wake = anyio.Event()
        inv = self.timeline.inventory()
        if inv is not None:
            emit(Snapshot([], 0, 0, inv))
        self._status(emit)
        last = time.monotonic()
        announced_inventory = inv is not None
        ended = False
        try:
            while True:
                self._apply_ops(emit)
                now = time.monotonic()
                if not self.paused and not self.at_end:
                    self._advance(emit, now - last)
                    if not announced_inventory and (inv := self.timeline.inventory()) is not None:
                        announced_inventory = True
                        self._snapshot(emit)
                last = now
                if self.at_end and not ended:
                    ended = True
                    self._status(emit, "ended")
                    if not self.hold_at_end:
                        return
                elif not self.at_end:
                    ended = False
                with anyio.move_on_after(self.tick):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self.timeline.close()

