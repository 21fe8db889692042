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
  in flight a new request also waits behind other requests' prefills, and, in an
  engine that admits a newcomer only when a running request completes, for the
  next completion (one every f·TPOT(B)/B seconds at concurrency B):
  TTFT(B) = overhead + prefill·(1 + κ·(B−1)) + ω·f·TPOT(B)/B (the last term for
  B > 1 only, and only when the output length f is known: `ttft_s(..., f=f)`).
  κ and ω are properties of the engine's scheduler: κ = 1 for static batching (a
  batch's prompts prefilled together), ~0.03–0.06 for continuous batching; ω = 0
  for vLLM, ≈ 1 for TensorRT-LLM (measured).
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

Constants live in an `EngineProfile`, one per engine, fitted on the measurements in
the project's shared data: DEFAULT_PROFILE (vLLM, the planning default),
TRTLLM_PROFILE (TensorRT-LLM) and SPLITWISE_PROFILE (the Splitwise paper's older
engine), registered by name in PROFILES. `python3 bench/validate_perf.py` prints
the fit quality per data set and engine; `--fit` re-fits them.

`max_slo_batch` (B* for every pair of the candidate table) computes everything that
does not depend on B once, solves the affine constraints for B directly and checks
the answer with the same expressions `ttft_s` and `tpot_s` evaluate (see there).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.model.domain import GPU, Model, Precision

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
    admission_wait: float = 0.0  # ω: inter-completion intervals a new request waits (TTFT)
    link_efficiency: float = 0.7  # achieved fraction of link bandwidth
    memory_utilization: float = 0.90  # fraction of GPU memory the engine may use
    runtime_reserve_gb: float = 2.0  # activations, CUDA graphs, allocator slack per GPU
    pp_bubble: float = 0.10  # throughput lost per extra PP stage, as a fraction
    max_batch: int = 512  # engine's cap on concurrent sequences per replica


# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the vLLM rows at concurrency <= 16 of shared/data/measured/silicon_h100_llama.csv
# (Llama-3.1-70B fp8, H100-SXM, TP 2/4/8; 27 points): vLLM's continuous batching,
# the planning default (the most common open engine). No admission wait (ω = 0: its
# TTFT shows none). It ran one model, so the per-step overhead cannot be split into
# fixed and per-layer parts: fixed at 0 and per layer (~5.2 ms at 80 layers, ~2.1 ms
# at 32). γ sits at its bound 1: an arriving prompt's prefill stalls decode whole.
DEFAULT_PROFILE = EngineProfile(
    name="vllm-2025",
    bw_efficiency=0.905,
    compute_efficiency=0.546,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=6.52e-05,
    prefill_overhead_s=0.0321,
    prefill_contention=0.0586,
    prefill_interference=1.0,
    allreduce_latency_s=3.52e-07,
    hop_latency_s=0.00005,  # not fitted (no PP measurements)
)

# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the TensorRT-LLM rows at concurrency <= 16 of the same file (Llama-3.1-8B bf16,
# H100-SXM, TP 1/2/4/8; 72 points). Its measured TTFT carries about one
# inter-completion interval (ω ≈ 1: in the closed-loop benchmark a slot frees every
# f·TPOT/B seconds and the newcomer waits for it). Overhead per layer as above
# (~2.0 ms at 32 layers). bw_efficiency and γ sit at their upper bounds (1).
TRTLLM_PROFILE = EngineProfile(
    name="trtllm-2025",
    bw_efficiency=1.0,
    compute_efficiency=0.712,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=6.14e-05,
    prefill_overhead_s=0.0376,
    prefill_contention=0.0345,
    prefill_interference=1.0,
    allreduce_latency_s=2.25e-07,
    hop_latency_s=0.00005,  # not fitted (no PP measurements)
    admission_wait=1.01,
)

# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the Splitwise table (shared/data/measured/splitwise_perf_model.csv): an older
# engine with static batching (a batch's prompts are prefilled together: κ = 1) and
# decode measured without prefill interference (γ = 0), no admission wait (ω = 0);
# all three fixed, not fitted. Its
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

