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
* the posterior mean and variance are computed top-down, each level's parent
  estimated from the points *outside* it (no point counts twice):
  prior of a group = engine × GPU without the group, whose own prior is the engine
  without that GPU.
* robustness: within each group the location is a Huber M-estimate (scale s, the
  pooled within-group dispersion, never below a noise floor), so one outlier among
  several points gets a bounded weight; in a group of one or two points (where an
  outlier cannot be told from a shift) each log ratio is clipped to
  ±`max_log_factor` before it enters.
* uncertainty: the posterior standard deviation of each log factor.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.model.domain import GPU, Model, Precision
from app.engine.perf.model import hardware_arrays, tpot_s, ttft_s
from app.engine.perf.profiles import EngineProfile, engine_profile

FloatArray = NDArray[np.float64]
GroupKey = tuple[str, str, str, str]  # (engine, gpu, model, precision)

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
class CalibrationPrior:
    """How much a correction needs before it moves. `*_points`: prior strength in
    points of each level (n0: a level with n consistent points moves n/(n + n0_eff)
    of the way to them, n0_eff combining the levels above: 4.8 for a group alone in
    its engine). Chosen by `bench/validate_perf.py --calibration`: the prior with
    the best worst-draw MAPE at k = 4 points over the model as fitted, perturbed
    (bandwidth or compute efficiency x0.7) and with one gross outlier per group.
    Groups may differ from their siblings (6 points) more than engines and GPUs
    from no correction (48 points): one engine × GPU's groups inform each other,
    but a new engine or GPU starts near factor 1."""

    group_points: float = 6.0  # a group around its engine × GPU
    gpu_points: float = 48.0  # an engine × GPU around its engine
    engine_points: float = 48.0  # an engine around no correction
    noise_ttft: float = 0.10  # floor of the log-ratio scale of one TTFT observation
    noise_tpot: float = 0.05  # the same for TPOT
    noise_dof: float = 4.0  # pseudo-points of that floor in the pooled scale
    huber_c: float = 1.345  # Huber threshold in scales (95% efficiency under normal noise)
    max_log_factor: float = math.log(2.0)  # a lone point's reach (groups of <= 2 points)

    def effective_points(self) -> float:
        """n0 of an isolated group (no other data anywhere in its engine)."""
        return 1.0 / (1.0 / self.group_points + 1.0 / self.gpu_points + 1.0 / self.engine_points)


DEFAULT_PRIOR = CalibrationPrior()


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
    fit1 = _fit_metric(kept, np.log(m1 / p1), prior, prior.noise_ttft)
    fit2 = _fit_metric(kept, np.log(m2 / p2), prior, prior.noise_tpot)

    def merge(
        a: Mapping[Any, tuple[float, float, int]], b: Mapping[Any, tuple[float, float, int]]
    ) -> dict[Any, _Estimate]:
        return {k: _Estimate(a[k][0], b[k][0], a[k][1], b[k][1], a[k][2]) for k in a}

    groups = merge(fit1.groups, fit2.groups)
    pos = _positions(kept)
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


