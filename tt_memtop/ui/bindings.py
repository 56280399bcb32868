"""The one key table. It feeds the App's bindings, the Footer, the help screen and the command palette,
so a key documented is a key that works (and vice versa).

Some keys belong to one mode: ``mode="replay"`` keys exist only when the source is a player (a
replay: it can pause, step, seek, change speed), ``mode="live"`` keys only when it is not. The App's
``check_action`` enforces it, which also hides them from the Footer; help and the palette list a
mode's keys only. ``p`` / Space is the one key with a meaning per mode: live, it freezes the view
while ingestion goes on (nothing can be paused upstream); in a replay it pauses the playback
itself, as in any media player, so nothing is missed and the view needs no freezing. While the
view is paused the Footer offers ``p Resume`` (a second binding of the same keys, shown only then).

Every key has a binding id (:attr:`Key.id`): the config file's ``[keys]`` table overrides keys by id
through Textual's keymap (:meth:`App.set_keymap`), and help shows the keys in effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Key:
    keys: str  # Textual key names, comma-separated; the first one is shown
    action: str  # App action ("" = handled by the focused widget, listed for help only)
    description: str
    group: str
    show: bool = False  # in the Footer
    label: str = ""  # how help spells the keys
    short: str = ""  # Footer / palette wording, if shorter than the description
    mode: str = ""  # "" = always; "live" / "replay" = only when the source is not / is a player
    priority: bool = False  # before any focused widget (an Input would take Ctrl+C as "copy")
    name: str = ""  # the binding id, when another key of the same action has the default one

    @property
    def id(self) -> str:
        """The binding id a config's ``[keys]`` table names: the action, arguments joined by dots
        (``show_pane.devices``, ``seek.-1``, ``quit``)."""
        if self.name:
            return self.name
        name, _, args = self.action.partition("(")
        args = args.rstrip(")").replace("'", "").replace('"', "").replace(" ", "")
        return f"{name}.{args}" if args else name


KEYS: tuple[Key, ...] = (
    Key("1", "show_pane('devices')", "Devices pane (all devices, full bars)", "Panes", label="1"),
    Key("2", "show_pane('feed')", "Event feed", "Panes", label="2"),
    Key("3", "show_pane('buffers')", "Live buffers", "Panes", label="3"),
    Key("4", "show_pane('processes')", "Processes", "Panes", label="4"),
    Key("enter", "drill", "Drill in: buffer details / a process's buffers", "Panes", label="Enter"),
    Key("escape", "back", "Back: close, clear the text filter, leave a drill-down; stop a replay's seek", "Panes", label="Esc"),
    Key("p,space", "toggle_pause", "Pause drawing (ingestion goes on)", "View", show=True, label="p / Space",
        short="Pause", mode="live"),
    Key("p,space", "resume", "Resume drawing (while paused)", "View", show=True, label="p / Space",
        short="Resume", mode="live"),
    Key("f", "toggle_follow", "Follow the newest event in the feed", "View", label="f"),
    Key("e", "toggle_raw", "Event feed: grouped (repeats coalesced, one row per op across devices) / every event",
        "View", label="e", short="Every event"),
    Key("w", "toggle_times", "Feed times: wall clock (as TT-Metal logs) / since the first event", "View",
        label="w", short="Times"),
    Key("H", "history_scale", "History scale: 100 / 50 / 25 / 10 % of capacity", "View", label="H",
        short="History scale"),
    Key("g", "toggle_group", "Group buffers with one id on several devices", "View", label="g"),
    Key("j", "jump", "Jump to a buffer by id (hex or decimal)", "View", show=True, label="j", short="Jump to id"),
    Key("m", "address_map", "Address map: per-bank free ranges, TRACE region, largest free; Enter lists a slice",
        "View", label="m", short="Map"),
    Key("h", "history", "History chart: a device's pool over time, 0..capacity, peak and phases marked",
        "View", show=True, label="h", short="History"),
    Key("r", "reset_peaks", "Reset peaks (high-water marks) to the current values", "View", label="r",
        short="Reset peaks"),
    Key("p,space", "play_pause", "Pause / resume the playback (at the end: play again from the start)", "Replay",
        show=True, label="p / Space", short="Play/Pause", mode="replay"),
    Key("full_stop", "step", "Step: pause, then play the next event(s) (--step N, default 1)", "Replay", show=True,
        label=".", short="Step", mode="replay"),
    Key("left_square_bracket", "seek(-1)", "Seek back 5 % of the duration", "Replay", label="[", short="Back 5 %",
        mode="replay"),
    Key("right_square_bracket", "seek(1)", "Seek forward 5 % of the duration", "Replay", show=True, label="]",
        short="Seek +5 %", mode="replay"),
    Key("left_curly_bracket", "seek_to(0)", "Jump to the start", "Replay", label="{", short="To start", mode="replay"),
    Key("right_curly_bracket", "seek_to(1)", "Jump to the end (the final state)", "Replay", label="}",
        short="To end", mode="replay"),
    Key("minus", "speed(-1)", "Slower: halve the playback speed", "Replay", label="-", short="Slower", mode="replay"),
    Key("plus,equals_sign", "speed(1)", "Faster: double the playback speed", "Replay", show=True, label="+",
        short="Faster", mode="replay"),
    Key("f6", "sort_menu", "Sort by…", "Sort", show=True, label="F6", short="Sort"),
    Key("less_than_sign", "sort_step(-1)", "Sort by the previous column", "Sort", label="<"),
    Key("greater_than_sign", "sort_step(1)", "Sort by the next column", "Sort", label=">"),
    Key("I", "invert_sort", "Invert the sort order", "Sort", label="I"),
    Key("slash,f3", "search", "Live text filter (id, type, PID, name)", "Filter", show=True, label="/ or F3", short="Search"),
    Key("backslash,f4", "filter_menu", "Filters: devices, types, PIDs", "Filter", show=True, label="\\ or F4", short="Filter"),
    Key("d", "filter_menu('devices')", "Filter devices (e.g. 0,3 or 0-3)", "Filter", label="d"),
    Key("t", "filter_menu('types')", "Toggle buffer types", "Filter", label="t"),
    Key("c", "clear_filters", "Clear every filter", "Filter", label="c"),
    Key("f1,question_mark", "help", "This help", "General", show=True, label="F1 or ?", short="Help"),
    Key("q,f10", "quit", "Quit", "General", show=True, label="q or F10"),
    Key("ctrl+c", "quit", "Quit (as in htop, btop, nvitop, k9s)", "General", label="Ctrl+C", priority=True,
        name="quit_ctrl_c"),
)


#: Footer order: Help and Quit first, so a narrow terminal (60 columns) still shows them.
_FOOTER_FIRST = ("help", "quit")


def app_bindings() -> list[Binding]:
    keys = [k for k in KEYS if k.action]
    keys.sort(key=lambda k: 0 if k.id in _FOOTER_FIRST else 1)
    return [Binding(k.keys, k.action, k.short or k.description, show=k.show,
                    key_display=k.label.split(" ")[0] if k.label else None, id=k.id, priority=k.priority)
            for k in keys]


def default_keymap() -> dict[str, str]:
    """Binding id -> keys (for ``--print-config``, and to check a config's ``[keys]``)."""
    out: dict[str, str] = {}
    for k in KEYS:
        if k.action and k.id not in out:
            out[k.id] = k.keys
    return out


def display_keys(keys: str) -> str:
    """Textual key names as help spells them: ``question_mark,f1`` -> ``? or F1``."""
    names = {"question_mark": "?", "slash": "/", "backslash": "\\", "space": "Space", "escape": "Esc",
             "enter": "Enter", "full_stop": ".", "left_square_bracket": "[", "right_square_bracket": "]",
             "left_curly_bracket": "{", "right_curly_bracket": "}", "minus": "-", "plus": "+", "equals_sign": "=",
             "less_than_sign": "<", "greater_than_sign": ">"}
    out = []
    for k in keys.split(","):
        k = k.strip()
        out.append(names.get(k, k.upper() if len(k) in (2, 3) and k[0] == "f" and k[1:].isdigit() else k))
    return " or ".join(out)


def key_active(k: Key, replay: bool | None) -> bool:
    """Is ``k`` in use for a player source (``replay=True``), another source (False), or either (None)?"""
    return replay is None or not k.mode or k.mode == ("replay" if replay else "live")


def help_rows(replay: bool | None = None, keymap: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(group, keys as shown, description) in table order; plus the palette, which Textual binds.
    ``replay``: only the keys of that mode (None: every key). ``keymap``: the config's overrides."""
    keymap = keymap or {}
    rows = [(k.group, display_keys(keymap[k.id]) if k.id in keymap else (k.label or k.keys), k.description)
            for k in KEYS if key_active(k, replay)]
    rows.append(("General", "Ctrl+P", "Command palette (every action above, searchable)"))
    return rows
