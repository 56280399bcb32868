"""Hindsight: where a capture began, and when a killed process died. Used by :func:`analyze`.

**Capture start by sequence.** A trace is captured by running the model once more while
recording, after a compile run of the same model (TT-Metal requires a warm program cache). The
capture run therefore repeats the compile run's per-op allocation sequence — sizes and types, in
order — minus what only a first run allocates. The sequence kept is that of the temporaries
(allocations freed again by the time of the trace buffer) on one device of the mesh: weights,
lazily created constants, trace inputs and outputs drop out. The capture run is then the
suffix of length ``k`` that best repeats the stretch right before it (aligned backwards, a few
one-token insertions allowed), scored ``2 * matched - k``: a run repeated in full scores its
length; a candidate one layer off, or spanning two runs, scores less. Pauses play no part, so
neither the 20-50 ms ``end_trace_capture`` spends before the trace buffer nor a capture that
follows its compile run without a pause moves the result.

When nothing repeats, the capture starts after the last compile signature (a program-cache miss
cannot happen inside a capture), or, after a release, at the start of the churn before the
trace (everything was compiled already: that churn is the capture).
"""

from __future__ import annotations

from .types import Phase, Segment

__all__ = ["apply_hints", "capture_start", "death_time", "last_run", "repeated_suffix"]

_MAX_TOKENS = 20_000


def _aligned(tokens: list[int], k: int, max_skips: int = 4) -> int:
    """How much of the last ``k`` tokens matches, backwards, the stretch right before them, allowing
    a few one- or two-token insertions in the earlier copy (first-run-only allocations)."""
    n = len(tokens)
    i, j, skips = n - 1, n - k - 1, 0
    lo = n - k
    while i >= lo and j >= 0:
        t = tokens[i]
        if tokens[j] == t:
            i -= 1
            j -= 1
        elif skips < max_skips and j >= 1 and tokens[j - 1] == t:
            j -= 1
            skips += 1
        elif skips < max_skips and j >= 2 and tokens[j - 2] == t:
            j -= 2
            skips += 1
        else:
            break
    return n - 1 - i


def repeated_suffix(tokens: list[int], min_len: int = 4) -> int:
    """Length of the last repetition in ``tokens`` (0 if none): see the module docstring.

    Each candidate length ``k`` (where the earlier copy ends like the sequence does) is scored
    ``2 m - k`` with ``m`` the aligned length: a full repetition scores its length, a longer
    candidate that spans more than one run, or one shifted by a layer, scores less.
    """
    n = len(tokens)
    if n < 2 * min_len:
        return 0
    last = tokens[-1]
    best_k, best_f = 0, 0
    for k in range(min_len, n - min_len + 1):
        e = n - k - 1
        if not (tokens[e] == last or (e >= 1 and tokens[e - 1] == last) or (e >= 2 and tokens[e - 2] == last)):
            continue
        m = _aligned(tokens, k)
        f = 2 * m - k
        if f > best_f and m >= min_len and 5 * m >= 3 * k:
            best_k, best_f = k, f
    return best_k


def last_run(seq: list[tuple[int, tuple[int, int], bool]]) -> tuple[int, int, int] | None:
    """The last repetition among the temporaries of ``seq``: (its start ns, length, distinct shapes)."""
    temps = [(ts, sig) for ts, sig, persistent in seq[-_MAX_TOKENS:] if not persistent]
    ids: dict[tuple[int, int], int] = {}
    tokens = [ids.setdefault(sig, len(ids)) for _ts, sig in temps]
    k = repeated_suffix(tokens)
    if not k:
        return None
    return temps[len(temps) - k][0], k, len(set(tokens[-k:]))


def capture_start(seq: list[tuple[int, tuple[int, int], bool]], trace_ns: int, floor_ns: int, last_compile_ns: int,
                  after_release: bool) -> int | None:
    """Where the capture that ended with a trace buffer at ``trace_ns`` began.

    ``seq``: ``(ts_ns, signature, persistent)`` of the allocations on one device of the mesh since
    ``floor_ns`` (the previous trace or release), oldest first; ``persistent`` if still live (weights,
    lazily created constants, trace inputs and outputs: not part of the repeated run). None when
    there is nothing to go on.
    """
    temps = [(ts, sig) for ts, sig, persistent in seq[-_MAX_TOKENS:] if not persistent]
    if not temps:
        return None
    ids: dict[tuple[int, int], int] = {}
    tokens = [ids.setdefault(sig, len(ids)) for _ts, sig in temps]
    k = repeated_suffix(tokens)
    if k:
        return temps[len(temps) - k][0]
    if after_release:
        return max(floor_ns, temps[0][0])
    later = [ts for ts, _sig in temps if ts > last_compile_ns]
    if last_compile_ns and later:
        return later[0]
    return None


def death_time(event_ns: list[int], cleanup_ns: int, gap_factor: float) -> int | None:
    """When a process whose buffers the server cleaned up at ``cleanup_ns`` probably died.

    ``event_ns``: its last few event times. A process that sent events at a steady cadence (a
    replay's read-backs) and then stopped for much longer died just after its last event.
    """
    if len(event_ns) < 4:
        return None
    gaps = sorted(b - a for a, b in zip(event_ns, event_ns[1:], strict=False))
    usual = gaps[len(gaps) // 2]
    last = event_ns[-1]
    if usual <= 0 or cleanup_ns - last < gap_factor * usual:
        return None
    return last + usual


def apply_hints(segs: list[Segment], hints: dict[int, int], exit_hint: tuple[int, int] | None) -> list[Segment]:
    """One process's segments with hindsight applied: each capture (keyed by its segment start in
    ``hints``) starts where its capture run began, and an exit (``exit_hint``: its segment start, the
    death) where the process died; the segments they overlap are cut back or dropped."""
    out: list[Segment] = []
    for seg in segs:
        hint = hints.get(seg.start_ns) if seg.phase is Phase.CAPTURE else None
        if exit_hint is not None and seg.phase is Phase.EXITED and seg.start_ns == exit_hint[0]:
            hint = exit_hint[1]
        if hint is not None:
            while out and out[-1].start_ns >= hint and out[-1].phase in _YIELDING:
                out.pop()
            if out and out[-1].end_ns > hint:
                prev = out.pop()
                if hint > prev.start_ns:
                    out.append(Segment(prev.pid, prev.devices, prev.phase, prev.start_ns, hint))
                else:
                    hint = prev.start_ns
            seg = Segment(seg.pid, seg.devices, seg.phase, min(hint, seg.start_ns), seg.end_ns)
        out.append(seg)
    return out


#: Phases a hindsight start may overrun entirely (what a capture run or a death looked like live).
_YIELDING = frozenset({Phase.WARMUP, Phase.IDLE, Phase.LOADING, Phase.REPLAY})
