"""The per-event rules: what an allocation or a free of a process says, into its evidence window.

A mixin of :class:`~tt_memtop.core.phases.machine.PhaseTracker` (it uses the tracker's thresholds,
its deadlines (:mod:`.deadlines`) and its transitions (:mod:`.transitions`)). The hot path of every
monitor: ``tt_memtop/_native/phases.c`` is its compiled twin (the same operations on the same
objects, for :meth:`PhaseTracker.observe_batch`); this is the reference.
"""

from __future__ import annotations

from ..events import Event
from ..protocol import BufferType
from . import evidence as ev_
from .process import Proc, live_key
from .relabel import capture_start, death_time
from .types import Phase

__all__ = ["EventRules"]

_NS = 1_000_000_000
_TRACE, _DRAM = int(BufferType.TRACE), int(BufferType.DRAM)
_CB, _KERNEL = int(BufferType.CB), int(BufferType.KERNEL)
_IDLE, _LOADING, _WARMUP, _CAPTURE = Phase.IDLE, Phase.LOADING, Phase.WARMUP, Phase.CAPTURE
_REPLAY, _RELEASED, _TEARDOWN, _EXITED = Phase.REPLAY, Phase.RELEASED, Phase.TEARDOWN, Phase.EXITED
_TRACE_MIN = 64 * 1024  # a trace buffer holds at least a few commands per bank