PROFILES = {p.name: p for p in (DEFAULT_PROFILE, TRTLLM_PROFILE, SPLITWISE_PROFILE)}


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
    h = np.asarray(h, dtype=np.float64)
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
    t = quad * h
    t += lin
    t *= h
    np.maximum(t, t_memory, out=t)
    comm = per_token * h
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
        per_seq=act
        * (2.0 * hw.layers * ar_per_byte + (m - 1.0) / (hw.pp_link * prof.link_efficiency)),
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
    admission wait (ω > 0), the output length `f` and TPOT at `b`."""
    t = prof.prefill_overhead_s + p * (1.0 + prof.prefill_contention * (b - 1.0))
    if prof.admission_wait and f is not None and tpot is not None:
        wait = prof.admission_wait * f * tpot / np.maximum(b, 1.0)
        t = t + np.where(b > 1.0, wait, 0.0)
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
    is given, ω·f·TPOT(B)/B for B > 1 (TPOT computed here)."""
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
    their SLOs and the KV cache holds B·(h+f) tokens; all pairs at once.

    Equal to trying every B with `ttft_s(..., f=f)`/`tpot_s` (tests check this
    against brute force). Prefill does not depend on B and is computed once, with
    the B-independent parts of a decode step.

    * ω = 0 (no admission wait): TTFT is affine in B and, for a dense model, TPOT is
      the maximum of a few affine pieces (memory- or compute-bound, micro-batch 1 or
      B/m), so e2e = TTFT + f·TPOT is too: the bound is solved for piece by piece,
      then checked with the very expressions `ttft_s`/`tpot_s` evaluate, at B* and
      B*+1. Where the check fails (rounding; MoE, whose expert reads are not of
      that form) an integer bisection settles it inside the bracket the check left —
      valid because every constraint rises with B.
    * ω > 0: TTFT(B) = … + ω·f·TPOT(B)/B falls before it rises, so B* is not the end
      of a feasible prefix: B = 2 can miss a TTFT SLO that B = 16 meets. TTFT and
      e2e are quasi-convex in B >= 2 and TPOT rises, so the feasible B >= 2 form an
      interval and B* is its right end (B = 1, without a wait, is checked apart):
      solved as quadratics per piece for dense models and checked as above; MoE
      and near-ties by bisection (for the TPOT bound, then the minimum of
      max(TTFT − SLO, e2e − SLO), then the last feasible B after it)."""
    h = np.asarray(h, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    p = prefill_s(hw, h, prof)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.clip(np.floor(kv_capacity_tokens(hw, prof) / (h + f)), 0, prof.max_batch)
    shape = np.broadcast_shapes(
        cap.shape, p.shape, np.shape(ttft_slo), np.shape(tpot_slo), np.shape(e2e_slo)
    )
    pairs = _Pairs(
        _decode_coeffs(hw, h, f, prof),
        p,
        f,
        np.asarray(ttft_slo, dtype=np.float64),
        np.asarray(tpot_slo, dtype=np.float64),
        np.asarray(e2e_slo, dtype=np.float64),
        prof,
        shape,
    )
    cap = np.broadcast_to(cap, shape)
    if prof.admission_wait:
        return _max_batch_wait(pairs, cap).astype(np.int64)

    return _settle(pairs, "ok", pairs.affine_bound(cap), cap).astype(np.int64)


def _settle(pairs: _Pairs, pred: str, est: FloatArray, cap: FloatArray) -> FloatArray:
    """The largest b in [0, cap] with `pred` (a method of `pairs`, true then false in
    b; b = 0 counts as true), given the estimate `est`: checked at est and est+1;
    where the check fails, an integer bisection inside the bracket it leaves."""
    ok = getattr(pairs, pred)
    good = (est < 1.0) | ok(np.maximum(est, 1.0))
    done = good & ((est >= cap) | ~ok(np.minimum(est + 1.0, cap)))
    if done.all():
        return est
    todo = ~done
    lo = np.where(good, est, 0.0)[todo]
    hi = np.where(good, cap, est - 1.0)[todo]
    est = est.copy()
    est[todo] = _last_true(getattr(pairs.take(todo), pred), lo, hi)
    return est


def _max_batch_wait(pairs: _Pairs, cap: FloatArray) -> FloatArray:
    """max_slo_batch with an admission wait (ω > 0); see there. The TPOT bound and,
    for dense models, the real interval [lo, hi] of B meeting TTFT and e2e are
    solved for (quadratics in B, piece by piece). R = floor(hi) is accepted where R
    meets the SLOs and R+1 does not; an empty interval where no integer lies within
    1e-6 of it (dense only: the solution is exact up to rounding). The rest (MoE,
    near-ties, failed checks) is searched by bisection."""
    bp = _settle(pairs, "ok_tpot", pairs.affine_bound(cap, tpot_only=True), cap)
    res = np.where((cap >= 1.0) & pairs.ok(np.ones(pairs.shape)), 1.0, 0.0)
    two = bp >= 2.0
    if not two.any():
        return res
    lo_r, hi_r = pairs.wait_interval()
    np.fmax(lo_r, 2.0, out=lo_r)
    np.fmin(hi_r, bp, out=hi_r)
    tol = 1e-6
    with np.errstate(invalid="ignore"):
        right = np.floor(hi_r)
        claim = two & (np.ceil(lo_r) <= right)
        empty = two & (np.ceil(lo_r - tol) > np.floor(hi_r + tol)) & ~pairs.moe()
    b = np.where(claim, right, 2.0)
    accept = claim & pairs.ok(b) & ((b >= bp) | ~pairs.ok(np.minimum(b + 1.0, bp)))
    res = np.where(accept, right, res)
    todo = two & ~accept & ~empty
    if todo.any():
        sub = pairs.take(todo)
        hi = bp[todo]
        lo = np.full(hi.shape, 2.0)
        # the first B in [2, bp] from which the excess stops falling: its minimum
        bmin = _first_true(
            lambda b: (b >= hi) | (sub.excess(np.minimum(b + 1.0, hi)) >= sub.excess(b)), lo, hi
        )
        right = _last_true(lambda b: sub.excess(b) <= 0.0, bmin, hi)
        res[todo] = np.where(sub.excess(bmin) <= 0.0, right, res[todo])
    return res


def _quadratic_interval(
    qa: FloatArray, qb: FloatArray, qc: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Where qa·b² + qb·b + qc <= 0 (qa >= 0): an interval [lo, hi] (±inf for open
    ends; lo > hi when empty; no real root: [vertex + 1, vertex], empty)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        disc = qb * qb
        disc -= 4.0 * qa * qc
        real = disc >= 0.0
        sq = np.sqrt(np.maximum(disc, 0.0))
        q = np.copysign(sq, qb)
        q += qb
        q *= -0.5  # stable: no cancellation
        r1 = q / qa
        r2 = qc / q
        lo, hi = np.minimum(r1, r2), np.maximum(r1, r2)
        if not real.all():
            vertex = -qb / (2.0 * qa)
            lo = np.where(real, lo, vertex + 1.0)
            hi = np.where(real, hi, vertex)
        flat = qa <= 0.0
        if flat.any():  # linear: qb·b + qc <= 0
            root = -qc / qb
            lin_lo = np.where(qb < 0.0, root, np.where((qb == 0.0) & (qc <= 0.0), -np.inf, np.inf))
            lin_hi = np.where(qb > 0.0, root, np.where((qb == 0.0) & (qc > 0.0), -np.inf, np.inf))
            lo = np.where(flat, lin_lo, lo)
            hi = np.where(flat, lin_hi, hi)
    return lo, hi


class _Pairs:
    """The pairs a search runs on (arrays broadcasting to `shape`, or 1-D after
    `take`), with everything that does not depend on B precomputed, and the
    predicates of B the searches use."""

    __slots__ = ("dec", "f", "p", "prof", "s1", "s2", "s3", "shape")

    def __init__(
        self,
        dec: _Decode,
        p: FloatArray,
        f: FloatArray,
        s1: FloatArray,
        s2: FloatArray,
        s3: FloatArray,
        prof: EngineProfile,
        shape: tuple[int, ...],
    ) -> None:
        self.dec, self.p, self.f, self.prof, self.shape = dec, p, f, prof, shape
        self.s1, self.s2, self.s3 = s1, s2, s3

    def take(self, mask: NDArray[np.bool_]) -> _Pairs:
        """The pairs `mask` (of shape `shape`) selects, as 1-D arrays."""

        def t(x: FloatArray) -> FloatArray:
            return np.broadcast_to(x, mask.shape)[mask]

        return _Pairs(
            self.dec.take(mask),
            t(self.p),
            t(self.f),
            t(self.s1),
            t(self.s2),
            t(self.s3),
            self.prof,
            (int(mask.sum()),),
        )

    def times(self, b: FloatArray) -> tuple[FloatArray, FloatArray]:
        t2 = _tpot_from_prefill(self.dec, self.p, self.f, b, self.prof)
        return _ttft_from_prefill(self.p, b, self.prof, self.f, t2), t2

    def ok(self, b: FloatArray) -> NDArray[np.bool_]:
        t1, t2 = self.times(b)
        ok = t1 <= self.s1
        ok &= t2 <= self.s2
        t2 *= self.f
        t2 += t1
        ok &= t2 <= self.s3
        return ok

    def ok_tpot(self, b: FloatArray) -> NDArray[np.bool_]:
        return _tpot_from_prefill(self.dec, self.p, self.f, b, self.prof) <= self.s2

    def excess(self, b: FloatArray) -> FloatArray:
        """max(TTFT − SLO, e2e − SLO) at b: <= 0 where both hold."""
        t1, t2 = self.times(b)
        return np.maximum(t1 - self.s1, t1 + self.f * t2 - self.s3)

    def moe(self) -> NDArray[np.bool_]:
        """Pairs whose decode reads only the experts it touches (not of affine form)."""
        d = self.dec
        if d.w_seq is None:
            return np.zeros(self.shape, dtype=bool)
        return np.broadcast_to(d.w_seq < d.w_all, self.shape)

    def tpot_pieces(self) -> list[tuple[FloatArray, FloatArray]]:
        """TPOT(B) for B >= 1 of a dense model as the maximum of affine pieces
        a + s·B: micro-batch B/m memory- or compute-bound, and micro-batch 1 (B <= m;
        dominated when m = 1), where only the interference grows."""
        d, prof = self.dec, self.prof
        g = (prof.prefill_interference / np.maximum(self.f, 1.0)) * self.p  # per extra seq
        per = d.per_seq / d.m
        base = d.fixed - g
        pieces = [(d.m * d.w_all + base, d.kv + per + g), (base, d.comp + per + g)]
        if np.any(d.m > 1.0):
            one = d.m * np.maximum(d.w_all + d.kv, d.comp)
            one += d.fixed + d.per_seq - g
            pieces.append((one, g))
        return pieces

    def affine_bound(self, cap: FloatArray, tpot_only: bool = False) -> FloatArray:
        """ω = 0 (or TPOT alone): the largest B in [0, cap] meeting the SLOs, solved
        on the affine pieces a + s·B of TTFT(B) and (dense) TPOT(B) for B >= 1: the
        smallest (SLO − a)/s, floored (an estimate to check: rounding, and MoE)."""
        p, f, prof = self.p, self.f, self.prof
        kp = prof.prefill_contention * p
        t1a = prof.prefill_overhead_s + p - kp  # TTFT(B) = t1a + kp·B
        e2e_room = self.s3 - t1a
        with_e2e = not tpot_only and bool(np.isfinite(self.s3).any())
        # x/0 is ±inf (and 0/0 NaN, which fmin skips): a flat piece bounds nothing
        # or everything, as it should.
        with np.errstate(divide="ignore", invalid="ignore"):
            est = np.broadcast_to(cap, self.shape).astype(np.float64)
            if not tpot_only:
                np.fmin(est, (self.s1 - t1a) / kp, out=est)
            for a, sl in self.tpot_pieces():
                np.fmin(est, (self.s2 - a) / sl, out=est)
                if with_e2e:
                    num = e2e_room - f * a
                    den = f * sl
                    den += kp
                    num /= den
                    np.fmin(est, num, out=est)
        np.floor(est, out=est)
        np.maximum(est, 0.0, out=est)
        return est

    def wait_interval(self) -> tuple[FloatArray, FloatArray]:
        """ω > 0, dense: the real interval of B >= 1 where TTFT and e2e meet their
        SLOs. With TPOT = max_k(a_k + s_k·B) and TTFT = t1a + kp·B + ω·f·TPOT/B,
        TTFT <= S is, per piece, kp·B² + (t1a + ω·f·s_k − S)·B + ω·f·a_k <= 0 and
        e2e <= E is (kp + f·s_k)·B² + (t1a + f·a_k + ω·f·s_k − E)·B + ω·f·a_k <= 0:
        each an interval; their intersection."""
        p, f, prof = self.p, self.f, self.prof
        kp = np.broadcast_to(prof.prefill_contention * p, self.shape)
        t1a = prof.prefill_overhead_s + p - kp
        wf = prof.admission_wait * f
        with_e2e = bool(np.isfinite(self.s3).any())
        lo = np.full(self.shape, -np.inf)
        hi = np.full(self.shape, np.inf)
        for a, sl in self.tpot_pieces():
            c = wf * a
            rows = [(kp, t1a + wf * sl - self.s1, c)]
            if with_e2e:
                rows.append((kp + f * sl, t1a + f * a + wf * sl - self.s3, c))
            for qa, qb, qc in rows:
                lo_k, hi_k = _quadratic_interval(
                    np.broadcast_to(qa, self.shape), qb, np.broadcast_to(qc, self.shape)
                )
                np.fmax(lo, lo_k, out=lo)
                np.fmin(hi, hi_k, out=hi)
        return lo, hi


def _last_true(pred, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Per element, the largest b in [lo, hi] with pred(b), `pred` true then false
    on [lo, hi] and lo taken as true (it is returned where nothing above holds)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = hi > lo
        if not active.any():
            return lo
        mid = np.where(active, np.ceil((lo + hi) / 2.0), lo)
        good = pred(np.maximum(mid, 1.0)) & active
        lo = np.where(good, mid, lo)
        hi = np.where(active & ~good, mid - 1.0, hi)


def _first_true(pred, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Per element, the smallest b in [lo, hi] with pred(b), `pred` false then true
    on [lo, hi] and true at hi."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = hi > lo
        if not active.any():
            return lo
        mid = np.floor((lo + hi) / 2.0)
        good = pred(mid)
        hi = np.where(active & good, mid, hi)
        lo = np.where(active & ~good, mid + 1.0, lo)


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
    t1 = float(ttft_s(hw, input_tokens, concurrency, profile, f=output_tokens)[0])
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


def with_overrides(profile: EngineProfile, **kw: Any) -> EngineProfile:
    """A copy of a profile with some constants replaced (used by calibration)."""
    return replace(profile, **kw)
