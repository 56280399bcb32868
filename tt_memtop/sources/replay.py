"""Replay a finished server log or a tt-memtop recording, with pause, step, seek and speed.

Why: post-mortems. :class:`ReplaySource` plays a :mod:`.timeline` (a log at a rate of lines per
second, a recording with its own timestamps) on the monitor's clock, takes the player's controls
from the UI and, after a seek, sends the state at the new position as a fresh snapshot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import anyio

from ..core.events import Event
from .base import Capability, Emit, EventBatch, Snapshot, Source, Status, stamp
from .logfile import is_recording
from .timeline import INDEX_SLICE_S, SEEK_PAUSE_S, SEEK_SLICE_S, SEEK_STEP, LogTimeline, RecordingTimeline

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
        #: a seek in progress (see :meth:`_work_on_seek`): steps of the timeline, each yielding its progress
        self._job: Iterator[float] | None = None
        self._job_target_s = 0.0  # where it goes (log time)
        self._job_back = False  # it goes back to where the seek started (Esc): nothing to send at its end
        self._origin: tuple[int, float, list[Event]] | None = None  # (position, clock, carry) on screen
        #: how far the seek in progress has got (0..1), None when not seeking
        self.seek_progress: float | None = None
        #: longest stretch of seeking between two chances for the UI to draw and take keys, and the
        #: pause given it then (0: a headless replay, nothing else to run)
        self.seek_slice_s = SEEK_SLICE_S
        self.seek_pause_s = SEEK_PAUSE_S
        self.seek_step = SEEK_STEP  # events (lines) read between two looks at the clock
        #: a recording is read ahead while the player has nothing else to do, to take checkpoints
        #: (a first seek forward then starts near its target); INDEX_SLICE_S of each tick at most
        self.index_ahead = self.recording
        self.index_slice_s = INDEX_SLICE_S
        self._indexer: RecordingTimeline | None = None
        self._behind = False  # the last tick of playback read all it may (MAX_PER_TICK): no idle time
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

    def cancel_seek(self) -> None:
        """Stop the seek in progress: the player goes back to where it was (what the screen still shows)."""
        self._push("cancel")

    def no_seeking(self) -> None:
        """Nothing will seek back or draw (a headless replay to the end): take no checkpoints, and
        let a seek run without pauses."""
        self.timeline.ckpt.enabled = False
        self.seek_pause_s = 0.0
        self.index_ahead = False

    @property
    def indexed(self) -> float:
        """How much of a recording the indexer has read ahead (0..1; 1 when there is nothing left to read)."""
        ix = self._indexer
        if ix is None:
            return 0.0 if self.index_ahead else 1.0
        return ix.pos / ix.total if ix.total and self.index_ahead else 1.0

    def _index_some(self) -> None:
        """Read ahead for at most ``index_slice_s`` (idle time: no seek in progress)."""
        if self._indexer is None:
            self._indexer = self.timeline.follower()
        deadline = time.perf_counter() + self.index_slice_s
        while time.perf_counter() < deadline:
            if not self._indexer.index_step(self.seek_step):
                self.index_ahead = False
                self._indexer.close()
                return

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.01, float(speed))
        self._push("noop")

    @property
    def duration_s(self) -> float:
        return self.timeline.duration_s

    @property
    def seeking(self) -> bool:
        """A seek is in progress (its progress: :attr:`seek_progress`, its target: :attr:`seek_target_s`);
        until it ends, the position is still the one on screen."""
        return self._job is not None

    @property
    def seek_target_s(self) -> float:
        return self._job_target_s

    @property
    def position_s(self) -> float:
        return self._clock_s

    @property
    def fraction(self) -> float:
        return self.position / self.timeline.total if self.timeline.total else 1.0

    @property
    def at_end(self) -> bool:
        return not self.seeking and self.timeline.pos >= self.timeline.total and not self._carry

    @property
    def position(self) -> int:
        """Lines (logs) or events (recordings) played so far; see :attr:`length` and :attr:`unit`."""
        return self._origin[0] if self._origin is not None else self.timeline.pos

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
        seeking = f", seeking to {self._job_target_s:.1f} s" if self.seeking else ""
        emit(Status(state, f"{self.description}: {self.position:,}/{tl.total:,} {tl.unit}, "
                           f"{self._clock_s:.1f}/{self.duration_s:.1f} s at {self.speed:g}x{seeking}", REPLAY_CAPS))

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
        """Start seeking to ``seconds`` (or retarget the seek in progress). The reading is done in
        slices by :meth:`_work_on_seek`; the new state is sent when it is there."""
        tl = self.timeline
        seconds = max(0.0, min(seconds, self.duration_s))
        if self._origin is None:
            self._origin = (tl.pos, self._clock_s, self._carry)
        self._carry = []
        self._job_target_s = seconds
        self._job_back = False
        self._job = (tl.seek_time_steps(seconds, self.seek_step) if self.recording
                     else tl.seek_steps(tl.pos_of(seconds), self.seek_step))
        self.seek_progress = 0.0

    def _cancel_seek(self) -> None:
        """Esc during a seek: read back to the position on screen (through a checkpoint: quick), silently."""
        if self._job is None or self._job_back or self._origin is None:
            return
        pos, clock_s, _carry = self._origin
        self._job_target_s = clock_s
        self._job_back = True
        self._job = self.timeline.seek_steps(pos, self.seek_step)
        self.seek_progress = 0.0

    def _work_on_seek(self, emit: Emit) -> None:
        """Read on for at most ``seek_slice_s``; when the seek is done, send the new state (a reset)."""
        assert self._job is not None
        deadline = time.perf_counter() + self.seek_slice_s
        for progress in self._job:
            self.seek_progress = progress
            if time.perf_counter() >= deadline:
                return
        self._job, self.seek_progress = None, None
        origin, self._origin = self._origin, None
        if self._job_back:  # back where it started: the screen already shows this state
            self._job_back = False
            _pos, self._clock_s, self._carry = origin
        else:
            self._clock_s = self._job_target_s
            self._carry = []
            self._snapshot(emit, reset=True)
        self._status(emit)

    def _advance(self, emit: Emit, dt: float) -> None:
        tl = self.timeline
        self._clock_s = min(self.duration_s, self._clock_s + dt * self.speed)
        if self.recording:
            events = tl.read_until(self._clock_s, MAX_PER_TICK)
            self._behind = len(events) >= MAX_PER_TICK
            if self._behind:  # behind: the clock waits for the events
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
        later: list[tuple[str, float]] = []  # steps wait for the seek in progress to end
        for op, arg in ops:
            if self.seeking and op in ("step", "step_events", "toggle"):
                if op == "toggle":  # no end to play again from while seeking: just pause / resume
                    self.paused = not self.paused
                else:
                    later.append((op, arg))
                continue
            if op == "cancel":
                self._cancel_seek()
            elif op == "pause":
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
            elif op == "skip":  # from where a seek in progress goes: queued skips add up
                base = self._job_target_s if self.seeking and not self._job_back else self._clock_s
                self._seek_to(emit, base + arg)
        self._ops[:0] = later
        if len(ops) > len(later):
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
                if self._job is not None:
                    self._work_on_seek(emit)
                    if self._job is not None:  # more to read: let the UI draw and take keys meanwhile
                        await anyio.sleep(self.seek_pause_s)
                        last = time.monotonic()
                        continue
                    last = time.monotonic()  # the time spent seeking is not playback time
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
                if self.index_ahead and not self._ops and not (self._behind and not self.paused):
                    self._index_some()  # idle time only: not while playing faster than the events can be read
                with anyio.move_on_after(self.tick):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self.timeline.close()
            if self._indexer is not None:
                self._indexer.close()

