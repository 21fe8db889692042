"""Two-phase (prefill / decode) performance model under tensor and pipeline
parallelism (SPEC §2): the equations, vectorized with numpy.

Everything is a function of numpy arrays that broadcast against each other: the
candidate table evaluates all (query type, candidate) pairs at once with arrays of
shape (I, D); `app.engine.perf.predict` evaluates one case.

The model, per replica of `n` (TP) x `m` (PP) GPUs:

* Prefill of one request of `h` tokens: max(compute, weight read) where compute is
  `2·P_active·h` plus causal attention `2·layers·h²·(heads·head_dim)` FLOPs over
  `n` GPUs at an effective fraction of dense peak; plus two ring all-reduces per
  layer when `n > 1` (latency 2(n−1)·α plus bytes over link bandwidth); plus `m−1`
  activation hops (PP does not shorten one request's prefill). With `B` requests
  in flight a new request also waits behind other requests' prefills, and, in an
  engine that admits a newcomer only when a running request completes, for the
  next completion (one every f/B decode steps at concurrency B), capped at S =
  `admission_wait_max_steps` decode steps:
  TTFT(B) = overhead + prefill·(1 + κ·(B−1)) + ω·TPOT(B)·min(f/B, S) (the last
  term for B > 1 only, and only when the output length f is known:
  `ttft_s(..., f=f)`). κ and ω are properties of the engine's scheduler: κ = 1 for
  static batching (a batch's prompts prefilled together), ~0.03–0.06 for
  continuous batching; ω = 0 for vLLM, ≈ 1 for TensorRT-LLM (measured, with
  f/B <= 64: the cap keeps the term from growing with the output length beyond
  what was measured).
* Decode step at batch `B`: per pipeline stage, max(memory, compute) where memory
  reads the stage's weights (MoE: the experts `B` tokens touch, at most all) and
  the KV cache of its micro-batch, over an effective fraction of peak bandwidth;
  two all-reduces per layer for TP; a token passes all `m` stages plus `m−1` hops;
  a per-step engine overhead `a + b·layers + c·B` (c: per running sequence:
  sampling, scheduling); plus the prefill work of arriving
  requests that the scheduler interleaves with decode: γ·(B/f)·prefill (B requests
  generating f tokens each start B/f prefills per decode step).
* KV capacity: usable memory (a fraction of the GPU's, minus a runtime reserve)
  minus the weight shard, over the per-GPU KV bytes per token (KV heads shard over
  TP up to the number of KV heads; layers shard over PP). KV stays 16-bit unless
  the precision says otherwise.
* Throughput at concurrency `B` (Little's law): B / (TTFT(B) + f·TPOT(B)), times a
  pipeline efficiency 1 − bubble·(m−1)/m.

Constants live in an `EngineProfile` (`app.engine.perf.profiles`), one per engine.
B* (the largest concurrency within the SLOs) is `app.engine.perf.slo_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.model.domain import GPU, Model, Precision
from app.engine.perf.profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    SPLITWISE_PROFILE,
    TRTLLM_PROFILE,
    EngineProfile,
    with_overrides,
)

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "SPLITWISE_PROFILE",
    "TRTLLM_PROFILE",
    "EngineProfile",
    "FloatArray",
    "Hardware",
    "decode_step_s",
    "hardware_arrays",
    "kv_capacity_tokens",
    "prefill_s",
    "throughput_rps",
    "tpot_s",
    "ttft_s",
    "with_overrides",
]

FloatArray = NDArray[np.float64]

GB = 1e9


@dataclass(frozen=True, slots=True)
class Hardware:
    """Per-candidate constants as arrays (all the same shape, usually (D,)).

    Build with `hardware_arrays`; every field is a float64 array."""

    active_bytes: FloatArray  # bytes of weights one token touches (dense: all)
    weight_bytes: FloatArray  # all weights, bytes
    active_params: FloatArray  # parameters used per token
    layers: FloatArray
    hidden: FloatArray
    attn_dim: FloatArray  # heads · head_dim
    kv_bytes_per_token: FloatArray  # all layers, K and V, whole model
    kv_shard: FloatArray  # how many ways the KV of one layer is split across TP
    tp: FloatArray
    pp: FloatArray
    flops: FloatArray  # dense peak FLOP/s per GPU at the precision's compute type
    bandwidth: FloatArray  # peak HBM bytes/s per GPU
    tp_link: FloatArray  # bytes/s per GPU for TP collectives
    pp_link: FloatArray  # bytes/s for PP activation hops
    memory: FloatArray  # bytes per GPU


def hardware_arrays(
    models: list[Model],
    gpus: list[GPU],
    precisions: list[Precision],
    tp: ArrayLike,
    pp: ArrayLike,
) -> Hardware:
    """Arrays for a list of candidates given element-wise (model, gpu, precision, tp, pp)."""
    tp_a = np.asarray(tp, dtype=np.float64)
    pp_a = np.asarray(pp, dtype=np.float64)
    bpw = np.array([p.bytes_per_weight for p in precisions])
    params = np.array([mo.params_b for mo in models]) * GB
    active = np.array([mo.active_params_b for mo in models]) * GB
    kv_heads = np.array([mo.kv_heads for mo in models], dtype=np.float64)
    kvb = np.array(
        [mo.kv_bytes_per_token(p.kv_bytes) for mo, p in zip(models, precisions, strict=True)]
    )
    flops = (
        np.array([g.tflops.get(p.compute, 0.0) for g, p in zip(gpus, precisions, strict=True)])
        * 1e12
    )
    per_node = np.array([g.gpus_per_node for g in gpus], dtype=np.float64)
    intra = np.array([g.intra_node_gbps for g in gpus]) * GB
    inter = np.array([g.inter_node_gbps for g in gpus]) * GB
    return Hardware(
        active_bytes=active * bpw,
        weight_bytes=params * bpw,
        active_params=active,
        layers=np.array([mo.layers for mo in models], dtype=np.float64),
        hidden=np.array([mo.hidden for mo in models], dtype=np.float64),
        attn_dim=np.array([mo.heads * mo.head_dim for mo in models], dtype=np.float64),
        kv_bytes_per_token=kvb,
        kv_shard=np.minimum(tp_a, kv_heads),
        tp=tp_a,
        pp=pp_a,
        flops=flops,
        bandwidth=np.array([g.memory_bandwidth_gbps for g in gpus]) * GB,
        tp_link=intra,
        # PP stages stay inside a node while the whole replica fits in one.
        pp_link=np.where(tp_a * pp_a <= per_node, intra, inter),
        memory=np.array([g.memory_gb for g in gpus]) * GB,
    )


def _allreduce_coeffs(hw: Hardware, prof: EngineProfile) -> tuple[FloatArray, FloatArray]:
    """One ring all-reduce across the TP group as (latency s, s per byte); both 0
    when tp = 1, so an all-reduce of `msg` bytes takes lat + per_byte·msg.

    Ring (alpha-beta) model: 2(n−1) steps (reduce-scatter then all-gather), each
    paying the per-step latency α = `allreduce_latency_s` and moving msg/n bytes, so
    t = 2(n−1)·α + 2(n−1)/n · msg / (link · efficiency). The latency part grows with
    n, which is what the Splitwise table shows (decode overhead per token rises from
    TP2 to TP8 although the weight shard shrinks)."""
    n = hw.tp
    on = n > 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        lat = np.where(on, 2.0 * (n - 1.0) * prof.allreduce_latency_s, 0.0)
        per_byte = np.where(on, 2.0 * (n - 1.0) / n / (hw.tp_link * prof.link_efficiency), 0.0)
    return lat, per_byte


def prefill_s(hw: Hardware, h: ArrayLike, prof: EngineProfile) -> FloatArray:
    """Time to prefill one request of `h` prompt tokens, alone on the replica."""
    tokens: FloatArray = np.asarray(h, dtype=np.float64)
    # Per-candidate coefficients first (shape of hw), then one pass over the (h, hw)
    # broadcast: compute = h·(lin + quad·h), communication = lat + per_token·h.
    rate = hw.tp * hw.flops * prof.compute_efficiency
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = 2.0 * hw.active_params / rate  # GEMMs, s per prompt token
        quad = 2.0 * hw.layers * hw.attn_dim / rate  # causal attention, s per token²
    t_memory = hw.weight_bytes / (hw.tp * hw.bandwidth * prof.bw_efficiency)
    ar_lat, ar_per_byte = _allreduce_coeffs(hw, prof)
    act_per_token = hw.hidden * 2.0  # 16-bit activations
    lat = 2.0 * hw.layers * ar_lat + (hw.pp - 1.0) * prof.hop_latency_s
    per_token = act_per_token * (
        2.0 * hw.layers * ar_per_byte + (hw.pp - 1.0) / (hw.pp_link * prof.link_efficiency)
    )
    t = quad * tokens
    t += lin
    t *= tokens
    np.maximum(t, t_memory, out=t)
    comm = per_token * tokens
    comm += lat
    t += comm
    return t


@dataclass(frozen=True, slots=True)
class _Decode:
    """The parts of one decode step that do not depend on the batch (see
    `decode_step_s`); arrays broadcast against each other and against a batch array.
    Times are per micro-batch sequence unless said otherwise."""

    m: FloatArray  # PP stages
    w_all: FloatArray  # s to read a stage's whole weight shard
    w_seq: FloatArray | None  # s of expert weights one sequence touches (None: all dense)
    kv: FloatArray  # s to read one sequence's KV cache in a stage
    comp: FloatArray  # s of compute for one sequence in a stage
    fixed: FloatArray  # s per step: overhead, all-reduce latency, hop latency
    per_seq: FloatArray  # s of all-reduce and hop transfer, per micro-batch sequence

    def take(self, mask: NDArray[np.bool_]) -> _Decode:
        """The coefficients of the elements `mask` (of the full broadcast shape) selects."""
        shape = mask.shape

        def t(x: FloatArray) -> FloatArray:
            return np.broadcast_to(x, shape)[mask]

        return _Decode(
            m=t(self.m),
            w_all=t(self.w_all),
            w_seq=None if self.w_seq is None else t(self.w_seq),
            kv=t(self.kv),
            comp=t(self.comp),
            fixed=t(self.fixed),
            per_seq=t(self.per_seq),
        )


def _decode_coeffs(hw: Hardware, h: ArrayLike, f: ArrayLike, prof: EngineProfile) -> _Decode:
    """What a decode step needs that does not depend on the batch (see `_Decode`)."""
    h = np.asarray(h, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    n, m = hw.tp, hw.pp
    bw = hw.bandwidth * prof.bw_efficiency
    nm = n * m
    ctx = h + 0.5 * f  # mean context over the generation
    rate = nm * hw.flops * prof.compute_efficiency
    with np.errstate(divide="ignore", invalid="ignore"):
        comp_w = 2.0 * hw.active_params / rate
        comp_ctx = 4.0 * hw.layers * hw.attn_dim / rate
    moe = hw.active_bytes < hw.weight_bytes
    ar_lat, ar_per_byte = _allreduce_coeffs(hw, prof)
    act = hw.hidden * 2.0  # bytes of one sequence's activations
    return _Decode(
        m=m,
        w_all=hw.weight_bytes / (nm * bw),
        w_seq=hw.active_bytes / (nm * bw) if moe.any() else None,
        kv=ctx * (hw.kv_bytes_per_token / (hw.kv_shard * m * bw)),
        comp=comp_ctx * ctx + comp_w,
        fixed=(
            prof.step_overhead_s
            + prof.step_overhead_per_layer_s * hw.layers
            + 2.0 * hw.layers * ar_lat
            + (m - 1.0) * prof.hop_latency_s
        ),
        # per micro-batch sequence: its activations' all-reduce and hop transfers, and
        # the engine's per-sequence bookkeeping of a step (sampling, scheduling),
        # which the whole batch (m micro-batches) pays once per token
        per_seq=act
        * (2.0 * hw.layers * ar_per_byte + (m - 1.0) / (hw.pp_link * prof.link_efficiency))
        + prof.step_overhead_per_seq_s * m,
    )


def _decode_from(c: _Decode, b: FloatArray) -> FloatArray:
    """One decode step at batch `b` from precomputed coefficients."""
    micro = np.maximum(b / c.m, 1.0)  # sequences per micro-batch in each stage
    t = micro * c.kv
    if c.w_seq is None:
        t += c.w_all
    else:  # MoE: the experts the micro-batch touches, at most all
        t += np.minimum(c.w_all, c.w_seq * micro)
    np.maximum(t, micro * c.comp, out=t)
    t *= c.m  # a token passes all m stages
    t += c.fixed
    t += micro * c.per_seq
    return t


def _tpot_from_prefill(
    c: _Decode, p: FloatArray, f: FloatArray, b: FloatArray, prof: EngineProfile
) -> FloatArray:
    """TPOT at batch `b` given the prefill time `p` (γ·(B/f)·p·(B−1)/B of interleaved
    prefills, i.e. γ·p·(B−1)/f; nothing for a lone request)."""
    t = _decode_from(c, b)
    if prof.prefill_interference:
        t += prof.prefill_interference * p / np.maximum(f, 1.0) * np.maximum(b - 1.0, 0.0)
    return t


def _ttft_from_prefill(
    p: FloatArray,
    b: FloatArray,
    prof: EngineProfile,
    f: FloatArray | None = None,
    tpot: FloatArray | None = None,
) -> FloatArray:
    """TTFT at batch `b` given the prefill time `p` and, for an engine with an
    admission wait (ω > 0), the output length `f` and TPOT at `b`: the wait is
    ω·TPOT·min(f/B, S) for B > 1, S = `admission_wait_max_steps`."""
    t = prof.prefill_overhead_s + p * (1.0 + prof.prefill_contention * (b - 1.0))
    if prof.admission_wait and f is not None and tpot is not None:
        steps = np.minimum(f / np.maximum(b, 1.0), prof.admission_wait_max_steps)
        t = t + np.where(b > 1.0, prof.admission_wait * tpot * steps, 0.0)
    return t


def ttft_s(
    hw: Hardware,
    h: ArrayLike,
    batch: ArrayLike,
    prof: EngineProfile,
    *,
    f: ArrayLike | None = None,
) -> FloatArray:
    """Time to first token at concurrency `batch`: queueing behind other prefills,
    plus, when the engine has an admission wait (ω > 0) and the output length `f`
    is given, ω·TPOT(B)·min(f/B, S) for B > 1 (TPOT computed here)."""
    b = np.asarray(batch, dtype=np.float64)
    p = prefill_s(hw, h, prof)
    if f is None or not prof.admission_wait:
        return _ttft_from_prefill(p, b, prof)
    f = np.asarray(f, dtype=np.float64)
    t2 = _tpot_from_prefill(_decode_coeffs(hw, h, f, prof), p, f, b, prof)
    return _ttft_from_prefill(p, b, prof, f, t2)


def decode_step_s(
    hw: Hardware, h: ArrayLike, f: ArrayLike, batch: ArrayLike, prof: EngineProfile
) -> FloatArray:
    """One decode step for `batch` sequences (no prefill interference)."""
    return _decode_from(_decode_coeffs(hw, h, f, prof), np.asarray(batch, dtype=np.float64))


def tpot_s(
    hw: Hardware, h: ArrayLike, f: ArrayLike, batch: ArrayLike, prof: EngineProfile
) -> FloatArray:
    """Time per output token at concurrency `batch`, including the prefills of
    arriving requests that the engine interleaves with decode steps."""
    f_arr = np.asarray(f, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    return _tpot_from_prefill(
        _decode_coeffs(hw, h, f_arr, prof), prefill_s(hw, h, prof), f_arr, b, prof
    )


def kv_capacity_tokens(hw: Hardware, prof: EngineProfile) -> FloatArray:
    """Tokens of KV cache one replica holds (<= 0 when the weights do not fit)."""
    usable = hw.memory * prof.memory_utilization - prof.runtime_reserve_gb * GB
    free = usable - hw.weight_bytes / (hw.tp * hw.pp)
    per_token_per_gpu = hw.kv_bytes_per_token / (hw.kv_shard * hw.pp)
    return np.floor(free / per_token_per_gpu)


def throughput_rps(
    ttft: ArrayLike,
    tpot: ArrayLike,
    f: ArrayLike,
    batch: ArrayLike,
    hw: Hardware,
    prof: EngineProfile,
) -> FloatArray:
    """Requests/s one replica sustains at concurrency `batch` (Little's law)."""
    b = np.asarray(batch, dtype=np.float64)
    occupancy = np.asarray(ttft) + np.asarray(f) * np.asarray(tpot)
    eff = 1.0 - prof.pp_bubble * (hw.pp - 1.0) / hw.pp
    return np.where(b >= 1.0, b / np.maximum(occupancy, 1e-12) * eff, 0.0)