class EventRules:
    """Allocations and frees into evidence; evidence into transitions (the counting rules)."""

    def _on_alloc(self, proc: Proc, ev: Event, ts: int) -> None:
        dev, size, btype = ev.device, ev.size, ev.buffer_type
        key = (dev, ev.buffer_id, 1 if btype == _CB else 2 if btype == _KERNEL else 0)  # _key, inlined
        top = self._topdown.classify(dev, ev.buffer_id, size) if btype == _DRAM and size > self._io_max else 0
        is_trace = btype == _TRACE or top == 2
        old = proc.live.get(key)
        proc.live[key] = (ts, size, btype)
        if old is None:
            n = proc.dev_live.get(dev)
            proc.dev_live[dev] = 1 if n is None else n + 1
            if n is None:
                self._width(proc)
        elif old[2] == _DRAM:
            proc.live_dram -= old[1]
        if btype == _DRAM:
            proc.live_dram += size
        allocs = proc.allocs
        allocs.append(ts)
        horizon = ts - self._evwin_ns
        while allocs[0] < horizon:
            allocs.popleft()
        if is_trace:
            proc.trace_keys.add(key)
            self._on_trace_alloc(proc, dev, ev.buffer_id, size, ts)
            return
        if btype == _CB or btype == _KERNEL:
            proc.compiled_since_busy = True
            if proc.phase is _WARMUP:
                proc.compiling = True  # program-cache misses: pauses are compiles, not idleness
            if ev_.is_compile_signature(btype, ev.name) and proc.phase is not _LOADING or btype == ev_._CB:
                proc.last_compile = ts
                self._entry(proc, ev_.COMPILE, ts, ts)
            return
        if size <= self._io_max:
            return
        sig = size << 8 | btype  # the (size, type) shape, as one int (hashed at no cost)
        if proc.lead is None:
            proc.lead = dev
        tail = proc.dram_tail
        if tail is not None and not (btype == _DRAM and ev.buffer_id == tail[1]):
            proc.dram_tail = None  # the stream went on after it: not the end of a run
        if top and dev == proc.lead and size >= _TRACE_MIN and proc.phase is _WARMUP and not proc.trace:
            proc.dram_tail = (ts, ev.buffer_id)  # maybe a trace buffer: see _maybe_trace
            proc.quiet_at = min(proc.quiet_at, ts + self._return_ns)
        if dev == proc.lead:
            proc.seq.append((ts, sig, key))
        phase = proc.phase
        if phase is _REPLAY and dev == proc.lead:
            last = proc.last_lead
            proc.last_lead = (sig, ts)
            # the replay's own I/O: the same shape twice in a row, an iteration apart
            if last is not None and last[0] == sig and ts - last[1] >= self._iter_ns and len(proc.replay_sigs) < 8 \
                    and ts < proc.learn_until:
                proc.replay_sigs.add(sig)
        if phase is _REPLAY:
            if sig in proc.replay_sigs:
                self._entry(proc, ev_.ALLOC, ts, ts, sig, key)
                return
        elif phase is _WARMUP and proc.trace and sig in proc.replay_sigs:
            self._entry(proc, ev_.ALLOC, ts, ts, sig, key)
            return
        was_mid, proc.mid_op = proc.mid_op, True
        boundary = not proc.temps
        proc.temps += 1
        self._busy(proc, ts, was_mid, boundary)
        if (phase is _LOADING or phase is _REPLAY or phase is _IDLE) and btype != _DRAM \
                and sig not in proc.replay_sigs:  # the latest activation: is the stream pausing after it?
            proc.pending_l1 = (ts, key)
            proc.quiet_at = min(proc.quiet_at, ts + self._hold_ns)
        kind = ev_.BIG if btype == _DRAM and size >= self.config.load_min_bytes else ev_.ALLOC
        self._entry(proc, kind, ts, ts, sig, key)

    def _on_trace_alloc(self, proc: Proc, dev: int, buffer_id: int, size: int, ts: int) -> None:
        proc.trace[(dev, buffer_id)] = size
        self._busy(proc, ts)
        proc.last_trace_alloc = ts
        if proc.phase is not _CAPTURE:
            proc.capture_mesh = frozenset(proc.dev_live) | {dev}
            proc.capture_devs = set()
            live = proc.live
            seq = [(t, sig, key in live and live[key][0] == t) for t, sig, key in proc.seq]
            start = capture_start(seq, ts, proc.seq_floor, proc.last_compile, proc.after_release)
            self._enter(proc, _CAPTURE, ts)
            if start is not None and ts - start <= self.config.capture_max_s * _NS:
                proc.hints[proc.since] = start
        proc.capture_devs.add(dev)
        if proc.capture_devs >= proc.capture_mesh:
            self._trace_done(proc, ts)

    def _trace_done(self, proc: Proc, ts: int) -> None:
        proc.seq.clear()
        proc.seq_floor = ts
        proc.after_release = False
        proc.replay_sigs = set()
        proc.learn_until = ts + self._learn_ns
        self._enter(proc, _REPLAY, ts)

    def _on_free(self, proc: Proc, ev: Event, ts: int) -> None:
        got = self._drop(proc, ev.device, ev.buffer_id, ev.buffer_type)
        if got is None:
            return
        born, size, btype, was_trace = got
        if was_trace:
            self._on_trace_free(proc, ts, born)
        elif size > self._io_max and not ev_.is_program_object(btype):
            age = ts - born
            sig = size << 8 | btype  # the (size, type) shape, as one int (hashed at no cost)
            if (proc.phase is _REPLAY or (proc.phase is _WARMUP and proc.trace)) and sig in proc.replay_sigs:
                self._entry(proc, ev_.FREE, ts, ts)
            else:
                was_mid, proc.mid_op = proc.mid_op, False
                boundary = not proc.temps
                if born >= proc.since and proc.temps:
                    proc.temps -= 1
                self._busy(proc, ts, was_mid, boundary)
                if born <= proc.loaded_until and proc.phase is not _LOADING:
                    self._entry(proc, ev_.LONG, ts, ts)  # a buffer of the load (a weight): whatever its age
                elif age < self._young_ns:
                    self._entry(proc, ev_.CHURN, ts, born, None, sig)  # key slot: the temporary's shape
                elif age >= self._long_ns:
                    self._entry(proc, ev_.LONG, ts, ts)
                else:
                    self._entry(proc, ev_.FREE, ts, ts)
        if not proc.live and proc.phase in (_TEARDOWN, _RELEASED):
            self._enter(proc, _EXITED, ts)

    def _on_trace_free(self, proc: Proc, ts: int, born: int) -> None:
        """A trace buffer (or what looked like one) freed: a release, unless it was a temporary after all."""
        young = ts - born < self._young_ns and proc.phase is not _REPLAY and proc.phase is not _TEARDOWN
        if young and proc.phase is not _CAPTURE:  # a top-down DRAM temporary, not a trace after all
            self._busy(proc, ts)
            self._entry(proc, ev_.CHURN, ts, born)
        elif not proc.trace and proc.phase is not _TEARDOWN \
                and proc.window.counts[ev_.LONG] < proc.mesh_width():  # else freed inside a teardown
            proc.after_release = True
            proc.seq.clear()
            proc.seq_floor = ts
            self._enter(proc, _RELEASED, ts)
            proc.hold_until = ts + self._confirm_ns

    def _drop(self, proc: Proc, dev: int, buffer_id: int, btype: int) -> tuple[int, int, int, bool] | None:
        key = live_key(dev, buffer_id, btype)
        got = proc.live.pop(key, None)
        if got is None:
            return None
        if got[2] == _DRAM:
            proc.live_dram -= got[1]
        was_trace = key in proc.trace_keys
        if was_trace:
            proc.trace_keys.discard(key)
            proc.trace.pop((dev, buffer_id), None)
        n = proc.dev_live[dev] - 1
        if n:
            proc.dev_live[dev] = n
        else:
            del proc.dev_live[dev]
            self._width(proc)
        return got[0], got[1], got[2], was_trace

    def _died(self, proc: Proc, ts: int) -> None:
        if proc.phase is _EXITED:
            return
        death = death_time(list(proc.recent), ts, self.config.death_gap_factor)
        self._enter(proc, _EXITED, ts)
        if death is not None and death < proc.since:
            proc.exit_hint = (proc.since, death)

    def _entry(self, proc: Proc, kind: int, ts: int, start: int, sig: int | None = None,
               key: object = None) -> None:
        """One piece of evidence: into the window, then the rule of its kind."""
        proc.window.add(kind, ts, start, sig, key)
        self._rules(proc, kind, start)

    def _rules(self, proc: Proc, kind: int, start: int) -> None:
        """The counting rules, after an entry of ``kind`` (whose evidence began at ``start``) was added."""
        phase = proc.phase
        if phase is _CAPTURE or phase is _EXITED:
            return
        win = proc.window
        counts = win.counts
        cfg = self.config
        if kind == ev_.CHURN or kind == ev_.COMPILE:
            if counts[ev_.CHURN] >= proc.need_churn or counts[ev_.COMPILE] >= proc.need_compile:
                proc.tentative = False  # a run confirmed (a load's tilize temporary does not)
            if phase is _WARMUP and start < proc.since and proc.closed and proc.closed[-1].phase is _LOADING \
                    and start > proc.closed[-1].start_ns:  # a temporary of the run's first op (its JIT pause)
                self._backdate(proc, start)
            if phase is _WARMUP or phase is _TEARDOWN:
                return
            compiling = counts[ev_.COMPILE] >= proc.need_compile
            churn = counts[ev_.CHURN] >= proc.need_churn and counts[ev_.CHURN] >= cfg.churn_share * len(win.entries)
            if not (compiling or churn) and phase is _LOADING and counts[ev_.CHURN] >= proc.need_churn:
                churn = self._run_in_load(proc)
            if not (compiling or churn):
                return
            if proc.trace and not compiling and win.variety(proc.replay_sigs) < cfg.untraced_variety:
                return
            self._enter(proc, _WARMUP, self._warmup_start(proc))
        elif kind == ev_.LONG:
            if phase is _TEARDOWN or counts[ev_.LONG] < proc.need_long:
                return
            if counts[ev_.ALLOC] + counts[ev_.BIG] > cfg.teardown_alloc_ratio * counts[ev_.LONG]:
                return
            self._enter(proc, _TEARDOWN, min(e[2] for e in win.entries if e[0] == ev_.LONG))
        elif kind == ev_.ALLOC:
            if phase is _WARMUP and proc.tentative and counts[ev_.ALLOC] >= 6 * proc.mesh_width() \
                    and not counts[ev_.CHURN]:
                self._enter(proc, _LOADING, proc.since)  # buffers kept one after another: a load (L1 weights)
        elif kind == ev_.BIG:
            if phase is _WARMUP and proc.tentative and counts[ev_.BIG] >= 3 * proc.need_load:
                self._enter(proc, _LOADING, proc.since)  # the load went on: that was no run
            elif (phase is _IDLE or phase is _RELEASED) and counts[ev_.BIG] >= proc.need_load:
                self._enter(proc, _LOADING, min(e[2] for e in win.entries if e[0] == ev_.BIG))

    def _run_in_load(self, proc: Proc) -> bool:
        """While loading: do the latest temporaries look like a run (several op shapes, a churn share
        that holds since the first of them was born) rather than a load's tilize temporaries (one shape)?
        Program-cache misses stretch a compile run's first layer, so the window is mostly weights."""
        entries = proc.window.entries
        churns = [e for e in entries if e[0] == ev_.CHURN]
        if len({e[4] for e in churns}) < 3:
            return False
        first = min(e[2] for e in churns)
        since = sum(1 for e in entries if e[1] >= first)
        return len(churns) >= 0.45 * since  # a run frees about one temporary per op; a load far fewer

    def _warmup_start(self, proc: Proc) -> int:
        """Where the warm-up evidence in the window began: from loading, the first allocation after the
        last weight (a big DRAM buffer still live, allocated before the run's first temporary); else its
        earliest temporary or program object."""
        entries = proc.window.entries
        starts = [e[2] for e in entries if (e[0] == ev_.CHURN or e[0] == ev_.COMPILE) and e[2] >= proc.since]
        if not starts:
            return proc.last_busy
        first = min(starts)
        if proc.phase is _LOADING:
            live = proc.live
            bound = -1
            for kind, ts, _start, _sig, key in entries:
                if kind == ev_.BIG and ts < first and key in live and live[key][0] == ts and ts > bound:
                    bound = ts
            if bound >= 0:
                after = [e[1] for e in entries if e[1] > bound and (e[0] == ev_.ALLOC or e[0] == ev_.BIG)]
                return min(after + [first])
        if proc.trace:  # untraced work: from its first allocation that was not the replay's own I/O
            firsts = [e[1] for e in entries if (e[0] == ev_.ALLOC or e[0] == ev_.BIG) and e[3] not in proc.replay_sigs
                      and e[1] >= proc.since]
            first = min(firsts[:1] + [first])
        return first

