"""User settings kept between runs: ``$XDG_CONFIG_HOME/tt-memtop/config.toml`` (or ``--config PATH``).

Plain data, read once at start-up and handed to the UI. Every key is checked against the schema
below; a wrong one stops memtop with one message that names the file, the table and the key
(``config.toml: [ui] pane: expected one of devices, feed, buffers, processes, got 'bufers'``), never
a traceback and never a silent default. Command-line flags win over the file. ``memtop
--print-config`` prints the settings in effect as a file one can start from.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PANES = ("devices", "feed", "buffers", "processes")
FEED_MODES = ("grouped", "raw")
TIME_MODES = ("wall", "relative")
HISTORY_SCALES = (1.0, 0.5, 0.25, 0.1)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Config:
    """What a config file can set. Defaults are what memtop does without one."""

    theme: str = ""  # "" = memtop-dark
    pane: str = ""  # the pane memtop opens on ("": processes, or the meters for a totals-only source)
    group: bool = True  # buffers grouped by id across the mesh
    refresh: float = 0.5  # seconds per sample of Δ/s and history
    fps: float = 20.0  # frames per second (10-30)
    feed: str = "grouped"  # event feed: repeated alloc/free coalesced, one row per op across devices
    times: str = "wall"  # feed times: wall clock (as TT-Metal logs) or relative to the first event
    history_scale: float = 1.0  # history height = capacity × this
    warn: float = 75.0  # per cent of capacity: yellow
    crit: float = 90.0  # per cent of capacity: red
    devices: str = ""  # filters, as --device / --type / --pid take them
    types: str = ""
    pids: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # action -> keys, e.g. quit = "q,f10,ctrl+q"
    source: str = ""  # the file this came from ("" = defaults)


#: table -> key -> (Config field, kind, allowed values or range)
SCHEMA: dict[str, dict[str, tuple[str, str, object]]] = {
    "ui": {
        "theme": ("theme", "str", None),
        "pane": ("pane", "choice", ("", *PANES)),
        "group": ("group", "bool", None),
        "refresh": ("refresh", "float", (0.05, 60.0)),
        "fps": ("fps", "float", (10.0, 30.0)),
        "feed": ("feed", "choice", FEED_MODES),
        "times": ("times", "choice", TIME_MODES),
        "history_scale": ("history_scale", "float", (0.001, 1.0)),
    },
    "thresholds": {
        "warn": ("warn", "float", (0.0, 100.0)),
        "crit": ("crit", "float", (0.0, 100.0)),
    },
    "filters": {
        "devices": ("devices", "str", None),
        "types": ("types", "str", None),
        "pids": ("pids", "str", None),
    },
}


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/tt-memtop/config.toml``, ``~/.config/tt-memtop/config.toml`` without it."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tt-memtop" / "config.toml"


def _check(name: str, where: str, kind: str, allowed: object, value: object) -> object:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where} {name}: expected {expected}, got {value!r}")

    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "choice":
        if value not in allowed:  # type: ignore[operator]
            raise bad("one of " + ", ".join(a for a in allowed if a))  # type: ignore[union-attr]
        return value
    if kind == "float":
        lo, hi = allowed  # type: ignore[misc]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"a number from {lo:g} to {hi:g}")
        if not lo <= value <= hi:
            raise bad(f"a number from {lo:g} to {hi:g}")
        return float(value)
    raise AssertionError(kind)


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    """``show_pane.devices = "1"`` is a nested table in TOML: back to the dotted binding id."""
    out: dict[str, object] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse(data: dict, source: str = "config.toml", known_actions: frozenset[str] | None = None) -> Config:
    """A Config from parsed TOML, every key checked (unknown tables and keys are errors too)."""
    values: dict[str, object] = {}
    for table, body in data.items():
        if table == "keys":
            if not isinstance(body, dict):
                raise ConfigError(f"{source}: [keys] must be a table of action = \"keys\"")
            keys = {}
            flat = _flatten(body)
            for action, spec in flat.items():
                if known_actions is not None and action not in known_actions:
                    raise ConfigError(f"{source}: [keys] {action}: no such action (memtop --print-config lists them)")
                if not isinstance(spec, str) or not spec.strip():
                    raise ConfigError(f"{source}: [keys] {action}: expected keys like \"q,f10\", got {spec!r}")
                keys[action] = ",".join(k.strip() for k in spec.split(",") if k.strip())
            values["keys"] = keys
            continue
        schema = SCHEMA.get(table)
        if schema is None:
            raise ConfigError(f"{source}: unknown table [{table}] (known: {', '.join([*SCHEMA, 'keys'])})")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: {table} must be a table ([{table}])")
        for key, value in body.items():
            spec = schema.get(key)
            if spec is None:
                raise ConfigError(f"{source}: [{table}] {key}: unknown key (known: {', '.join(schema)})")
            fname, kind, allowed = spec
            values[fname] = _check(key, f"{source}: [{table}]", kind, allowed, value)
    cfg = replace(Config(), source=source, **values)  # type: ignore[arg-type]
    if cfg.warn > cfg.crit:
        raise ConfigError(f"{source}: [thresholds] warn ({cfg.warn:g}) must not be above crit ({cfg.crit:g})")
    return cfg


def load(path: str | os.PathLike | None = None, known_actions: frozenset[str] | None = None) -> Config:
    """The config at ``path`` (must exist), or at :func:`default_path` (may be missing: defaults)."""
    explicit = path is not None
    p = Path(path) if explicit else default_path()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{p}: no such config file") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse(data, str(p), known_actions)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}" if v != int(v) else f"{v:.1f}"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dumps(cfg: Config, key_table: dict[str, str] | None = None) -> str:
    """The settings as a config file (with every key binding when ``key_table`` is given)."""
    out = [f"# tt-memtop settings ({'from ' + cfg.source if cfg.source else 'defaults'}); "
           f"save as {default_path()}", ""]
    for table, schema in SCHEMA.items():
        out.append(f"[{table}]")
        for key, (fname, kind, allowed) in schema.items():
            line = f"{key} = {_toml_value(getattr(cfg, fname))}"
            if kind == "choice":
                line += "  # " + " | ".join(a or '""' for a in allowed)  # type: ignore[union-attr]
            out.append(line)
        out.append("")
    out.append("[keys]  # action = \"key,key\" (Textual key names)")
    keys = dict(key_table or {})
    keys.update(cfg.keys)
    for action, spec in keys.items():
        name = action if action.isidentifier() else _toml_value(action)
        out.append(f"{name} = {_toml_value(spec)}")
    return "\n".join(out) + "\n"


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Config))
