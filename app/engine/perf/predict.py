"""One case through the performance model: what `POST /v1/perf/estimate` publishes.

`estimate(case)` never raises for a case the API schema accepts: an impossible or
meaningless case gets a `PerfPrediction` whose `error` says, in the caller's
terms, which input is the problem (precision unsupported on the GPU, TP beyond a
node, prompt + output beyond the model's context, an input so small or so large
that the prediction is not finite, an unknown engine). `predict(...)` is the older
keyword form returning a dict; it raises ValueError with the same message.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from app.engine.model.domain import GPU, Model, Policy, Precision
from app.engine.perf.calibration import NO_CORRECTION, Calibration, Correction
from app.engine.perf.model import (
    hardware_arrays,
    kv_capacity_tokens,
    throughput_rps,
    tpot_s,
    ttft_s,
)
from app.engine.perf.profiles import (
    DEFAULT_ENGINE,
    EngineProfile,
    UnknownEngineError,
    engine_profile,
)


@dataclass(frozen=True, slots=True)
class PerfCase:
    """One deployment and request shape to predict. `engine` None: the GPU's
    engine, else the default engine (vLLM)."""

    model: Model
    gpu: GPU
    precision: Precision
    tp: int = 1
    pp: int = 1
    input_tokens: float = 1024.0
    output_tokens: float = 256.0
    concurrency: int = 1
    engine: str | None = None

    @property
    def engine_name(self) -> str:
        return self.engine or self.gpu.engine or DEFAULT_ENGINE


@dataclass(frozen=True, slots=True)
class PerfPrediction:
    """A case's prediction (times in s, throughput in requests/s per replica), or
    `error` (then the predicted quantities are None). `fits`: the weights fit in
    memory; `max_concurrency`: requests of this shape the KV cache holds.
    `calibrated`: corrected by observations (`calibration_points` of them)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    throughput_rps: float | None = None
    max_concurrency: int | None = None
    fits: bool | None = None
    engine: str | None = None
    profile: str | None = None
    profile_note: str | None = None
    calibrated: bool = False
    calibration_points: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: float) -> str:
    """A number as the caller wrote it: integers without a decimal point."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _input_error(case: PerfCase) -> str | None:
    """The first reason a case cannot be predicted, before any arithmetic."""
    m, g, p = case.model, case.gpu, case.precision
    for name, v in (("input_tokens", case.input_tokens), ("output_tokens", case.output_tokens)):
        if not math.isfinite(v):
            return f"{name} = {v!r} is not a finite number of tokens"
        if v < 1.0:
            return f"{name} = {_num(v)} is less than one token"
    if case.tp < 1 or case.pp < 1 or case.concurrency < 1:
        return "tp, pp and concurrency must be >= 1"
    if not p.supported_on(g):
        return f"precision {p.id!r} is not supported on {g.id!r}"
    if case.tp > g.gpus_per_node:
        return f"tp={case.tp} exceeds gpus_per_node={g.gpus_per_node} of {g.id!r}"
    if (problem := m.tp_problem(case.tp)) is not None:
        return problem
    if case.pp > m.layers:
        return f"pp={case.pp} exceeds the model's {m.layers} layers"
    total = case.input_tokens + case.output_tokens
    if total > m.max_context:
        return (
            f"input_tokens + output_tokens = {_num(total)} exceeds the model's "
            f"max_context {m.max_context}"
        )
    return None


@dataclass(frozen=True, slots=True)
class _Raw:
    ttft: float
    tpot: float
    throughput: float
    kv_requests: float  # requests of this shape the KV cache holds (may be <= 0)
    fits: bool

    def finite(self) -> bool:
        vals = (self.ttft, self.tpot, self.throughput, self.kv_requests)
        return all(math.isfinite(v) for v in vals)


def _raw(case: PerfCase, prof: EngineProfile, corr: Correction) -> _Raw:
    """The model's numbers for one case, corrected by `corr`."""
    hw = hardware_arrays([case.model], [case.gpu], [case.precision], [case.tp], [case.pp])
    h, f, b = float(case.input_tokens), float(case.output_tokens), float(case.concurrency)
    with np.errstate(all="ignore"):
        cap = float(kv_capacity_tokens(hw, prof)[0])
        t1 = float(ttft_s(hw, h, b, prof, f=f)[0]) * corr.ttft_factor
        t2 = float(tpot_s(hw, h, f, b, prof)[0]) * corr.tpot_factor
        thr = float(throughput_rps(t1, t2, f, b, hw, prof)[0])
        return _Raw(t1, t2, thr, cap / (h + f), cap > 0)


