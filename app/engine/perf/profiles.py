"""Serving-engine profiles: the fitted constants of the performance model, and the
registry of engines by name.

An `EngineProfile` holds what the equations of `app.engine.perf.model` need from
the engine that serves the fleet (efficiencies, overheads, scheduler behaviour).
Profiles are fitted on the measurements of the shared data by
`python3 bench/validate_perf.py --fit`; `ENGINES` maps the engine names a
scenario may use (`Policy.engine`, `GPU.engine`) to their profiles. An engine
without measurements starts from the closest fitted profile and says so
(`fitted=False` and a `note` the service shows with every prediction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any


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
    step_overhead_per_seq_s: float = 0.0  # per running sequence per decode step
    admission_wait: float = 0.0  # ω: inter-completion intervals a new request waits (TTFT)
    # The wait is ω·TPOT·min(f/B, this): one inter-completion interval (f/B decode
    # steps at concurrency B), but never more decode steps than were measured.
    admission_wait_max_steps: float = 64.0
    link_efficiency: float = 0.7  # achieved fraction of link bandwidth
    memory_utilization: float = 0.90  # fraction of GPU memory the engine may use
    runtime_reserve_gb: float = 2.0  # activations, CUDA graphs, allocator slack per GPU
    pp_bubble: float = 0.10  # throughput lost per extra PP stage, as a fraction
    max_batch: int = 512  # engine's cap on concurrent sequences per replica
    fitted: bool = True  # False: constants borrowed from another engine (see `note`)
    note: str = ""  # provenance, shown with predictions


# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the vLLM rows at concurrency <= 16 of shared/data/measured/silicon_h100_llama.csv
# (Llama-3.1-70B fp8, H100-SXM, TP 2/4/8; 27 points): vLLM's continuous batching,
# the planning default (the most common open engine). No admission wait (ω = 0: its
# TTFT shows none). It ran one model, so the per-step overhead cannot be split into
# fixed and per-layer parts: fixed at 0 and per layer (~4.6 ms at 80 layers, ~1.8 ms
# at 32), plus ~44 µs per running sequence (sampling, scheduling), which carries
# TPOT's rise with concurrency out of the fitted range (c > 16: TPOT 11% -> 7%).
DEFAULT_PROFILE = EngineProfile(
    name="vllm-2025",
    bw_efficiency=0.885,
    compute_efficiency=0.546,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=5.72e-05,
    step_overhead_per_seq_s=4.40e-05,
    prefill_overhead_s=0.0317,
    prefill_contention=0.0587,
    prefill_interference=0.933,
    allreduce_latency_s=5.15e-07,
    hop_latency_s=0.00005,  # not fitted (no PP measurements)
    note=(
        "vLLM: fitted on 27 H100-SXM serving runs of Llama-3.1-70B fp8 (TP 2/4/8, concurrency 4-16)"
    ),
)

# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the TensorRT-LLM rows at concurrency <= 16 of the same file (Llama-3.1-8B bf16,
# H100-SXM, TP 1/2/4/8; 72 points). Its measured TTFT carries about one
# inter-completion interval (ω ≈ 1: in the closed-loop benchmark a slot frees every
# f·TPOT/B seconds and the newcomer waits for it). That interval was measured up to
# f/B = 64 decode steps (output 512 at concurrency 8) and is capped there
# (`admission_wait_max_steps`): unbounded, it predicted TTFTs of tens of seconds
# for long outputs, which held-out TensorRT-LLM runs do not show (issue #10).
# bw_efficiency sits at its bound, 0.92: the best bf16 GEMM of the AIConfigurator
# kernel tables reaches 0.92 of H100's peak bandwidth (unbounded, the fit took 1.0
# and put the difference into overheads; bounded, TPOT of the 70B vLLM rows with
# this profile improves from 10.5% to 8.8%). Overheads as for vLLM (~1.4 ms per
# step at 32 layers, ~44 µs per sequence); γ sits at its upper bound (1).
# The wait comes from one collection (AIConfigurator's gap analysis, TensorRT-LLM
# 1.0.0rc3) and is exactly the Little's-law signature of one request queued in
# front of the engine; the cap keeps it conservative (TTFT over- rather than
# under-predicted) until calibration on the fleet's own observations corrects it.
TRTLLM_PROFILE = EngineProfile(
    name="trtllm-2025",
    bw_efficiency=0.92,
    compute_efficiency=0.838,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=4.28e-05,
    step_overhead_per_seq_s=4.42e-05,
    prefill_overhead_s=0.0389,
    prefill_contention=0.0361,
    prefill_interference=1.0,
    allreduce_latency_s=2.98e-07,
    hop_latency_s=0.00005,  # not fitted (no PP measurements)
    admission_wait=1.02,
    admission_wait_max_steps=64.0,
    note=(
        "TensorRT-LLM: fitted on 72 H100-SXM serving runs of Llama-3.1-8B bf16 "
        "(TP 1-8, concurrency 8-16, output <= 512 tokens); the admission wait is "
        "capped at 64 decode steps, the largest measured"
    ),
)

# Fitted by `python3 bench/validate_perf.py --fit` (rounded to 3 significant digits)
# on the Splitwise table (shared/data/measured/splitwise_perf_model.csv): an older
# engine with static batching (a batch's prompts are prefilled together: κ = 1) and
# decode measured without prefill interference (γ = 0), no admission wait (ω = 0);
# all three fixed, not fitted. Its large per-token overhead (~9 ms of per-layer cost
# plus ring all-reduce latency that grows with TP: ~2 ms at TP2, ~15 ms at TP8 for 80
# layers, which the all-reduce term's 2(n−1)·α form expresses) and ~0.29 ms per
# sequence per step (TPOT rises 35–90% from batch 1 to 64 beyond the KV reads).
# The fixed per-step overhead came out below 1e-6 s: 0.
SPLITWISE_PROFILE = EngineProfile(
    name="splitwise-2023",
    bw_efficiency=0.777,
    compute_efficiency=0.565,
    step_overhead_s=0.0,
    step_overhead_per_layer_s=0.000111,
    step_overhead_per_seq_s=0.000286,
    prefill_overhead_s=0.0195,
    prefill_contention=1.0,
    prefill_interference=0.0,
    allreduce_latency_s=6.57e-06,
    hop_latency_s=0.0001,  # not fitted (no PP measurements)
    note="Splitwise (2023 engine, static batching): fitted on the Splitwise table",
)

# No SGLang measurement in the shared data. SGLang is, like vLLM, a continuous-
# batching engine with paged KV and chunked prefill and no admission wait, so it
# starts from vLLM's constants; users measured it 38% off in TPOT (issue #10):
# calibrate it with observations before trusting its plans.
SGLANG_PROFILE = replace(
    DEFAULT_PROFILE,
    name="sglang-from-vllm-2025",
    fitted=False,
    note=(
        "SGLang: not fitted (no measurements); uses the vLLM profile, the closest "
        "engine (continuous batching, no admission wait). Calibrate with observed "
        "latencies."
    ),
)

PROFILES: Mapping[str, EngineProfile] = MappingProxyType(
    {p.name: p for p in (DEFAULT_PROFILE, TRTLLM_PROFILE, SPLITWISE_PROFILE, SGLANG_PROFILE)}
)

DEFAULT_ENGINE = "vllm"
# The engines a scenario may name (Policy.engine, GPU.engine), by name.
ENGINES: Mapping[str, EngineProfile] = MappingProxyType(
    {"vllm": DEFAULT_PROFILE, "trtllm": TRTLLM_PROFILE, "sglang": SGLANG_PROFILE}
)
ENGINE_NAMES: tuple[str, ...] = tuple(sorted(ENGINES))


class UnknownEngineError(ValueError):
    """An engine name that is not in the registry."""


def unknown_engine_message(name: object) -> str:
    return f"unknown engine {name!r} (known: {', '.join(ENGINE_NAMES)})"


def engine_profile(engine: str) -> EngineProfile:
    """The profile of a registered engine; UnknownEngineError names the known ones."""
    try:
        return ENGINES[engine]
    except (KeyError, TypeError):
        raise UnknownEngineError(unknown_engine_message(engine)) from None


def with_overrides(profile: EngineProfile, **kw: Any) -> EngineProfile:
    """A copy of a profile with some constants replaced (used by the fits)."""
    return replace(profile, **kw)
