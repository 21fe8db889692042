"""Calibration of the performance model on observed latencies (SPEC §4.1): pure
math, no I/O.

Observed TTFT and TPOT per (engine, model, GPU, precision, TP, PP, request shape,
concurrency) correct the model's predictions by a multiplicative factor per group
(engine, GPU, model, precision), one for TTFT and one for TPOT. The estimate is a
hierarchical normal model on log(observed / predicted):

* levels: group ⊂ engine × GPU ⊂ engine, each level's true log factor drawn
  around its parent's with a prior variance τ² = s²/n0 (n0: the prior strength
  in points of that level, `CalibrationPrior`), the engine's around 0 (no
  correction). A group with few points stays close to its parent, and to factor 1
  when nothing above it is known either; many consistent points override both.
* robust: within each group the location is a Huber M-estimate, so one outlier
  among several points gets a bounded weight; a lone point's reach is clipped.
* uncertainty: the posterior standard deviation of each log factor.

The estimator itself is `app.engine.perf.shrinkage`.

`fit_calibration` takes observations and a predictor (default: the engine's
profile through the model); `calibrate_ratios` is the same on precomputed arrays.
The result, a frozen `Calibration`, answers `correction_for(engine, gpu, model,
precision)` from the finest level that has points, gives a document with every
level's factors, points and MAPE before/after, and `moved_beyond(other, deadband)`
tells whether a re-fit moved any correction beyond a dead band.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.model.domain import GPU, Model, Precision
from app.engine.perf.model import hardware_arrays, tpot_s, ttft_s
from app.engine.perf.profiles import EngineProfile, engine_profile
from app.engine.perf.shrinkage import (
    DEFAULT_PRIOR,
    CalibrationPrior,
    GroupKey,
    fit_levels,
    group_positions,
)

__all__ = [
    "DEFAULT_PRIOR",
    "EMPTY_CALIBRATION",
    "LEVEL_ENGINE",
    "LEVEL_ENGINE_GPU",
    "LEVEL_GROUP",
    "LEVEL_NONE",
    "NO_CORRECTION",
    "Calibration",
    "CalibrationPrior",
    "Correction",
    "GroupFit",
    "GroupKey",
    "LatencyObservation",
    "calibrate_ratios",
    "fit_calibration",
    "predict_observations",
]

FloatArray = NDArray[np.float64]

LEVEL_GROUP = "group"
LEVEL_ENGINE_GPU = "engine_gpu"
LEVEL_ENGINE = "engine"
LEVEL_NONE = "none"
_ABSENT = "\x00"  # an id no real model or GPU has: resolves to a coarser level


@dataclass(frozen=True, slots=True)
class LatencyObservation:
    """One measured latency of a deployment (domain objects resolved by the caller)."""

    engine: str
    model: Model
    gpu: GPU
    precision: Precision
    tp: int
    pp: int
    input_tokens: float
    output_tokens: float
    concurrency: float
    ttft_s: float
    tpot_s: float

    @property
    def key(self) -> GroupKey:
        return (self.engine, self.gpu.id, self.model.id, self.precision.id)


@dataclass(frozen=True, slots=True)
class Correction:
    """Multiplicative corrections for one (engine, GPU, model, precision): predicted
    TTFT and TPOT are multiplied by the factors. `points` observations back it at
    `level` (group, engine_gpu, engine, or none: factor 1); `*_log_se` is the
    posterior standard deviation of the log factor."""

    ttft_factor: float = 1.0
    tpot_factor: float = 1.0
    points: int = 0
    level: str = LEVEL_NONE
    ttft_log_se: float = 0.0
    tpot_log_se: float = 0.0

    @property
    def calibrated(self) -> bool:
        return self.points > 0


NO_CORRECTION = Correction()


@dataclass(frozen=True, slots=True)
class _Estimate:
    """Posterior of one level's log factor for both metrics, and its points."""

    ttft: float
    tpot: float
    ttft_var: float
    tpot_var: float
    points: int


