"""Simulated TT-Metal workloads with ground-truth phase labels (see :mod:`.base` and :mod:`.programs`).

``base`` holds the vocabulary (processes, tensors, messages, labels) and the first, simple
scenarios (``llama-t3k``, ``cnn``, ``two-process``, ``leaky``, ``galaxy``: used by the demo, the
tests and the committed recordings — their output must not change). ``programs`` adds scenarios
modelled on real TTNN programs, with realistic host timing; they register themselves in
:data:`SCENARIOS`.
"""

from __future__ import annotations

from . import programs as _programs  # noqa: F401  (registers the realistic scenarios)
from .base import (
                   BASE_PID,
                   LLAMA_TRACE_SIZE,
                   SCENARIOS,
                   TRACE_ADDRESS,
                   Label,
                   ProcessScript,
                   Scenario,
                   build,
                   reference_events,
                   supports,
)

__all__ = ["BASE_PID", "LLAMA_TRACE_SIZE", "REALISTIC", "SCENARIOS", "TRACE_ADDRESS", "Label", "ProcessScript",
           "Scenario", "build", "reference_events", "supports"]

#: The scenarios modelled on real programs (the benchmark scores these over several seeds).
REALISTIC: tuple[str, ...] = tuple(_programs.PROGRAMS)
