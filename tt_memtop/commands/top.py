"""``memtop`` (no sub-command): the live monitor, or one-shot output for scripts.

``run`` picks a source (``open_source``), falls back to offering the built-in demo when no server
answers, and sends non-TTY / ``--once`` / ``--json`` / ``--ndjson`` runs to the one-shot printer.
``run_monitor`` runs the TUI on any Source; ``memtop demo`` and ``memtop replay`` call it too.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_socket_argument, add_view_arguments, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--protocol", default="auto", choices=["auto", "72", "112", "128", "144", "648"],
                        help="message layout to speak to the server (default: auto-detect)")
    parser.add_argument("--interval", type=positive_float, default=None, metavar="S",
                        help="poll interval for the original server, --ndjson period and the monitor's refresh "
                             "period (default 0.5; config: [ui] refresh)")
    parser.add_argument("--follow", metavar="LOG", help="follow an allocation-server log file for the event feed")
    parser.add_argument("--source", default="auto", choices=["auto", "subscribe", "shm", "poll", "follow", "demo"],
                        help="force a source (default auto: our server's subscription > TT-Metal shared memory > "
                             "the original server, polled > demo)")
    parser.add_argument("--shm", dest="source", action="store_const", const="shm",
                        help="same as --source shm: read TT-Metal's shared-memory statistics")
    parser.add_argument("--shm-dir", default=None, metavar="DIR",
                        help="where TT-Metal's tt_device_*_memory regions are (default: $TT_MEMTOP_SHM_DIR or /dev/shm)")
    parser.add_argument("--shm-interval", type=positive_float, default=None, metavar="S",
                        help="shared-memory sampling period (default 0.05: 20 Hz)")
    parser.add_argument("--arch", default=None, choices=["grayskull", "wormhole_b0", "blackhole"],
                        help="architecture for capacities when the source does not say (shared memory: default "
                             "what /sys/class/tenstorrent reports, else wormhole_b0; the 72-byte original server "
                             "and a log without its device-detection block: only if given)")
    parser.add_argument("--once", action="store_true",
                        help="print once and exit: a table per device (with --json/--ndjson: one document / line)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document and exit (implies --once)")
    out.add_argument("--ndjson", action="store_true",
                     help="print one JSON line every --interval seconds (with --once: one line)")
    parser.add_argument("--record", metavar="FILE", default=None,
                        help="also record what the monitor receives (events, or sampled totals from TT-Metal's "
                             "shared memory) to FILE; play it with `memtop replay FILE`")
    add_view_arguments(parser)
    parser.add_argument("--no-demo", action="store_true", help="never offer the demo when no server answers")
    from ..web import add_web_arguments

    add_web_arguments(parser)


def _say(msg: str) -> None:
    print(f"memtop: {msg}", file=sys.stderr)


def load_config(args: argparse.Namespace):
    """The settings file (``--config PATH``, else the user's), checked; None after saying why not."""
    from ..config import ConfigError, load
    from ..ui.bindings import default_keymap

    try:
        return load(getattr(args, "config", None), frozenset(default_keymap()))
    except ConfigError as exc:
        _say(f"bad config: {exc}")
        return None


def print_config(args: argparse.Namespace) -> int:
    from ..config import dumps
    from ..ui.bindings import default_keymap

    cfg = load_config(args)
    if cfg is None:
        return 2
    sys.stdout.write(dumps(cfg, default_keymap()))
    return 0


def run_monitor(args: argparse.Namespace, source, **app_kw) -> int:
    """Run the TUI on ``source`` with the settings file, then the flags of ``args`` over it (filters,
    theme, refresh period)."""
    from ..ui.app import MemtopApp
    from ..ui.filters import ViewFilter
    from ..ui.format import set_thresholds

    cfg = load_config(args)
    if cfg is None:
        return 2
    try:
        view_filter = ViewFilter.from_args(getattr(args, "device", None) or cfg.devices or None,
                                           getattr(args, "type", None) or cfg.types or None,
                                           getattr(args, "pid", None) or cfg.pids or None)
    except ValueError as exc:
        _say(f"bad filter{' (from ' + cfg.source + ')' if cfg.source else ''}: {exc}")
        return 2
    set_thresholds(cfg.warn / 100, cfg.crit / 100)
    period = getattr(args, "interval", None) or cfg.refresh
    app_kw.setdefault("pane", cfg.pane or None)
    from ..core.model import new_state
    from ..geometry_args import geometry_from_args

    app_kw.setdefault("state", new_state(geometry=geometry_from_args(args)))
    app = MemtopApp(source, view_filter=view_filter, theme=getattr(args, "theme", None) or cfg.theme or None,
                    sample_period=max(0.1, period), fps=cfg.fps, history_scale=cfg.history_scale,
                    feed_grouped=cfg.feed == "grouped", wall_clock=None if cfg.times == "wall" else False,
                    group=cfg.group, keymap=cfg.keys, **app_kw)
    app.read_only = bool(getattr(args, "read_only", False))
    app.run()
    return int(app.return_code or 0)


def _oneshot(args: argparse.Namespace) -> int:
    from ..output.oneshot import run_oneshot

    return int(run_oneshot(args) or 0)


def _recorded(args: argparse.Namespace, source):
    """``source`` recorded to ``--record FILE`` (raises OSError when the file cannot be written)."""
    if not getattr(args, "record", None) or source is None:
        return source
    from ..sources.record import RecordingSource

    return RecordingSource(source, args.record)


def run(args: argparse.Namespace) -> int:
    from ..web import in_web_session, run_web, wants_web

    if wants_web(args):
        return run_web(args)
    from ..sources.open import open_source

    # --json/--ndjson imply --once; a browser tab's app has textual-serve's pipe for a terminal
    if args.once or args.json or args.ndjson or not (sys.stdout.isatty() or in_web_session()):
        if not getattr(args, "record", None):
            return _oneshot(args)
        from ..output.oneshot import run_oneshot

        try:
            source = _recorded(args, open_source(args))
        except (OSError, ValueError) as exc:
            _say(str(exc))
            return 1
        if source is None:
            _say(f"no allocation server answers at {args.follow or args.socket}")
            return 1
        return int(run_oneshot(args, source) or 0)
    from ..sources.demo import DemoSource

    try:
        source = _recorded(args, open_source(args))
    except (OSError, ValueError) as exc:
        _say(str(exc))
        return 1
    if source is not None:
        return run_monitor(args, source)
    where = args.follow or args.socket
    if getattr(args, "socket_explicit", False):
        _say(f"no allocation server listens on {args.socket}.")
        _say("start one there with `memtop serve --socket PATH` (or the original allocation_server_poc), "
             "or run `memtop demo` for the built-in demo.")
        return 1
    from ..sources.open import NOTHING_HINT, nothing_found

    if args.no_demo:
        _say(nothing_found(args))
        return 1
    # Nothing to monitor: show the product working on a simulated workload rather than an empty screen.
    # The header says DEMO, why and what to do, so nobody mistakes it for their hardware.
    from ..sources.shm import default_shm_dir

    shm_dir = getattr(args, "shm_dir", None) or default_shm_dir()
    return run_monitor(args, DemoSource(reason=f"no regions in {shm_dir}, no server at {where}", hint=NOTHING_HINT))