@dataclass(frozen=True, slots=True)
class GroupFit:
    """A group's correction and how well it fits its own points (MAPE, %)."""

    key: GroupKey
    correction: Correction
    ttft_mape_before: float
    ttft_mape_after: float
    tpot_mape_before: float
    tpot_mape_after: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """Fitted corrections (immutable). Build with `fit_calibration` or
    `calibrate_ratios`; `Calibration()` is the empty calibration (factor 1)."""

    prior: CalibrationPrior = DEFAULT_PRIOR
    groups: Mapping[GroupKey, _Estimate] = field(default_factory=dict)
    engine_gpus: Mapping[tuple[str, str], _Estimate] = field(default_factory=dict)
    engines: Mapping[str, _Estimate] = field(default_factory=dict)
    fits: tuple[GroupFit, ...] = ()
    scale_ttft: float = DEFAULT_PRIOR.noise_ttft
    scale_tpot: float = DEFAULT_PRIOR.noise_tpot
    skipped: int = 0  # observations left out (non-positive or non-finite values)

    def __post_init__(self) -> None:
        for name in ("groups", "engine_gpus", "engines"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (a mappingproxy is not): it crosses into the solver processes."""
        return (
            type(self),
            (
                self.prior,
                dict(self.groups),
                dict(self.engine_gpus),
                dict(self.engines),
                self.fits,
                self.scale_ttft,
                self.scale_tpot,
                self.skipped,
            ),
        )

    @property
    def points(self) -> int:
        return sum(e.points for e in self.engines.values())

    def correction_for(self, engine: str, gpu: str, model: str, precision: str) -> Correction:
        """The correction of the finest level with points: the group, else its
        engine × GPU, else its engine, else none (factor 1). A fallback's
        uncertainty adds the prior variance of the levels it skips (an unseen group
        may differ from its engine × GPU by τ_group)."""
        p, s1, s2 = self.prior, self.scale_ttft**2, self.scale_tpot**2
        est = self.groups.get((engine, gpu, model, precision))
        if est is not None:
            return _correction(est, LEVEL_GROUP)
        est, level, skipped = (
            self.engine_gpus.get((engine, gpu)),
            LEVEL_ENGINE_GPU,
            1.0 / p.group_points,
        )
        if est is None:
            est, level = self.engines.get(engine), LEVEL_ENGINE
            skipped += 1.0 / p.gpu_points
        if est is None:
            return NO_CORRECTION
        widened = replace(
            est, ttft_var=est.ttft_var + s1 * skipped, tpot_var=est.tpot_var + s2 * skipped
        )
        return _correction(widened, level)

    def moved_beyond(self, other: Calibration, deadband: float) -> bool:
        """Whether any correction (of any group or coarser level either calibration
        knows, resolved as `correction_for` would) differs between the two by more
        than `deadband` (a fraction: 0.1 = 10%) in TTFT or TPOT."""
        limit = math.log1p(deadband)
        for key in self._probe_keys() | other._probe_keys():
            a, b = self.correction_for(*key), other.correction_for(*key)
            if abs(math.log(a.ttft_factor / b.ttft_factor)) > limit:
                return True
            if abs(math.log(a.tpot_factor / b.tpot_factor)) > limit:
                return True
        return False

    def _probe_keys(self) -> set[GroupKey]:
        keys = set(self.groups)
        keys |= {(e, g, _ABSENT, _ABSENT) for e, g in self.engine_gpus}
        keys |= {(e, _ABSENT, _ABSENT, _ABSENT) for e in self.engines}
        return keys

    def to_document(self) -> dict[str, Any]:
        """Every level's factors, points and uncertainty; each group's MAPE on its
        own points before and after the correction."""

        def factors(est: _Estimate) -> dict[str, Any]:
            return {
                "points": est.points,
                "ttft_factor": math.exp(est.ttft),
                "tpot_factor": math.exp(est.tpot),
                "ttft_log_se": math.sqrt(est.ttft_var),
                "tpot_log_se": math.sqrt(est.tpot_var),
            }

        groups = []
        for fit in self.fits:
            e, g, m, prec = fit.key
            groups.append(
                {
                    "engine": e,
                    "gpu": g,
                    "model": m,
                    "precision": prec,
                    **factors(self.groups[fit.key]),
                    "ttft_mape_before": fit.ttft_mape_before,
                    "ttft_mape_after": fit.ttft_mape_after,
                    "tpot_mape_before": fit.tpot_mape_before,
                    "tpot_mape_after": fit.tpot_mape_after,
                }
            )
        p = self.prior
        return {
            "points": self.points,
            "skipped": self.skipped,
            "prior": {
                "group_points": p.group_points,
                "gpu_points": p.gpu_points,
                "engine_points": p.engine_points,
                "effective_points": p.effective_points(),
                "huber_c": p.huber_c,
                "max_log_factor": p.max_log_factor,
            },
            "scale": {"ttft": self.scale_ttft, "tpot": self.scale_tpot},
            "groups": groups,
            "engine_gpus": [
                {"engine": e, "gpu": g, **factors(est)}
                for (e, g), est in sorted(self.engine_gpus.items())
            ],
            "engines": [{"engine": e, **factors(est)} for e, est in sorted(self.engines.items())],
        }


EMPTY_CALIBRATION = Calibration()


def _correction(est: _Estimate, level: str) -> Correction:
    return Correction(
        ttft_factor=math.exp(est.ttft),
        tpot_factor=math.exp(est.tpot),
        points=est.points,
        level=level,
        ttft_log_se=math.sqrt(est.ttft_var),
        tpot_log_se=math.sqrt(est.tpot_var),
    )


# ------------------------------------------------------------------ fitting

Predictor = Callable[[Sequence[LatencyObservation]], tuple[FloatArray, FloatArray]]


def predict_observations(
    observations: Sequence[LatencyObservation], profile: EngineProfile | None = None
) -> tuple[FloatArray, FloatArray]:
    """The uncalibrated model's (TTFT, TPOT) for each observation, with its engine's
    profile (or `profile` for all)."""
    n = len(observations)
    t1, t2 = np.empty(n), np.empty(n)
    by_engine: dict[str, list[int]] = defaultdict(list)
    for i, o in enumerate(observations):
        by_engine[o.engine].append(i)
    for engine, idx in by_engine.items():
        prof = profile or engine_profile(engine)
        obs = [observations[i] for i in idx]
        hw = hardware_arrays(
            [o.model for o in obs],
            [o.gpu for o in obs],
            [o.precision for o in obs],
            [o.tp for o in obs],
            [o.pp for o in obs],
        )
        h = np.array([o.input_tokens for o in obs], dtype=np.float64)
        f = np.array([o.output_tokens for o in obs], dtype=np.float64)
        b = np.array([o.concurrency for o in obs], dtype=np.float64)
        with np.errstate(all="ignore"):
            t1[idx] = ttft_s(hw, h, b, prof, f=f)
            t2[idx] = tpot_s(hw, h, f, b, prof)
    return t1, t2


def fit_calibration(
    observations: Sequence[LatencyObservation],
    predictor: Predictor = predict_observations,
    prior: CalibrationPrior = DEFAULT_PRIOR,
) -> Calibration:
    """Fit the corrections on observations; `predictor` gives the uncalibrated
    (TTFT, TPOT) for them (default: each engine's profile)."""
    pred_t1, pred_t2 = predictor(observations)
    return calibrate_ratios(
        [o.key for o in observations],
        [o.ttft_s for o in observations],
        [o.tpot_s for o in observations],
        pred_t1,
        pred_t2,
        prior,
    )


def calibrate_ratios(
    keys: Sequence[GroupKey],
    measured_ttft: ArrayLike,
    measured_tpot: ArrayLike,
    predicted_ttft: ArrayLike,
    predicted_tpot: ArrayLike,
    prior: CalibrationPrior = DEFAULT_PRIOR,
) -> Calibration:
    """The calibration from measured and predicted latencies, point by point.
    Points with a non-positive or non-finite value (measured or predicted) are
    skipped and counted."""
    m1, m2 = np.asarray(measured_ttft, np.float64), np.asarray(measured_tpot, np.float64)
    p1, p2 = np.asarray(predicted_ttft, np.float64), np.asarray(predicted_tpot, np.float64)
    with np.errstate(all="ignore"):
        valid = np.isfinite(m1) & np.isfinite(m2) & np.isfinite(p1) & np.isfinite(p2)
        valid &= (m1 > 0) & (m2 > 0) & (p1 > 0) & (p2 > 0)
    idx = np.flatnonzero(valid)
    kept = [keys[int(i)] for i in idx]
    m1, m2, p1, p2 = m1[idx], m2[idx], p1[idx], p2[idx]
    if not kept:
        return Calibration(prior=prior, skipped=len(keys))
    fit1 = fit_levels(kept, np.log(m1 / p1), prior, prior.noise_ttft)
    fit2 = fit_levels(kept, np.log(m2 / p2), prior, prior.noise_tpot)

    def merge(
        a: Mapping[Any, tuple[float, float, int]], b: Mapping[Any, tuple[float, float, int]]
    ) -> dict[Any, _Estimate]:
        return {k: _Estimate(a[k][0], b[k][0], a[k][1], b[k][1], a[k][2]) for k in a}

    groups = merge(fit1.groups, fit2.groups)
    pos = group_positions(kept)
    fits = []
    for key in sorted(groups):
        i, est = pos[key], groups[key]
        fits.append(
            GroupFit(
                key=key,
                correction=_correction(est, LEVEL_GROUP),
                ttft_mape_before=_mape(p1[i], m1[i]),
                ttft_mape_after=_mape(p1[i] * math.exp(est.ttft), m1[i]),
                tpot_mape_before=_mape(p2[i], m2[i]),
                tpot_mape_after=_mape(p2[i] * math.exp(est.tpot), m2[i]),
            )
        )
    return Calibration(
        prior=prior,
        groups=groups,
        engine_gpus=merge(fit1.engine_gpus, fit2.engine_gpus),
        engines=merge(fit1.engines, fit2.engines),
        fits=tuple(fits),
        scale_ttft=fit1.scale,
        scale_tpot=fit2.scale,
        skipped=len(keys) - len(kept),
    )


def _mape(pred: FloatArray, meas: FloatArray) -> float:
    return float(100.0 * np.mean(np.abs(pred - meas) / meas))
