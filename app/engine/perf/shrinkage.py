"""The estimator behind calibration: robust hierarchical shrinkage of log ratios
(observed / predicted) over the levels group ⊂ engine × GPU ⊂ engine.

* Each level's true log factor is drawn around its parent's with a prior variance
  τ² = s²/n0 (n0: that level's prior strength in points, `CalibrationPrior`), the
  engine's around 0 (no correction). The posterior mean and variance are computed
  top-down, each level's parent estimated from the points *outside* it, so no
  point counts twice: the prior of a group is its engine × GPU without the group,
  whose own prior is the engine without that GPU.
* Within each group the location is a Huber M-estimate with scale s, the pooled
  within-group dispersion (MAD around each group's median, with pseudo-points at a
  noise floor, never below it): one outlier among several points gets a bounded
  weight. In a group of one or two points, where an outlier cannot be told from a
  shift, each log ratio is first clipped to ±`max_log_factor`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
GroupKey = tuple[str, str, str, str]  # (engine, gpu, model, precision)
Posterior = tuple[float, float, int]  # (mean, variance, points) of a log factor


@dataclass(frozen=True, slots=True)
class CalibrationPrior:
    """How much a correction needs before it moves. `*_points`: prior strength in
    points of each level (n0: a level with n consistent points moves n/(n + n0_eff)
    of the way to them, n0_eff combining the levels above: 6 for a group alone in
    its engine). Chosen by `bench/validate_perf.py --calibration`: the prior with
    the best worst-draw MAPE at k = 4 points over the model as fitted, perturbed
    (bandwidth or compute efficiency x0.7) and with one gross outlier per group
    (a flat optimum: group 6 / above 48 scores within 0.1%). Groups may differ
    from their siblings (12 points) more than engines and GPUs from no correction
    (24 points each): one engine × GPU's groups inform each other, but a new
    engine or GPU starts near factor 1."""

    group_points: float = 12.0  # a group around its engine × GPU
    gpu_points: float = 24.0  # an engine × GPU around its engine
    engine_points: float = 24.0  # an engine around no correction
    noise_ttft: float = 0.10  # floor of the log-ratio scale of one TTFT observation
    noise_tpot: float = 0.05  # the same for TPOT
    noise_dof: float = 4.0  # pseudo-points of that floor in the pooled scale
    huber_c: float = 1.345  # Huber threshold in scales (95% efficiency under normal noise)
    max_log_factor: float = math.log(2.0)  # a lone point's reach (groups of <= 2 points)

    def effective_points(self) -> float:
        """n0 of an isolated group (no other data anywhere in its engine)."""
        return 1.0 / (1.0 / self.group_points + 1.0 / self.gpu_points + 1.0 / self.engine_points)


DEFAULT_PRIOR = CalibrationPrior()


def group_positions(keys: Iterable[GroupKey]) -> dict[GroupKey, NDArray[np.intp]]:
    """The positions of each group's points."""
    acc: dict[GroupKey, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        acc[k].append(i)
    return {k: np.array(v, dtype=np.intp) for k, v in acc.items()}


@dataclass(frozen=True, slots=True)
class LevelFit:
    """One metric's posteriors per level, and the pooled scale of one observation."""

    groups: dict[GroupKey, Posterior]
    engine_gpus: dict[tuple[str, str], Posterior]
    engines: dict[str, Posterior]
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


def fit_levels(
    keys: Sequence[GroupKey], r: FloatArray, prior: CalibrationPrior, floor: float
) -> LevelFit:
    """Posteriors of one metric's log factor at every level (see the module doc)."""
    pos = group_positions(keys)
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
    return LevelFit(groups, engine_gpus, engines, scale)
