"""A prometheus-client Collector that yields fresh metric families from a :class:`MetricsView` per scrape.

Every scrape builds its families from scratch, so a process that has gone, or a device that
disappeared, simply is not there: no stale series by construction, nothing to unregister.
Naming follows Prometheus practice: a ``tt_memtop_`` prefix, base units (bytes, seconds),
``_total`` counters, HELP and TYPE for each family. Labels: ``hostname``, ``device``, ``arch``,
``pool`` (dram, l1, l1_small, trace, cb, kernel), and ``pid`` / ``comm`` for processes. Buffer
ids and addresses are never labels (unbounded cardinality).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..core.phases import Phase
from .view import POOLS, MetricsView

__all__ = ["PHASES", "PREFIX", "MemtopCollector", "render"]

PREFIX = "tt_memtop_"
PHASES = tuple(p.value for p in Phase)
_DEV = ["hostname", "device", "arch"]
_POOL = [*_DEV, "pool"]
_PROC = ["hostname", "pid", "comm"]


def _phase_states(phase: str) -> dict[str, bool]:
    return {p: p == phase for p in PHASES}


def families(view: MetricsView) -> Iterator[Metric]:
    """The metric families of ``view`` that have samples, in a fixed order (a figure the source does
    not know — peaks from a poll, lag while disconnected — is absent rather than zero)."""
    for fam in _all_families(view):
        if fam.samples:
            yield fam


def _all_families(view: MetricsView) -> Iterator[Metric]:
    host = view.hostname
    g = GaugeMetricFamily

    up = g(PREFIX + "source_up", "1 when the source delivers live figures, 0 when it is disconnected",
           labels=["hostname", "source"])
    up.add_metric([host, view.source], 1.0 if view.up else 0.0)
    yield up
    lag = g(PREFIX + "source_lag_seconds", "how far the figures trail the source: event delivery delay for an "
            "event stream, age of the newest sample for polled or shared-memory totals", labels=["hostname", "source"])
    if view.lag_s is not None:
        lag.add_metric([host, view.source], view.lag_s)
    yield lag
    ev = CounterMetricFamily(PREFIX + "events", "allocation-server events seen (allocs, frees, cleanups, ...)",
                             labels=["hostname"])
    ev.add_metric([host], view.events_total)
    yield ev
    bad = CounterMetricFamily(PREFIX + "bad_frames", "bytes on the allocation socket that were not a valid message",
                              labels=["hostname"])
    bad.add_metric([host], view.bad_frames_total)
    yield bad

    used = g(PREFIX + "used_bytes", "bytes allocated per device and pool (l1_small includes system memory)",
             labels=_POOL)
    cap = g(PREFIX + "capacity_bytes", "bytes the device has in the pool (dram, l1)", labels=_POOL)
    peak = g(PREFIX + "peak_bytes", "high-water mark of used_bytes since the exporter started (or the last reset)",
             labels=_POOL)
    largest = g(PREFIX + "largest_allocatable_bytes", "largest interleaved buffer that would fit now: the largest "
                "free range per bank times the banks", labels=_POOL)
    drift = g(PREFIX + "ledger_drift_bytes", "event ledger minus TT-Metal's shared-memory total (non-zero means "
              "lost or unreported events)", labels=_POOL)
    bufs = g(PREFIX + "buffers", "live buffers per device (circular buffers and kernels excluded)", labels=_DEV)
    dphase = StateSetMetricFamily(PREFIX + "device_phase", "trace phase of the work on the device", labels=_DEV)
    for d in view.devices:
        dev = [host, str(d.device), d.arch]
        for pool, value in zip(POOLS, d.used, strict=True):
            used.add_metric([*dev, pool], value)
        for fam, figures in ((cap, d.capacity), (peak, d.peak), (largest, d.largest_allocatable), (drift, d.drift)):
            for pool, value in figures.items():
                fam.add_metric([*dev, pool], value)
        if d.buffers is not None:
            bufs.add_metric(dev, d.buffers)
        if d.phase:
            dphase.add_metric(dev, _phase_states(d.phase))
    yield from (used, cap, peak, largest, drift, bufs, dphase)

    pused = g(PREFIX + "process_used_bytes", "bytes a process holds per device and pool",
              labels=[*_PROC, "device", "pool"])
    pbufs = g(PREFIX + "process_buffers", "live entries a process holds on all devices (buffers, circular buffers "
              "and kernels)", labels=_PROC)
    pphase = StateSetMetricFamily(PREFIX + "process_phase", "trace phase of the process", labels=_PROC)
    for p in view.processes:
        proc = [host, str(p.pid), p.comm]
        for device, values in sorted(p.used.items()):
            for pool, value in zip(POOLS, values, strict=True):
                pused.add_metric([*proc, str(device), pool], value)
        if p.buffers is not None:
            pbufs.add_metric(proc, p.buffers)
        if p.phase:
            pphase.add_metric(proc, _phase_states(p.phase))
    yield from (pused, pbufs, pphase)


class MemtopCollector(Collector):
    """Asks ``take_view`` for a fresh view on every collect (a scrape, or a textfile write)."""

    def __init__(self, take_view: Callable[[], MetricsView]) -> None:
        self.take_view = take_view

    def collect(self) -> Iterator[Metric]:
        yield from families(self.take_view())


def registry_for(take_view: Callable[[], MetricsView]) -> CollectorRegistry:
    """A registry holding only memtop's collector (no process/platform collectors of the exporter itself)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MemtopCollector(take_view))
    return reg


def render(view: MetricsView) -> bytes:
    """``view`` in the Prometheus text exposition format."""
    return generate_latest(registry_for(lambda: view))