def _rates(case: PerfCase) -> list[tuple[str, float, PerfCase]]:
    """Every input the prediction divides by, with the case that has it set to 1
    (to find which one makes a prediction non-finite)."""
    g, p = case.gpu, case.precision
    key = p.compute
    tflops = dict(g.tflops)
    return [
        (
            "gpu.memory_bandwidth_gbps",
            g.memory_bandwidth_gbps,
            replace(case, gpu=replace(g, memory_bandwidth_gbps=1.0)),
        ),
        (
            f"gpu.tflops[{key!r}]",
            tflops[key],
            replace(case, gpu=replace(g, tflops={**tflops, key: 1.0})),
        ),
        (
            "gpu.intra_node_gbps",
            g.intra_node_gbps,
            replace(case, gpu=replace(g, intra_node_gbps=1.0)),
        ),
        (
            "gpu.inter_node_gbps",
            g.inter_node_gbps,
            replace(case, gpu=replace(g, inter_node_gbps=1.0)),
        ),
        ("gpu.memory_gb", g.memory_gb, replace(case, gpu=replace(g, memory_gb=1.0))),
        ("precision.kv_bytes", p.kv_bytes, replace(case, precision=replace(p, kv_bytes=1.0))),
        (
            "precision.bytes_per_weight",
            p.bytes_per_weight,
            replace(case, precision=replace(p, bytes_per_weight=1.0)),
        ),
    ]


def _non_finite_error(case: PerfCase, prof: EngineProfile) -> str:
    """Which input makes the prediction non-finite: the one whose replacement by 1
    makes it finite (else every input below 1e-30)."""
    culprits = []
    for name, value, fixed in _rates(case):
        if _raw(fixed, prof, NO_CORRECTION).finite():
            culprits.append((name, value))
            break
    if not culprits:
        culprits = [(n, v) for n, v, _ in _rates(case) if v < 1e-30]
    if not culprits:
        return "the prediction is not finite for these inputs"
    names = ", ".join(f"{n} = {v!r}" for n, v in culprits)
    return f"{names} makes the prediction non-finite (a time or rate overflows); check the value"


def estimate(
    case: PerfCase,
    calibration: Calibration | None = None,
    profile: EngineProfile | None = None,
) -> PerfPrediction:
    """Predicted TTFT, TPOT, e2e, throughput and max concurrency for one case, with
    its engine's profile (or `profile`) and, when given, the calibration's
    correction for (engine, GPU, model, precision). Never raises for valid domain
    objects: problems come back in `error`."""
    engine = case.engine_name
    try:
        prof = profile or engine_profile(engine)
    except UnknownEngineError as exc:
        return PerfPrediction(engine=engine, error=str(exc))
    base = PerfPrediction(engine=engine, profile=prof.name, profile_note=prof.note or None)
    err = _input_error(case)
    if err is not None:
        return replace(base, error=err)
    corr = NO_CORRECTION
    if calibration is not None:
        corr = calibration.correction_for(engine, case.gpu.id, case.model.id, case.precision.id)
    raw = _raw(case, prof, corr)
    if not raw.finite():
        return replace(base, error=_non_finite_error(case, prof))
    e2e = raw.ttft + case.output_tokens * raw.tpot
    if not math.isfinite(e2e):
        return replace(base, error=_non_finite_error(case, prof))
    return replace(
        base,
        ttft_s=raw.ttft,
        tpot_s=raw.tpot,
        e2e_s=e2e,
        throughput_rps=raw.throughput,
        max_concurrency=max(0, math.floor(raw.kv_requests)),
        fits=raw.fits,
        calibrated=corr.calibrated,
        calibration_points=corr.points,
    )


def deployment_error(case: PerfCase, policy: Policy | None = None) -> str | None:
    """Why `case` (a deployment and a request shape) cannot have run, or None: an
    observation of it cannot be right. The checks are the engine's own: what
    `estimate` refuses (precision unsupported on the GPU, TP beyond a node or the
    heads, PP beyond the layers, prompt + output beyond the context, a non-finite
    prediction); weights that leave no memory for the KV cache, or a KV cache that
    holds no request of this shape (the planner never deploys either); and, with a
    `policy`, TP or PP outside its options (the evaluator's structure check)."""
    out = estimate(case)
    if out.error is not None:
        return out.error
    m, g, p = case.model, case.gpu, case.precision
    where = f"{m.id!r} in {p.id!r} on tp={case.tp} x pp={case.pp} {g.id!r}"
    if not out.fits:
        return f"the weights of {where} leave no memory for the KV cache"
    if not out.max_concurrency:
        total = _num(case.input_tokens + case.output_tokens)
        return f"the KV cache of {where} holds no request of {total} tokens"
    if policy is not None:
        problems = policy.parallelism_problems(case.tp, case.pp)
        if problems:
            return "; ".join(problems)
    return None


def predict(
    model: Model,
    gpu: GPU,
    precision: Precision,
    tp: int,
    pp: int,
    input_tokens: float,
    output_tokens: float,
    concurrency: int,
    profile: EngineProfile | None = None,
    *,
    engine: str | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """`estimate` in keyword form, as a dict (ttft_s, tpot_s, e2e_s, throughput_rps,
    max_concurrency, fits, engine, profile, profile_note, calibrated,
    calibration_points); raises ValueError with the case's error instead of
    returning it."""
    case = PerfCase(model, gpu, precision, tp, pp, input_tokens, output_tokens, concurrency, engine)
    out = estimate(case, calibration, profile)
    if out.error is not None:
        raise ValueError(out.error)
    d = out.to_dict()
    del d["error"]
    return d
