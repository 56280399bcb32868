"""Simulated TT-Metal workloads: timed message schedules with ground-truth phase labels.

Pure and deterministic: a scenario is built from its name and a seed, nothing else. Each simulated
process is a :class:`ProcessScript` — its ``(t_seconds, AllocMessage)`` list, the phases it goes
through (:class:`Label`, the ground truth for :mod:`tt_memtop.core.phases`) and when it exits. A
worker process rebuilds the scenario itself and sends only its own slot's messages.

The workloads follow the facts in PROTOCOL.md §8: Wormhole devices with 12 DRAM banks of 1 GiB,
mesh tensors allocated at the same address on every device of the mesh, weights and KV cache in
DRAM, compile / warm-up runs that churn through thousands of short-lived buffers per second
(addresses reused run after run), a trace capture that ends with one TRACE buffer per device
(Llama on T3K: 12,503,040 B at 0x3e363c80 on all 8 devices), replay with only a trickle of tiny
I/O buffers, release, teardown. With CB/KERNEL messages (144-byte layout) device init loads the
204 KB of system kernels and compilation loads application kernels and their CBs.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...core.events import Event
from ...core.phases import Phase
from ...core.protocol import AllocMessage, BufferType, KernelType, Layout, MsgType
from ...core.registry import Registry

__all__ = ["SCENARIOS", "Label", "ProcessScript", "Scenario", "build", "reference_events", "supports"]

KiB = 1024
MiB = 1024 * KiB
TRACE_ADDRESS = 0x3E363C80  # bottom of the 30,000,000-byte trace region at the top of each 1 GiB bank
LLAMA_TRACE_SIZE = 12_503_040
BASE_PID = 4000  # nominal PID of slot 0; workers send their real PID instead

_DRAM, _L1, _TRACE = int(BufferType.DRAM), int(BufferType.L1), int(BufferType.TRACE)


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth: slot ``slot`` is in ``phase`` during ``[start_s, end_s)``."""

    slot: int
    phase: Phase
    start_s: float
    end_s: float


@dataclass(slots=True)
class ProcessScript:
    """One simulated TT-Metal process."""

    slot: int
    pid: int  # nominal PID used in the messages
    devices: tuple[int, ...]
    messages: list[tuple[float, AllocMessage]] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    exit_s: float = 0.0
    leaks: bool = False  # exits with buffers still allocated (the server's dead-PID cleanup removes them)
    #: seconds from the exit to the server's dead-PID cleanup (None: ``reference_events``' default);
    #: a killed process is only noticed at the server's next periodic check (every 3-5 s)
    cleanup_after_s: float | None = None


@dataclass(slots=True)
class Scenario:
    name: str
    seed: int
    num_devices: int
    description: str
    processes: list[ProcessScript]
    #: a monitor that attaches at this scenario second (None: from the start): live scoring starts there
    attach_s: float | None = None

    @property
    def duration_s(self) -> float:
        return max(p.exit_s for p in self.processes)

    def labels(self) -> list[Label]:
        return sorted((lab for p in self.processes for lab in p.labels), key=lambda lab: (lab.start_s, lab.slot))

    def schedule(self) -> Iterator[tuple[float, int, AllocMessage]]:
        """Every message of every process as ``(t_seconds, slot, message)``, in time order."""
        streams = [((t, p.slot, m) for t, m in p.messages) for p in self.processes]
        return heapq.merge(*streams, key=lambda item: (item[0], item[1]))


def supports(msg_type: int, layout: Layout | int) -> bool:
    """Whether a client speaking ``layout`` sends ``msg_type``: CB/KERNEL messages exist from 128 bytes on."""
    if msg_type in (MsgType.ALLOC, MsgType.FREE):
        return True
    return int(layout) in (Layout.V128, Layout.V144)


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Tensor:
    """A mesh tensor: one buffer per device of the mesh, all at ``address``."""

    address: int
    size: int  # per device
    buffer_type: int
    name: str