def _positions(keys: Iterable[GroupKey]) -> dict[GroupKey, NDArray[np.intp]]:
    acc: dict[GroupKey, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        acc[k].append(i)
    return {k: np.array(v, dtype=np.intp) for k, v in acc.items()}


@dataclass(frozen=True, slots=True)
class _MetricFit:
    """One metric's posteriors per level as (mean, variance, points)."""

    groups: dict[GroupKey, tuple[float, float, int]]
    engine_gpus: dict[tuple[str, str], tuple[float, float, int]]
    engines: dict[str, tuple[float, float, int]]
    scale: float


@dataclass(slots=True)
class _Sums:
    """Huber-weighted sums of log ratios (Σw·r, Σw) and the count of points."""

    wr: float = 0.0
    w: float = 0.0
    n: int = 0

    def add(self, other: _Sums) -> None:
        self.wr += other.wr
        self.w += other.w
        self.n += other.n

    def minus(self, other: _Sums) -> _Sums:
        return _Sums(self.wr - other.wr, self.w - other.w, self.n - other.n)


def _pooled_scale(
    pos: Mapping[GroupKey, NDArray[np.intp]], r: FloatArray, prior: CalibrationPrior, floor: float
) -> float:
    """The within-group scale of one observation's log ratio: MAD around each
    group's median, pooled over groups of 3 or more points, with `noise_dof`
    pseudo-points at the noise floor; never below the floor."""
    dev: list[float] = []
    dof = 0
    for idx in pos.values():
        if len(idx) >= 3:
            x = r[idx]
            dev.extend(np.abs(x - np.median(x)).tolist())
            dof += len(idx) - 1
    if not dev:
        return floor
    mad = 1.4826 * float(np.median(dev))
    s2 = (prior.noise_dof * floor**2 + dof * mad**2) / (prior.noise_dof + dof)
    return max(floor, math.sqrt(s2))


def _huber_sums(x: FloatArray, scale: float, c: float) -> _Sums:
    """Huber M-estimate of the location of `x` (scale fixed) as weighted sums."""
    mu = float(np.median(x))
    w = np.ones_like(x)
    for _ in range(50):
        dist = np.abs(x - mu)
        w = np.minimum(1.0, c * scale / np.maximum(dist, 1e-300))
        new = float(np.sum(w * x) / np.sum(w))
        if abs(new - mu) < 1e-10:
            mu = new
            break
        mu = new
    return _Sums(float(np.sum(w * x)), float(np.sum(w)), len(x))


def _posterior(s: _Sums, scale: float, prior_mean: float, prior_var: float) -> tuple[float, float]:
    """Normal posterior of a level's log factor from its Huber sums."""
    prec = s.w / scale**2 + 1.0 / prior_var
    mean = (s.wr / scale**2 + prior_mean / prior_var) / prec
    return mean, 1.0 / prec


def _fit_metric(
    keys: Sequence[GroupKey], r: FloatArray, prior: CalibrationPrior, floor: float
) -> _MetricFit:
    """Posteriors of one metric's log factor at every level (see the module doc)."""
    pos = _positions(keys)
    scale = _pooled_scale(pos, r, prior, floor)
    tau_e = scale**2 / prior.engine_points
    tau_g = scale**2 / prior.gpu_points
    tau_k = scale**2 / prior.group_points

    lim = prior.max_log_factor
    sums: dict[GroupKey, _Sums] = {}
    for k, idx in pos.items():
        x = r[idx]
        if len(x) <= 2:  # no outlier can be told from a shift: bound each point's reach
            x = np.clip(x, -lim, lim)
        sums[k] = _huber_sums(x, scale, prior.huber_c)

    by_gpu: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    by_eng: dict[str, _Sums] = defaultdict(_Sums)
    for k, s in sums.items():
        by_gpu[(k[0], k[1])].add(s)
        by_eng[k[0]].add(s)

    engines = {}
    for e, s in by_eng.items():
        mean, var = _posterior(s, scale, 0.0, tau_e)
        engines[e] = (mean, var, s.n)
    engine_gpus = {}
    for (e, g), s in by_gpu.items():
        pm, pv = _posterior(by_eng[e].minus(s), scale, 0.0, tau_e)  # the engine without this GPU
        mean, var = _posterior(s, scale, pm, pv + tau_g)
        engine_gpus[(e, g)] = (mean, var, s.n)
    groups = {}
    for k, s in sums.items():
        eg = by_gpu[(k[0], k[1])]
        rest = eg.minus(s)  # the GPU's other groups
        em, ev = _posterior(by_eng[k[0]].minus(eg), scale, 0.0, tau_e)
        pm, pv = _posterior(rest, scale, em, ev + tau_g)
        mean, var = _posterior(s, scale, pm, pv + tau_k)
        groups[k] = (mean, var, s.n)
    return _MetricFit(groups, engine_gpus, engines, scale)
