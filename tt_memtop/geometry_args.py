"""Command-line overrides of the bank geometry (docs/MEMORY_MODEL.md): one definition for every command.

``trace_region_size`` and ``l1_small_size`` are what the program passed when it opened the device
(e.g. ``ttnn.open_device(..., trace_region_size=30000000)``); they are not on the wire, so without
them memtop infers the regions from the addresses it sees.
"""

from __future__ import annotations

import argparse

from .core.geometry import GeometryConfig

__all__ = ["add_geometry_arguments", "geometry_from_args"]


def _bytes(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = 1
    for suffix, m in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30), ("m", 1 << 20),
                      ("k", 1 << 10), ("b", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = int(t, 0) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _banks(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a bank count: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def add_geometry_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("bank geometry (defaults per arch; see docs/MEMORY_MODEL.md)")
    g.add_argument("--trace-region-size", type=_bytes, default=None, metavar="BYTES",
                   help="the trace_region_size the program opened its devices with (default: inferred from "
                        "TRACE addresses)")
    g.add_argument("--l1-small-size", type=_bytes, default=None, metavar="BYTES",
                   help="the l1_small_size the program opened its devices with (default: inferred from "
                        "L1_SMALL addresses)")
    g.add_argument("--dram-banks", type=_banks, default=None, metavar="N", help="DRAM banks per device")
    g.add_argument("--l1-banks", type=_banks, default=None, metavar="N",
                   help="L1 banks (compute-and-storage worker cores) per device")
    g.add_argument("--l1-unreserved-base", type=_bytes, default=None, metavar="ADDR",
                   help="lowest allocatable L1 address (changes with TT-Metal's firmware size)")


def geometry_from_args(args: argparse.Namespace) -> GeometryConfig:
    return GeometryConfig(trace_region_size=getattr(args, "trace_region_size", None),
                          l1_small_size=getattr(args, "l1_small_size", None),
                          dram_banks=getattr(args, "dram_banks", None), l1_banks=getattr(args, "l1_banks", None),
                          l1_unreserved_base=getattr(args, "l1_unreserved_base", None))