class _Heap:
    """A bank-interleaved address allocator: bump pointer plus exact-size reuse (addresses recur)."""

    def __init__(self, base: int, banks: int, align: int = 32, top_down: bool = False) -> None:
        self.next = base
        self.banks = banks
        self.align = align
        self.top_down = top_down
        self.free_lists: dict[int, list[int]] = {}

    def _per_bank(self, size: int) -> int:
        per = -(-size // self.banks)
        return -(-per // self.align) * self.align

    def alloc(self, size: int) -> int:
        per = self._per_bank(size)
        reuse = self.free_lists.get(per)
        if reuse:
            return reuse.pop()
        if self.top_down:
            self.next -= per
            return self.next
        addr = self.next
        self.next += per
        return addr

    def release(self, address: int, size: int) -> None:
        self.free_lists.setdefault(self._per_bank(size), []).append(address)


@dataclass(frozen=True, slots=True)
class Model:
    """The shape of a simulated network: what it loads and what one forward pass allocates."""

    weights: tuple[tuple[str, int], ...]  # (name, bytes per device)
    kv_cache: tuple[tuple[str, int], ...]
    decode_ops: tuple[tuple[str, int, int], ...]  # (op, output buffer type, output bytes per device)
    prefill_ops: tuple[tuple[str, int, int], ...]
    trace_sizes: tuple[int, ...]  # TRACE bytes per device, one per trace the process will capture
    op_s: float = 0.25e-3  # host time per op in eager mode
    prefill_op_s: float = 0.6e-3
    replay_period_s: float = 0.010


def _llama(layers: int, tp: int, trace_sizes: tuple[int, ...]) -> Model:
    """A Llama-3.1-8B-like decoder, tensor-parallel over ``tp`` devices (bfp8 weights)."""
    per = 8 // max(1, min(tp, 8))  # smaller meshes hold more of each weight
    weights: list[tuple[str, int]] = [("tok_embeddings", 131_334_144 // 8 * per // 2)]
    for i in range(layers):
        weights += [
            (f"layers.{i}.attention.wqkv", 3_342_336 * per),
            (f"layers.{i}.attention.wo", 2_228_224 * per),
            (f"layers.{i}.feed_forward.w1", 7_798_784 * per),
            (f"layers.{i}.feed_forward.w3", 7_798_784 * per),
            (f"layers.{i}.feed_forward.w2", 4_128_768 * per),
            (f"layers.{i}.attention_norm", 8_192),
        ]
    weights.append(("lm_head", 69_795_840 // 8 * per))
    kv = tuple((f"layers.{i}.kv_cache.{kv}", 2 * MiB) for i in range(layers) for kv in "kv")
    decode_layer = (("rms_norm", _L1, 262_144), ("qkv_matmul", _L1, 81_920), ("sdpa_decode", _L1, 65_536),
                    ("all_gather", _DRAM, 262_144), ("ff1_ff3_mul", _L1, 114_688), ("ff2_reduce", _L1, 32_768))
    prefill_layer = (("rms_norm", _DRAM, 2 * MiB), ("qkv_matmul", _DRAM, 3 * MiB), ("sdpa", _DRAM, 2 * MiB),
                     ("all_gather", _DRAM, 4 * MiB), ("ff1_ff3_mul", _DRAM, 7 * MiB), ("ff2_reduce", _DRAM, 2 * MiB))
    return Model(tuple(weights), kv, decode_layer * layers, prefill_layer * layers, trace_sizes)


def _resnet() -> Model:
    """A ResNet-50-like CNN on one device, traced at two batch sizes."""
    widths = [64] * 10 + [128] * 12 + [256] * 18 + [512] * 9 + [1000] * 4
    weights = tuple((f"conv{i}.weight", max(64 * KiB, w * w * 9 * 2 // (1 if w < 512 else 2)))
                    for i, w in enumerate(widths))
    ops = tuple((f"conv{i}", _L1 if w >= 256 else _DRAM, 802_816 // max(1, w // 64) + 32 * KiB)
                for i, w in enumerate(widths))
    return Model(weights, (), ops, (), (4_718_592, 9_437_184), op_s=0.12e-3, replay_period_s=0.004)


class _Process:
    """Writes one process's messages and labels; the phase helpers below are its vocabulary."""

    def __init__(self, slot: int, devices: tuple[int, ...], rng: random.Random, model: Model, t0: float) -> None:
        self.script = ProcessScript(slot, BASE_PID + slot, devices)
        self.rng = rng
        self.model = model
        self.t = t0
        self.dram = _Heap(0x100000, banks=12)
        self.l1 = _Heap(1_499_136, banks=64, top_down=True)
        # the trace region's bottom, as in the Llama log; traces interleave over the 12 banks like any buffer
        self.trace_heap = _Heap(TRACE_ADDRESS, banks=12)
        self.live: list[Tensor] = []  # long-lived tensors (weights, caches, system buffers)
        self.kernels: list[Tensor] = []
        self.cbs: list[Tensor] = []
        self.traces: list[Tensor] = []
        self.compiled: set[str] = set()
        self._phase: tuple[Phase, float] | None = None
        self._cb_ids = 0
        self._kernel_ids = 0

    # -- labels
    def phase(self, phase: Phase) -> None:
        self._close()
        self._phase = (phase, self.t)

    def _close(self) -> None:
        if self._phase is not None and self.t > self._phase[1]:
            self.script.labels.append(Label(self.script.slot, self._phase[0], self._phase[1], self.t))

    def exit(self, linger_s: float = 0.5, leaks: bool = False) -> ProcessScript:
        """The process exits now; ``exited`` is labelled for ``linger_s`` after that."""
        self.t += 1e-4
        self.phase(Phase.EXITED)
        self.script.exit_s = self.t
        self.script.leaks = leaks
        self.t += linger_s
        self._close()
        self.t = self.script.exit_s
        return self.script

    # -- messages
    def _send(self, msg_type: int, device: int, size: int, buffer_type: int, buffer_id: int, name: str = "",
              dt: float = 1e-6) -> None:
        self.script.messages.append((self.t, AllocMessage(
            type=msg_type, device_id=device, size=size, buffer_type=buffer_type, process_id=self.script.pid,
            buffer_id=buffer_id, buffer_name=name[:63], stack_trace=f"ttnn::{name.split('.')[-1]}" if name else "")))
        self.t += dt

    def alloc(self, buffer_type: int, size: int, name: str, devices: tuple[int, ...] | None = None) -> Tensor:
        heap = {_DRAM: self.dram, _TRACE: self.trace_heap}.get(buffer_type, self.l1)
        tensor = Tensor(heap.alloc(size), size, buffer_type, name)
        for dev in devices or self.script.devices:
            self._send(MsgType.ALLOC, dev, size, buffer_type, tensor.address, name)
        return tensor

    def free(self, tensor: Tensor, devices: tuple[int, ...] | None = None) -> None:
        for dev in devices or self.script.devices:
            self._send(MsgType.FREE, dev, tensor.size, tensor.buffer_type, tensor.address, tensor.name)
        heap = {_DRAM: self.dram, _TRACE: self.trace_heap}.get(tensor.buffer_type, self.l1)
        heap.release(tensor.address, tensor.size)

    def _kernel(self, size: int, kind: KernelType, name: str) -> None:
        self._kernel_ids += 1
        k = Tensor(0x1000 + self._kernel_ids, size, int(kind), name)
        for dev in self.script.devices:
            self._send(MsgType.KERNEL_LOAD, dev, size, int(kind), k.address, name)
        self.kernels.append(k)

    def _cb(self, size: int, name: str) -> None:
        self._cb_ids += 1
        cb = Tensor(self._cb_ids, size, 0, name)
        for dev in self.script.devices:
            self._send(MsgType.CB_ALLOC, dev, size, 0, cb.address, name)
        self.cbs.append(cb)

    def wait(self, seconds: float) -> None:
        self.t += seconds

    # -- phases of a traced workload
    def device_init(self) -> None:
        """Open the mesh: 256-byte L1 system buffers, then 204 KB of system kernels per device."""
        for i in range(4):
            self.live.append(self.alloc(_L1, 256, f"system.l1.{i}"))
        for size, kind, name in ((57_344, KernelType.FABRIC, "fabric"), (47_104, KernelType.DISPATCH, "dispatch"),
                                 (52_224, KernelType.DISPATCH, "prefetch"), (52_224, KernelType.DISPATCH, "completion")):
            self._kernel(size, kind, name)
        self.wait(0.05)

    def load_weights(self) -> None:
        """Weights then KV cache, from the tensor cache: a few ms per tensor, a pause per layer."""
        for name, size in self.model.weights + self.model.kv_cache:
            self.live.append(self.alloc(_DRAM, size, name))
            if name.endswith("attention_norm"):  # an on-device tilize temporary per layer
                self.free(self.alloc(_L1, 64 * KiB, name + ".tilize_tmp"))
                self.wait(self.rng.uniform(0.02, 0.08))
            self.wait(self.rng.uniform(1e-3, 4e-3) * (1 + size // (16 * MiB)))

    def forward(self, ops: tuple[tuple[str, int, int], ...], op_s: float) -> None:
        """One eager forward pass: every op allocates its output and frees its input.

        The first time an op runs it is compiled: a JIT pause, its kernels loaded and its CBs allocated.
        """
        prev: Tensor | None = None
        residual = self.alloc(_L1, 262_144, "residual")
        for i, (op, btype, size) in enumerate(ops):
            if op not in self.compiled:
                self.compiled.add(op)
                self.wait(self.rng.uniform(0.004, 0.012))
                self._kernel(8 * KiB * 64, KernelType.APPLICATION, f"{op}.kernels")
                for c in range(2):
                    self._cb(64 * KiB, f"{op}.cb{c}")
            out = self.alloc(btype, size, f"{op}.out")
            if prev is not None:
                self.free(prev)
            prev = out
            if i % 6 == 5:  # end of a layer: the residual stream is rewritten
                self.free(residual)
                residual = self.alloc(_L1, 262_144, "residual")
            self.wait(op_s * self.rng.uniform(0.8, 1.2))
        self.free(residual)
        if prev is not None:
            self.free(prev)

    def sync(self) -> None:
        """Host-side work between runs: synchronise, sample a token (a pause of 30-60 ms)."""
        self.wait(self.rng.uniform(0.03, 0.06))

    def capture(self, trace_size: int, first_device: int | None = None) -> None:
        """Run the decode pass once more while recording, then allocate the TRACE buffer on every device."""
        self.phase(Phase.CAPTURE)
        self.forward(self.model.decode_ops, self.model.op_s)
        self.wait(0.002)
        devices = list(self.script.devices)
        first = devices.pop(devices.index(first_device) if first_device in devices else 0)
        tensor = Tensor(self.trace_heap.alloc(trace_size), trace_size, _TRACE, "trace")
        self._send(MsgType.ALLOC, first, trace_size, _TRACE, tensor.address, "trace", dt=1e-3)
        for dev in devices:
            self._send(MsgType.ALLOC, dev, trace_size, _TRACE, tensor.address, "trace", dt=2e-5)
        self.traces.append(tensor)

    def replay(self, iterations: int) -> None:
        """Replay the trace: per iteration only a 2 KiB readback buffer on the first device."""
        self.phase(Phase.REPLAY)
        io = (self.script.devices[0],)
        for _ in range(iterations):
            self.wait(self.model.replay_period_s * self.rng.uniform(0.9, 1.1))
            self.free(self.alloc(_DRAM, 2 * KiB, "readback", devices=io), devices=io)

    def release(self) -> None:
        self.wait(0.02)
        self.phase(Phase.RELEASED)
        for tensor in self.traces:
            self.free(tensor)
        self.traces.clear()
        self.wait(self.rng.uniform(0.3, 0.5))

    def teardown(self) -> None:
        """Close the mesh: free everything that is left, newest first."""
        self.phase(Phase.TEARDOWN)
        for tensor in reversed(self.live):
            self.free(tensor)
            self.wait(self.rng.uniform(2e-4, 6e-4))
        for cb in self.cbs:
            for dev in self.script.devices:
                self._send(MsgType.CB_FREE, dev, cb.size, 0, cb.address, cb.name)
        for k in self.kernels:
            for dev in self.script.devices:
                self._send(MsgType.KERNEL_UNLOAD, dev, k.size, k.buffer_type, k.address, k.name)
        self.live.clear()

    # -- composite
    def traced_lifecycle(self, warmup_decode: int = 2, replays: int = 300, release: bool = True,
                         first_trace_device: int | None = None) -> None:
        """Load, compile prefill and decode, capture every trace of the model, replay, release, tear down."""
        self.phase(Phase.LOADING)
        self.device_init()
        self.load_weights()
        self.phase(Phase.WARMUP)
        for _ in range(2 if self.model.prefill_ops else 0):
            self.forward(self.model.prefill_ops, self.model.prefill_op_s)
            self.sync()
        for i, trace_size in enumerate(self.model.trace_sizes):
            if i:
                self.phase(Phase.WARMUP)
            for _ in range(warmup_decode):
                self.forward(self.model.decode_ops, self.model.op_s)
                self.sync()
            self.capture(trace_size, first_trace_device)
            self.replay(replays)
        if release:
            self.release()
            self.teardown()


# ---------------------------------------------------------------------------------------------- scenarios


def _llama_t3k(seed: int) -> tuple[int, str, list[ProcessScript]]:
    rng = random.Random(seed)
    p = _Process(0, tuple(range(8)), rng, _llama(32, 8, (LLAMA_TRACE_SIZE,)), 0.0)
    p.traced_lifecycle(warmup_decode=2, replays=400, first_trace_device=4)
    return 8, "Llama-3.1-8B decode on a T3K (8 Wormhole devices): load, warm-up, capture, replay, release", \
        [p.exit()]


def _cnn(seed: int) -> tuple[int, str, list[ProcessScript]]:
    rng = random.Random(seed)
    p = _Process(0, (0,), rng, _resnet(), 0.0)
    p.traced_lifecycle(warmup_decode=2, replays=400)
    return 1, "ResNet-50-like CNN on one Wormhole, traced at two batch sizes", [p.exit()]


def _two_process(seed: int) -> tuple[int, str, list[ProcessScript]]:
    rng = random.Random(seed)
    traced = _Process(0, (0, 1, 2, 3), random.Random(rng.random()), _llama(16, 4, (LLAMA_TRACE_SIZE,)), 0.0)
    traced.traced_lifecycle(warmup_decode=2, replays=300)
    eager = _Process(1, (4, 5, 6, 7), random.Random(rng.random()), _llama(8, 4, ()), 0.8)
    eager.phase(Phase.LOADING)
    eager.device_init()
    eager.load_weights()
    eager.phase(Phase.IDLE)  # waiting for requests
    eager.wait(2.0)
    eager.phase(Phase.WARMUP)  # never traces: eager decode, churn until it stops
    for _ in range(25):
        eager.forward(eager.model.decode_ops, eager.model.op_s)
        eager.sync()
    eager.teardown()
    return 8, "two processes on one T3K: a traced one on devices 0-3, an eager one (never traces) on 4-7", \
        [traced.exit(), eager.exit()]


def _leaky(seed: int) -> tuple[int, str, list[ProcessScript]]:
    rng = random.Random(seed)
    p = _Process(0, (0, 1), rng, _llama(12, 2, (LLAMA_TRACE_SIZE,)), 0.0)
    p.traced_lifecycle(warmup_decode=2, replays=200, release=False)
    return 2, "a traced process on an N300 that dies without freeing: the server's dead-PID cleanup removes " \
              "its buffers", [p.exit(leaks=True)]


def _galaxy(seed: int) -> tuple[int, str, list[ProcessScript]]:
    rng = random.Random(seed)
    p = _Process(0, tuple(range(32)), rng, _llama(10, 32, (LLAMA_TRACE_SIZE,)), 0.0)
    p.traced_lifecycle(warmup_decode=2, replays=300)
    return 32, "Llama on a Galaxy (32 Wormhole devices; more than the original server's 8)", [p.exit()]


SCENARIOS: dict[str, Callable[[int], tuple[int, str, list[ProcessScript]]]] = {
    "llama-t3k": _llama_t3k,
    "cnn": _cnn,
    "two-process": _two_process,
    "leaky": _leaky,
    "galaxy": _galaxy,
}


def build(name: str, seed: int = 0) -> Scenario:
    """Build scenario ``name``. Same name and seed, same scenario."""
    try:
        make = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (expected one of {', '.join(SCENARIOS)})") from None
    made = make(seed)
    num_devices, description, processes = made[:3]
    return Scenario(name, seed, num_devices, description, processes, *made[3:])


def reference_events(scenario: Scenario, layout: Layout | int = Layout.V144,
                     cleanup_delay_s: float = 0.1) -> list[Event]:
    """The events a server would emit for ``scenario``, computed without sockets or processes.

    Messages a ``layout`` client would not send are left out; a leaking process's buffers are
    removed by a dead-PID cleanup ``cleanup_delay_s`` after it exits. Timestamps are scenario time.
    """
    registry = Registry()
    cleanups = sorted((p.exit_s + (cleanup_delay_s if p.cleanup_after_s is None else p.cleanup_after_s), p.pid)
                      for p in scenario.processes if p.leaks)
    events: list[Event] = []

    def clean_until(t: float) -> None:
        while cleanups and cleanups[0][0] <= t:
            at, pid = cleanups.pop(0)
            events.extend(registry.cleanup([pid], int(at * 1e9)))

    for t, _slot, msg in scenario.schedule():
        if not supports(msg.type, layout):
            continue
        clean_until(t)
        ev = registry.apply(msg, int(t * 1e9))
        if ev is not None:
            events.append(ev)
    clean_until(float("inf"))
    return events
