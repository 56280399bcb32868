"""``memtop analyze FILE``: the trace-phase timeline of a recording or of an original server log.

The file type is sniffed: a recording (``memtop serve --record``) starts with its magic bytes;
anything else is read as allocation-server stdout (every known version, see
:mod:`tt_memtop.core.logparse`).

A log has no timestamps. Its events are therefore placed on a nominal clock, in log order, at
``--event-rate`` events per second (default: 250 per device seen in the log, as a mesh op sends
one message per device). The phase *sequence* stays
right because the inference looks at what is allocated and freed, and how long buffers live
relative to the traffic around them; durations are only nominal and a process looks idle only
while others keep the log going. A capture still starts where its run began: that is found by
sequence (the last repetition of the compile run's allocations), not by pauses.

A recording made from ``memtop simulate --speed X`` runs X times faster than the workload;
``--speed X`` scales it back before inference (the thresholds are in workload time).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator

from ..core.events import Event
from ..core.phases import Segment, analyze

#: Nominal events per second per device for logs: a mesh op sends one message per device.
NOMINAL_RATE_PER_DEVICE = 250.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a recording (memtop serve --record) or a server log")
    parser.add_argument("--json", action="store_true",
                        help='print the timeline as a JSON list of segments: '
                             '{"pid", "devices", "phase", "start_s", "end_s"} (times from the first event)')
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="the recording ran X times faster than real (memtop simulate --speed X)")
    parser.add_argument("--event-rate", type=float, default=None, metavar="N",
                        help="logs only: nominal events per second (default 250 per device)")


def is_recording(path: str) -> bool:
    from ..recording import is_recording_file

    return is_recording_file(path)


def log_events(path: str, event_rate: float | None = None) -> Iterator[Event]:
    """Events of a server log, stamped on a nominal clock (see the module docstring), streamed.

    Without ``event_rate`` the rate depends on how many devices the whole log names: a first pass
    parses the log for that alone (keeping nothing but the set of devices), the second stamps.
    """
    from ..core.logparse import LogParser
    from ..sources.logfile import open_log, read_line_chunks

    if event_rate is None:
        parser = LogParser()
        devices: set[int] = set()
        with open_log(path) as f:
            for lines, _ in read_line_chunks(f):
                devices.update(ev.device for ev in parser.feed(lines))
                parser.take_records()
        event_rate = NOMINAL_RATE_PER_DEVICE * max(1, len(devices))
    step = 1e9 / event_rate
    parser = LogParser()
    i = 0
    with open_log(path) as f:
        for lines, _ in read_line_chunks(f):
            events = parser.feed(lines)
            parser.take_records()  # records are for reports
            for ev in events:
                ev.ts_ns = int(i * step)
                i += 1
                yield ev


def file_events(path: str, speed: float = 1.0, event_rate: float | None = None,
                notes: list[str] | None = None) -> Iterator[Event]:
    """The events of ``path``; a recording's torn or damaged tail is described in ``notes`` at the end."""
    if is_recording(path):
        from ..recording import RecordingReader

        reader = RecordingReader(path)  # a bad header raises here, before any output
        yield from _scaled(reader, speed)
        note = reader.torn_note()
        if note and notes is not None:
            notes.append(note)
        return
    yield from _scaled(log_events(path, event_rate), speed)


def _scaled(events: Iterable[Event], speed: float) -> Iterator[Event]:
    for ev in events:
        if speed != 1.0:
            ev.ts_ns = int(ev.ts_ns * speed)
        yield ev


def timeline(segments: list[Segment]) -> list[dict]:
    """Segments as JSON-ready dicts, times in seconds from the first one."""
    t0 = min((s.start_ns for s in segments), default=0)
    return [{"pid": s.pid, "devices": list(s.devices), "phase": s.phase.value,
             "start_s": round((s.start_ns - t0) / 1e9, 6), "end_s": round((s.end_ns - t0) / 1e9, 6)}
            for s in segments]


def run(args: argparse.Namespace) -> int:
    from ..recording import RecordingError

    if args.speed <= 0 or (args.event_rate is not None and args.event_rate <= 0):
        print("memtop analyze: --speed and --event-rate must be positive", file=sys.stderr)
        return 2
    notes: list[str] = []
    from ..sources.logfile import NotALogError, check_log

    try:
        from ..core.usage import expand_recorded_totals

        check_log(args.file, allow_empty=True)  # an empty log has no segments: [] (as specified)
        rows = timeline(analyze(expand_recorded_totals(file_events(args.file, args.speed, args.event_rate, notes))))
    except (OSError, RecordingError, NotALogError) as exc:
        print(f"memtop analyze: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"memtop analyze: note: {note}", file=sys.stderr)
    if args.json:
        # A bare list, as specified for scripts (issue #4); its row keys are the stable contract.
        json.dump(rows, sys.stdout)
        print()
        return 0
    if not rows:
        print("no allocation events")
        return 0
    print(f"{'PID':>8}  {'start s':>9}  {'end s':>9}  {'dur s':>8}  {'phase':<9}  devices")
    for r in rows:
        print(f"{r['pid']:>8}  {r['start_s']:9.3f}  {r['end_s']:9.3f}  {r['end_s'] - r['start_s']:8.3f}  "
              f"{r['phase']:<9}  {_devices(r['devices'])}")
    return 0


def _devices(devs: list[int]) -> str:
    """``0-7`` for a run of consecutive ids (checked without building the range: a log may name device 2**31-1)."""
    if len(devs) > 2 and devs == sorted(set(devs)) and devs[-1] - devs[0] + 1 == len(devs):
        return f"{devs[0]}-{devs[-1]}"
    return ",".join(map(str, devs))
