"""Two-phase (prefill / decode) performance model under tensor and pipeline
parallelism (SPEC §2), vectorized with numpy.

Everything is a function of numpy arrays that broadcast against each other: the
candidate table evaluates all (query type, candidate) pairs at once with arrays of
shape (I, D); `predict` evaluates one case.

The model, per replica of `n` (TP) x `m` (PP) GPUs:

* Prefill of one request of `h` tokens: max(compute, weight read) where compute is
  `2·P_active·h` plus causal attention `2·layers·h²·(heads·head_dim)` FLOPs over
  `n` GPUs at an effective fraction of dense peak; plus two ring all-reduces per
  layer when `n > 1` (latency 2(n−1)·α plus bytes over link bandwidth); plus `m−1`
  activation hops (PP does not shorten one request's prefill). With `B` requests
  in flight a new request also waits behind other requests' prefills:
  TTFT(B) = overhead + prefill·(1 + κ·(B−1)). κ is a property of the engine's
  scheduler: 1 for static batching (a batch's prompts prefilled together), ~0.05–0.3
  for continuous batching.
* Decode step at batch `B`: per pipeline stage, max(memory, compute) where memory
  reads the stage's weights (MoE: the experts `B` tokens touch, at most all) and
  the KV cache of its micro-batch, over an effective fraction of peak bandwidth;
  two all-reduces per layer for TP; a token passes all `m` stages plus `m−1` hops;
  a per-step engine overhead `a + b·layers`; plus the prefill work of arriving
  requests that the scheduler interleaves with decode: γ·(B/f)·prefill (B requests
  generating f tokens each start B/f prefills per decode step).
* KV capacity: usable memory (a fraction of the GPU's, minus a runtime reserve)
  minus the weight shard, over the per-GPU KV bytes per token (KV heads shard over
  TP up to the number of KV heads; layers shard over PP). KV stays 16-bit unless
  the precision says otherwise.
* Throughput at concurrency `B` (Little's law): B / (TTFT(B) + f·TPOT(B)), times a
  pipeline efficiency 1 − bubble·(m−1)/m.

Constants live in an `EngineProfile`; the defaults are fitted on the measurements
in the project's shared data (see `bench/validate_perf.py`, which prints the fit
quality per data set).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.domain import GPU, Model, Precision

FloatArray = NDArray[np.float64]

GB = 1e9


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """Constants of the serving engine the fleet runs (fitted, not datasheet)."""

    name: str
    bw_efficiency: float  # achieved fraction of peak HBM bandwidth in decode
    compute_efficiency: float  # achieved fraction of dense peak in GEMMs
    step_overhead_s: float  # fixed per decode step (scheduler, sampling, launch)
    step_overhead_per_layer_s: float  # per layer per decode step (kernel launches)
    prefill_overhead_s: float  # fixed per prefill (tokenize, schedule, first sample)
    prefill_contention: float  # κ: prefills of other requests a new one waits behind, per request
    prefill_interference: float  # γ: share of arriving prefills that stall decode steps
    allreduce_latency_s: float  # α per ring step; an all-reduce over n GPUs takes 2(n−1)
    hop_latency_s: float  # per PP stage boundary
    link_efficiency: float = 0.7  # achieved fraction of link bandwidth
    memory_utilization: float = 0.90  # fraction of GPU memory the engine may use
    runtime_reserve_gb: float = 2.0  # activations, CUDA graphs, allocator slack per GPU
    pp_bubble: float = 0.10  # throughput lost per extra PP stage, as a fraction
    max_batch: int = 512  # engine's cap on concurrent sequences per replica


# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the H100 runs at concurrency <= 16 in shared/data/measured/silicon_h100_llama.csv
# (Llama-3.1-8B bf16 on TensorRT-LLM, Llama-3.1-70B fp8 on vLLM): a modern
# continuous-batching engine. The fit puts the whole per-step overhead on the
# per-layer term (~1.9 ms at 32 layers, ~4.7 ms at 80); prefill_overhead_s is
# inflated by TensorRT-LLM's TTFT, which carries one inter-completion interval
# (TPOT·osl/concurrency) that the model has no term for (see the script's output).
DEFAULT_PROFILE = EngineProfile(
    name="continuous-batching-2025",
    bw_efficiency=0.886,
    compute_efficiency=0.648,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=5.93e-05,
    prefill_overhead_s=0.0947,
    prefill_contention=0.0592,
    prefill_interference=0.729,
    allreduce_latency_s=5.06e-07,
    hop_latency_s=0.00005,  # not fitted (no PP measurements)
)

# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the Splitwise table (shared/data/measured/splitwise_perf_model.csv): an older
# engine with static batching (a batch's prompts are prefilled together: κ = 1) and
# decode measured without prefill interference (γ = 0); both fixed, not fitted. Its
# large per-token overhead (~10 ms of per-layer cost plus ring all-reduce latency
# that grows with TP: ~2 ms at TP2, ~15 ms at TP8 for 80 layers) is what the
# all-reduce term's 2(n−1)·α form expresses.
SPLITWISE_PROFILE = EngineProfile(
    name="splitwise-2023",
    bw_efficiency=0.790,
    compute_efficiency=0.563,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=0.000123,
    prefill_overhead_s=0.0191,
    prefill_contention=1.0,
    prefill_interference=0.0,
    allreduce_latency_s=6.69e-06,
    hop_latency_s=0.0001,  # not fitted (no PP measurements)
)

PROFILES = {p.name: p for p in (DEFAULT_PROFILE, SPLITWISE_PROFILE)}


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
    flops = np.array(
        [g.tflops.get(p.compute, 0.0) for g, p in zip(gpus, precisions, strict=True)]
    ) * 1e12
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


def _allreduce_s(hw: Hardware, msg_bytes: FloatArray, prof: EngineProfile) -> FloatArray:
    """One ring all-reduce of `msg_bytes` across the TP group (0 when tp = 1).

    Ring (alpha-beta) model: 2(n−1) steps (reduce-scatter then all-gather), each
    paying the per-step latency α = `allreduce_latency_s` and moving msg/n bytes, so
    t = 2(n−1)·α + 2(n−1)/n · msg / (link · efficiency). The latency part grows with
    n, which is what the Splitwise table shows (decode overhead per token rises from
    TP2 to TP8 although the weight shard shrinks)."""
    n = hw.tp
    t = 2.0 * (n - 1.0) * prof.allreduce_latency_s + 2.0 * (n - 1.0) / n * msg_bytes / (
        hw.tp_link * prof.link_efficiency
    )
    return np.where(n > 1.0, t, 0.0)


def prefill_s(hw: Hardware, h: ArrayLike, prof: EngineProfile) -> FloatArray:
    """Time to prefill one request of `h` prompt tokens, alone on the replica."""
    h = np.asarray(h, dtype=np.float64)
    flops = 2.0 * hw.active_params * h + 2.0 * hw.layers * h * h * hw.attn_dim
    t_compute = flops / (hw.tp * hw.flops * prof.compute_efficiency)
    t_memory = hw.weight_bytes / (hw.tp * hw.bandwidth * prof.bw_efficiency)
    act = h * hw.hidden * 2.0
    t_tp = 2.0 * hw.layers * _allreduce_s(hw, act, prof)
    t_pp = (hw.pp - 1.0) * (prof.hop_latency_s + act / (hw.pp_link * prof.link_efficiency))
    return np.maximum(t_compute, t_memory) + t_tp + t_pp


def ttft_s(hw: Hardware, h: ArrayLike, batch: ArrayLike, prof: EngineProfile) -> FloatArray:
    """Time to first token at concurrency `batch` (queueing behind other prefills)."""
    b = np.asarray(batch, dtype=np.float64)
    return prof.prefill_overhead_s + prefill_s(hw, h, prof) * (
        1.0 + prof.prefill_contention * (b - 1.0)
    )


def decode_step_s(
    hw: Hardware, h: ArrayLike, f: ArrayLike, batch: ArrayLike, prof: EngineProfile
) -> FloatArray:
    """One decode step for `batch` sequences (no prefill interference)."""
    h = np.asarray(h, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    n, m = hw.tp, hw.pp
    micro = np.maximum(b / m, 1.0)  # sequences per micro-batch in each stage
    ctx = h + 0.5 * f  # mean context over the generation
    weights_read = np.minimum(hw.weight_bytes, hw.active_bytes * micro) / (n * m)
    kv_read = micro * ctx * hw.kv_bytes_per_token / (hw.kv_shard * m)
    t_mem = (weights_read + kv_read) / (hw.bandwidth * prof.bw_efficiency)
    flops = micro * (2.0 * hw.active_params + 4.0 * hw.layers * ctx * hw.attn_dim)
    t_compute = flops / (n * m * hw.flops * prof.compute_efficiency)
    act = micro * hw.hidden * 2.0
    t_tp = 2.0 * hw.layers / m * _allreduce_s(hw, act, prof)
    stage = np.maximum(t_mem, t_compute) + t_tp
    hops = (m - 1.0) * (prof.hop_latency_s + act / (hw.pp_link * prof.link_efficiency))
    overhead = prof.step_overhead_s + prof.step_overhead_per_layer_s * hw.layers
    return m * stage + hops + overhead


def tpot_s(
    hw: Hardware, h: ArrayLike, f: ArrayLike, batch: ArrayLike, prof: EngineProfile
) -> FloatArray:
    """Time per output token at concurrency `batch`, including the prefills of
    arriving requests that the engine interleaves with decode steps."""
    f_arr = np.asarray(f, dtype=np.float64)
    b = np.asarray(batch, dtype=np.float64)
    interference = prof.prefill_interference * (b / np.maximum(f_arr, 1.0)) * prefill_s(hw, h, prof)
    # A lone request has no one else's prefill to wait for.
    interference = np.where(b > 1.0, interference * (b - 1.0) / b, 0.0)
    return decode_step_s(hw, h, f, b, prof) + interference


def kv_capacity_tokens(hw: Hardware, prof: EngineProfile) -> FloatArray:
    """Tokens of KV cache one replica holds (<= 0 when the weights do not fit)."""
    usable = hw.memory * prof.memory_utilization - prof.runtime_reserve_gb * GB
    free = usable - hw.weight_bytes / (hw.tp * hw.pp)
    per_token_per_gpu = hw.kv_bytes_per_token / (hw.kv_shard * hw.pp)
    return np.floor(free / per_token_per_gpu)


def throughput_rps(
    ttft: ArrayLike, tpot: ArrayLike, f: ArrayLike, batch: ArrayLike, hw: Hardware,
    prof: EngineProfile,
) -> FloatArray:
    """Requests/s one replica sustains at concurrency `batch` (Little's law)."""
    b = np.asarray(batch, dtype=np.float64)
    occupancy = np.asarray(ttft) + np.asarray(f) * np.asarray(tpot)
    eff = 1.0 - prof.pp_bubble * (hw.pp - 1.0) / hw.pp
    return np.where(b >= 1.0, b / np.maximum(occupancy, 1e-12) * eff, 0.0)


def max_slo_batch(
    hw: Hardware,
    h: ArrayLike,
    f: ArrayLike,
    ttft_slo: ArrayLike,
    tpot_slo: ArrayLike,
    e2e_slo: ArrayLike,
    prof: EngineProfile,
) -> NDArray[np.int64]:
    """B*: the largest concurrency (0 if none) at which TTFT, TPOT and e2e meet
    their SLOs and the KV cache holds B·(h+f) tokens. TTFT and TPOT rise with B,
    so an integer bisection over [0, cap] is exact; all pairs are searched at once."""
    h = np.asarray(h, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    kv_cap = kv_capacity_tokens(hw, prof)
    cap = np.clip(np.floor(kv_cap / (h + f)), 0, prof.max_batch)
    shape = np.broadcast_shapes(cap.shape, np.shape(ttft_slo), np.shape(tpot_slo))
    lo = np.zeros(shape)  # always satisfies (B = 0 means infeasible)
    hi = np.broadcast_to(cap, shape).copy()

    def ok(b: FloatArray) -> NDArray[np.bool_]:
        t1 = ttft_s(hw, h, b, prof)
        t2 = tpot_s(hw, h, f, b, prof)
        return (t1 <= ttft_slo) & (t2 <= tpot_slo) & (t1 + f * t2 <= e2e_slo)

    while True:
        active = hi > lo
        if not active.any():
            break
        mid = np.where(active, np.ceil((lo + hi) / 2.0), lo)
        good = ok(np.maximum(mid, 1.0)) & active
        lo = np.where(good, mid, lo)
        hi = np.where(active & ~good, mid - 1.0, hi)
    return lo.astype(np.int64)


def predict(
    model: Model,
    gpu: GPU,
    precision: Precision,
    tp: int,
    pp: int,
    input_tokens: float,
    output_tokens: float,
    concurrency: int,
    profile: EngineProfile = DEFAULT_PROFILE,
) -> dict[str, Any]:
    """Predicted TTFT/TPOT for one (architecture, GPU, precision, TP, PP, request
    shape, concurrency). This is the function the service publishes.

    Returns ttft_s, tpot_s, e2e_s, throughput_rps, max_concurrency (what the KV
    cache holds for this request shape) and fits (weights fit in memory); raises
    ValueError for impossible cases (precision unsupported on the GPU, TP larger
    than a node)."""
    if not precision.supported_on(gpu):
        raise ValueError(f"precision {precision.id!r} is not supported on {gpu.id!r}")
    if tp > gpu.gpus_per_node:
        raise ValueError(f"tp={tp} exceeds gpus_per_node={gpu.gpus_per_node} of {gpu.id!r}")
    if tp < 1 or pp < 1 or concurrency < 1 or input_tokens <= 0 or output_tokens <= 0:
        raise ValueError("tp, pp, concurrency must be >= 1 and token counts > 0")
    hw = hardware_arrays([model], [gpu], [precision], [tp], [pp])
    cap = kv_capacity_tokens(hw, profile)[0]
    max_conc = int(max(0.0, np.floor(cap / (input_tokens + output_tokens))))
    t1 = float(ttft_s(hw, input_tokens, concurrency, profile)[0])
    t2 = float(tpot_s(hw, input_tokens, output_tokens, concurrency, profile)[0])
    thr = float(throughput_rps(t1, t2, output_tokens, concurrency, hw, profile)[0])
    return {
        "ttft_s": t1,
        "tpot_s": t2,
        "e2e_s": t1 + output_tokens * t2,
        "throughput_rps": thr,
        "max_concurrency": max_conc,
        "fits": bool(cap > 0),
        "profile": profile.name,
    }


def with_overrides(profile: EngineProfile, **kw: float) -> EngineProfile:
    """A copy of a profile with some constants replaced (used by calibration)."""
    return replace(profile, **kw)
