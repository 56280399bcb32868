"""Scenarios modelled on real TTNN programs, with the host timing real ones have.

What real programs do (read from tt-metal's sources):

* **tt_transformers** (``models/tt_transformers/tt/generator.py``): load weights from the tensor
  cache, compile prefill (one eager run per supported length) and run the user's prefill, then
  ``_capture_trace_text``: one *compile run* of decode (every op a program-cache miss the first
  time: a JIT pause of 15-300 ms in the first layer, kernels and CBs loaded, a few constants
  created lazily), the trace inputs copied to device (~4 ms, no sync), ``begin_trace_capture``,
  the same decode run again (allocation for allocation, minus what only a first run allocates),
  ``end_trace_capture`` (20-50 ms assembling the command stream) and the trace buffer. Decode
  then replays it (``execute_trace``) with inputs copied into the persistent trace inputs: no
  allocation, or a tiny read-back. A new batch of users runs prefill again, untraced, with the
  decode trace resident. Prefill can be traced too: two traces alive at once.
* **trace buffers** (``tt_metal/distributed/mesh_trace.cpp``, ``populate_mesh_buffer``): with a
  configured ``trace_region_size`` a TRACE buffer in the region at the top of DRAM; with
  ``trace_region_size = 0`` (the default now) a *DRAM* buffer allocated top-down, sized to the
  command stream rounded up to page size x DRAM banks — indistinguishable by type from a weight.
* **TT-CNN pipeline** (``models/tt_cnn``): two command queues, inputs written on CQ1 into a
  persistent DRAM tensor, resharded into the trace's L1 input on CQ0, the trace executed, the
  output copied out to DRAM (an alloc / free of the same size per iteration) and read on CQ1.
* **diffusion** (SD-style demos): text encoder and VAE run eagerly, only the UNet step is traced.
* **servers** that never trace: load, then eager requests with idle gaps between them.

Host noise: Python GC pauses (20-80 ms), jitter on every op, a process killed mid-replay (the
server notices at its next 3-5 s check), a monitor that attaches mid-replay.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ...core.phases import Phase
from ...core.protocol import BufferType, KernelType, MsgType
from .base import LLAMA_TRACE_SIZE, SCENARIOS, KiB, MiB, Model, ProcessScript, Tensor, _Heap, _llama, _Process, _resnet

__all__ = ["PROGRAMS", "Program"]

_DRAM, _L1, _TRACE = int(BufferType.DRAM), int(BufferType.L1), int(BufferType.TRACE)
DRAM_BANK_TOP = 1 << 30  # per-bank address range of a Wormhole DRAM channel
DRAM_BANKS = 12
PAGE = 2048


def dram_trace_size(command_bytes: int) -> int:
    """A dynamic-region trace buffer: the command stream rounded up to page size x DRAM banks."""
    unit = PAGE * DRAM_BANKS
    return -(-command_bytes // unit) * unit


class Program(_Process):
    """A :class:`_Process` with real host timing: JIT pauses, GC pauses, jitter, traces as TRACE or DRAM."""

    def __init__(self, slot: int, devices: tuple[int, ...], rng: random.Random, model: Model, t0: float,
                 dram_trace: bool = False, jitter: float = 1.0) -> None:
        super().__init__(slot, devices, rng, model, t0)
        self.dram_trace = dram_trace
        self.jitter = jitter
        self.top = _Heap(DRAM_BANK_TOP, banks=DRAM_BANKS, top_down=True)  # dynamic trace region
        self.first_run_done: set[str] = set()

    def j(self, lo: float, hi: float) -> float:
        """A host delay in ``[lo, hi]`` widened by the jitter factor."""
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * self.jitter
        return max(0.0, self.rng.uniform(mid - half, mid + half))

    def gc(self, p: float = 0.02) -> None:
        if self.rng.random() < p:
            self.wait(self.rng.uniform(0.02, 0.08))

    # -- runs
    def run(self, ops: tuple[tuple[str, int, int], ...], op_s: float, kind: str) -> None:
        """One eager run of ``ops``. The first run of a kind compiles: output allocated, then the
        program-cache miss (JIT pause, kernels, CBs), and a few first-run-only constants."""
        first = kind not in self.first_run_done
        self.first_run_done.add(kind)
        prev: Tensor | None = None
        residual = self.alloc(_L1, 262_144, "residual")
        for i, (op, btype, size) in enumerate(ops):
            out = self.alloc(btype, size, f"{op}.out")
            if first and (kind, op) not in self.compiled:
                self.compiled.add((kind, op))
                self.wait(self.j(0.015, 0.3) if i < 16 else self.j(0.002, 0.01))
                self._kernel(8 * KiB * 64, KernelType.APPLICATION, f"{op}.kernels")
                for c in range(2):
                    self._cb(64 * KiB, f"{op}.cb{c}")
                if self.rng.random() < 0.5:  # a constant created lazily (rot mats, masks): first run only
                    self.live.append(self.alloc(_DRAM, 64 * KiB * self.rng.randint(1, 8), f"{op}.const"))
            if prev is not None:
                self.free(prev)
            prev = out
            if i % 6 == 5:
                self.free(residual)
                residual = self.alloc(_L1, 262_144, "residual")
            self.wait(op_s * self.rng.uniform(1 - 0.3 * self.jitter, 1 + 0.3 * self.jitter))
            self.gc(0.002)
        self.free(residual)
        if prev is not None:
            self.free(prev)

    def capture_run(self, ops: tuple[tuple[str, int, int], ...], op_s: float, kind: str,
                    command_bytes: int, inputs: int = 2) -> Tensor:
        """Inputs copied to device (no sync), begin_trace_capture, the run, end_trace_capture, the buffer."""
        for k in range(inputs):  # persistent trace inputs (tokens, positions, page table)
            self.live.append(self.alloc(_DRAM, 64 * KiB if k == 0 else 4 * KiB, f"{kind}.trace_input{k}"))
            self.wait(self.j(0.001, 0.002))
        self.phase(Phase.CAPTURE)
        self.run(ops, op_s, kind)
        self.wait(self.j(0.02, 0.05))  # end_trace_capture assembling the command stream
        return self.trace_buffer(command_bytes)

    def trace_buffer(self, command_bytes: int) -> Tensor:
        devices = list(self.script.devices)
        if self.dram_trace:
            size = dram_trace_size(command_bytes)
            tensor = Tensor(self.top.alloc(size), size, _DRAM, "trace")
        else:
            size = command_bytes
            tensor = Tensor(self.trace_heap.alloc(size), size, _TRACE, "trace")
        for dev in devices:
            self._send(MsgType.ALLOC, dev, size, tensor.buffer_type, tensor.address, "trace", dt=2e-5)
        self.traces.append(tensor)
        return tensor

    def replay_for(self, iterations: int, period_s: float, io: str = "none", io_size: int = 2 * KiB) -> None:
        """``execute_trace`` per iteration: nothing allocated, a tiny read-back, or an output copy per iteration."""
        self.phase(Phase.REPLAY)
        for _ in range(iterations):
            self.wait(period_s * self.rng.uniform(1 - 0.15 * self.jitter, 1 + 0.15 * self.jitter))
            self.gc(0.01)
            if io == "tiny":
                dev = (self.script.devices[0],)
                self.free(self.alloc(_DRAM, io_size, "readback", devices=dev), devices=dev)
            elif io == "output":  # TT-CNN: output resharded to DRAM, read on CQ1, freed
                self.free(self.alloc(_DRAM, io_size, "output_dram"))

    def release_traces(self, order: list[int] | None = None) -> None:
        self.wait(self.j(0.005, 0.02))
        self.phase(Phase.RELEASED)
        order = order if order is not None else list(range(len(self.traces)))
        for k, i in enumerate(order):
            if k:
                self.wait(self.j(0.001, 0.01))
            self._free_trace(self.traces[i])
        self.traces.clear()
        self.wait(self.j(0.2, 0.5))

    def _free_trace(self, tensor: Tensor) -> None:
        for dev in self.script.devices:
            self._send(MsgType.FREE, dev, tensor.size, tensor.buffer_type, tensor.address, tensor.name)

    def close_device(self, traces_inside: bool = False) -> None:
        """Teardown; with ``traces_inside`` the traces are freed among the other buffers (close_mesh_device)."""
        self.phase(Phase.TEARDOWN)
        if traces_inside and self.traces:
            at = len(self.live) // 3
            self.live[at:at] = self.traces
            self.traces = []
        for tensor in reversed(self.live):
            if tensor.name == "trace":
                self._free_trace(tensor)
            else:
                self.free(tensor)
            self.wait(self.j(2e-4, 6e-4))
        for cb in self.cbs:
            for dev in self.script.devices:
                self._send(MsgType.CB_FREE, dev, cb.size, 0, cb.address, cb.name)
        for k in self.kernels:
            for dev in self.script.devices:
                self._send(MsgType.KERNEL_UNLOAD, dev, k.size, k.buffer_type, k.address, k.name)
        self.live.clear()

    def kill(self, cleanup_after_s: float) -> ProcessScript:
        """SIGKILL: nothing more is sent; the server removes the buffers at its next check."""
        self.script.cleanup_after_s = cleanup_after_s
        return self.exit(linger_s=cleanup_after_s + 1.0, leaks=True)

    # -- tt_transformers
    def llm_prefill_and_decode(self, replays: int, period_s: float, io: str, batches: int = 1,
                               trace_prefill: bool = False) -> None:
        m = self.model
        self.phase(Phase.LOADING)
        self.device_init()
        self.load_weights()
        self.phase(Phase.WARMUP)
        self.run(m.prefill_ops, m.prefill_op_s, "prefill")  # prefill compile (warmup_model_prefill)
        self.wait(self.j(0.01, 0.05))
        if trace_prefill:
            self.capture_run(m.prefill_ops, m.prefill_op_s, "prefill", 6 * MiB + self.rng.randint(0, 1 << 20), 1)
            self.phase(Phase.REPLAY)
            self.wait(self.j(0.05, 0.1))  # one traced prefill
            self.phase(Phase.WARMUP)
        else:
            self.run(m.prefill_ops, m.prefill_op_s, "prefill")  # the user's prefill
        self.wait(self.j(0.002, 0.01))
        self.run(m.decode_ops, m.op_s, "decode")  # decode compile run: no sync before the capture
        self.capture_run(m.decode_ops, m.op_s, "decode", m.trace_sizes[0])
        for b in range(batches):
            self.replay_for(replays, period_s, io)
            if b + 1 < batches:  # a new batch of users: prefill with the decode trace resident
                self.wait(self.j(0.002, 0.01))
                if not trace_prefill:
                    self.phase(Phase.WARMUP)
                if trace_prefill:  # the prefill trace replayed: still replay
                    self.wait(self.j(0.05, 0.1))
                else:
                    self.run(m.prefill_ops, m.prefill_op_s, "prefill")
                    self.wait(self.j(0.002, 0.01))


def _llm(tp: int, layers: int) -> Model:
    return _llama(layers, tp, (LLAMA_TRACE_SIZE,))


# ---------------------------------------------------------------------------------------------- scenarios

def _tt_transformers(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(8)), rng, _llm(8, 16), 0.0, jitter=1.0 + 0.5 * (seed % 3))
    p.llm_prefill_and_decode(replays=rng.randint(250, 400), period_s=0.02, io=rng.choice(["none", "tiny"]),
                             batches=2)
    p.wait(0.02)
    p.release_traces()
    p.close_device()
    return 8, "tt_transformers decode on a T3K: prefill compile + prefill, decode compile, capture, " \
              "replay, a second batch's untraced prefill, release", [p.exit()]


def _two_traces(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(8)), rng, _llm(8, 12), 0.0, jitter=1.0 + 0.5 * (seed % 2))
    p.llm_prefill_and_decode(replays=rng.randint(200, 300), period_s=0.018, io="none", batches=2,
                             trace_prefill=True)
    p.release_traces(order=[1, 0] if seed % 2 else [0, 1])
    p.close_device()
    return 8, "traced prefill and traced decode: two traces alive at once, released in either order", [p.exit()]


def _cnn_pipeline(seed: int):
    rng = random.Random(seed)
    p = Program(0, (0,), rng, _resnet(), 0.0, dram_trace=bool(seed % 2), jitter=1.0 + 0.3 * (seed % 3))
    m = p.model
    p.phase(Phase.LOADING)
    p.device_init()
    p.load_weights()
    p.live.append(p.alloc(_DRAM, 602_112, "input_dram"))  # persistent DRAM input written on CQ1
    p.phase(Phase.WARMUP)
    p.run(m.decode_ops, m.op_s, "cnn")  # compile
    p.wait(p.j(0.002, 0.006))
    p.capture_run(m.decode_ops, m.op_s, "cnn", 3_145_728 + rng.randint(0, 1 << 20), inputs=1)
    p.replay_for(rng.randint(500, 800), 0.006, io="output", io_size=rng.choice([32 * KiB, 200_704, 401_408]))
    p.release_traces()
    p.close_device()
    return 1, "TT-CNN pipeline with two command queues: CQ1 writes inputs / reads outputs, CQ0 replays; " \
              "an output copy per iteration", [p.exit()]


def _dynamic_region(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(8)), rng, _llm(8, 12), 0.0, dram_trace=True, jitter=1.0 + 0.5 * (seed % 3))
    p.llm_prefill_and_decode(replays=rng.randint(250, 350), period_s=0.02, io=rng.choice(["none", "tiny"]))
    p.close_device(traces_inside=True)
    return 8, "trace_region_size = 0: the trace is a DRAM buffer allocated top-down; freed inside teardown", \
        [p.exit()]


def _eager_server(seed: int):
    rng = random.Random(seed)
    p = Program(0, (0, 1), rng, _llama(8, 2, ()), 0.0, jitter=1.0 + 0.5 * (seed % 3))
    m = p.model
    p.phase(Phase.LOADING)
    p.device_init()
    p.load_weights()
    p.phase(Phase.IDLE)
    p.wait(p.j(1.5, 3.0))
    for _request in range(rng.randint(3, 5)):
        p.phase(Phase.WARMUP)
        p.run(m.prefill_ops, m.prefill_op_s, "prefill")
        for _ in range(rng.randint(10, 30)):
            p.run(m.decode_ops, m.op_s, "decode")
            p.wait(p.j(0.002, 0.008))
        p.phase(Phase.IDLE)
        p.wait(p.j(1.5, 4.0))
    p.close_device()
    return 2, "an eager server that never traces: requests with idle gaps between them", [p.exit()]


def _diffusion_model() -> Model:
    enc = tuple((f"text_enc{i}", _L1 if i % 2 else _DRAM, 256 * KiB) for i in range(36))
    unet = tuple((f"unet{i}", _L1 if i % 3 else _DRAM, 512 * KiB + 64 * KiB * (i % 5)) for i in range(60))
    vae = tuple((f"vae{i}", _DRAM, 4 * MiB) for i in range(24))
    weights = tuple((f"w{i}", 24 * MiB) for i in range(40))
    return Model(weights, (), unet, enc + vae, (5_242_880,), op_s=0.3e-3, prefill_op_s=1.5e-3)


def _diffusion(seed: int):
    rng = random.Random(seed)
    p = Program(0, (0, 1), rng, _diffusion_model(), 0.0, dram_trace=bool(seed % 2), jitter=1.0 + 0.5 * (seed % 3))
    m = p.model
    enc, vae = m.prefill_ops[:36], m.prefill_ops[36:]
    p.phase(Phase.LOADING)
    p.device_init()
    p.load_weights()
    p.phase(Phase.WARMUP)
    p.run(enc, m.prefill_op_s, "text_enc")
    p.run(m.decode_ops, m.op_s, "unet")  # UNet compile
    p.wait(p.j(0.003, 0.008))
    p.capture_run(m.decode_ops, m.op_s, "unet", m.trace_sizes[0])
    for prompt in range(rng.randint(2, 3)):
        if prompt:
            p.phase(Phase.WARMUP)
            p.run(enc, m.prefill_op_s, "text_enc")
            p.wait(p.j(0.002, 0.01))
        p.replay_for(rng.randint(25, 50), 0.04, io="tiny", io_size=8 * KiB)  # scheduler step on host
        p.wait(p.j(0.002, 0.01))
        p.phase(Phase.WARMUP)  # VAE decode, untraced
        p.run(vae, m.prefill_op_s, "vae")
        p.wait(p.j(0.01, 0.03))
    p.release_traces()
    p.close_device()
    return 2, "diffusion with partial tracing: eager text encoder and VAE around traced UNet steps", [p.exit()]


def _disjoint_meshes(seed: int):
    rng = random.Random(seed)
    a = Program(0, (0, 1, 2, 3), random.Random(rng.random()), _llm(4, 10), 0.0, jitter=1.5)
    a.llm_prefill_and_decode(replays=rng.randint(200, 300), period_s=0.02, io="tiny")
    a.release_traces()
    a.close_device()
    b = Program(1, (4, 5, 6, 7), random.Random(rng.random()), _llm(4, 8), rng.uniform(0.5, 2.0), dram_trace=True,
                jitter=1.5)
    b.llm_prefill_and_decode(replays=rng.randint(200, 300), period_s=0.025, io="none")
    b.release_traces()
    b.close_device()
    return 8, "two traced processes on disjoint halves of a T3K, overlapping in time (one with a DRAM trace)", \
        [a.exit(), b.exit()]


def _galaxy32(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(32)), rng, _llm(32, 6), 0.0, jitter=1.0 + 0.5 * (seed % 2))
    p.llm_prefill_and_decode(replays=rng.randint(150, 250), period_s=0.03, io="tiny")
    p.release_traces()
    p.close_device()
    return 32, "tt_transformers decode on a Galaxy (32 devices)", [p.exit()]


def _killed(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(8)), rng, _llm(8, 10), 0.0, dram_trace=bool(seed % 2), jitter=1.0)
    # a read-back per token: a silent replay that is killed leaves nothing to date the death by
    p.llm_prefill_and_decode(replays=rng.randint(150, 300), period_s=0.02, io="tiny")
    return 8, "a traced process killed mid-replay (SIGKILL): the server notices at its next check", \
        [p.kill(rng.uniform(0.5, 5.0))]


def _attach(seed: int):
    rng = random.Random(seed)
    p = Program(0, tuple(range(8)), rng, _llm(8, 10), 0.0, dram_trace=bool(seed % 2), jitter=1.0)
    p.llm_prefill_and_decode(replays=400, period_s=0.02, io="tiny")
    p.release_traces()
    p.close_device()
    replay = next(lab for lab in p.script.labels if lab.phase is Phase.REPLAY)
    attach = replay.start_s + rng.uniform(1.0, 3.0)
    return 8, "a monitor attached mid-replay: it sees the resident buffers, then the rest", [p.exit()], attach


PROGRAMS: dict[str, Callable] = {
    "tt-transformers": _tt_transformers,
    "two-traces": _two_traces,
    "cnn-pipeline": _cnn_pipeline,
    "dynamic-region": _dynamic_region,
    "eager-server": _eager_server,
    "diffusion": _diffusion,
    "disjoint-meshes": _disjoint_meshes,
    "galaxy-32": _galaxy32,
    "killed": _killed,
    "attach-mid-replay": _attach,
}
SCENARIOS.update(PROGRAMS)
