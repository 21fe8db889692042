"""Calibration of the performance model on observed latencies
(app/engine/perf/calibration.py): recovery of known factors, shrinkage toward
coarser levels and toward no correction, robustness to outliers, the document
form and the dead band; and the calibration reaching B*, μ and `estimate`."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from app.engine.model.catalog import catalog_gpu, catalog_model, catalog_precision
from app.engine.model.domain import GPU, Model, Policy, Precision, QueryType, Scenario
from app.engine.perf.calibration import (
    DEFAULT_PRIOR,
    EMPTY_CALIBRATION,
    LEVEL_ENGINE,
    LEVEL_ENGINE_GPU,
    LEVEL_GROUP,
    LEVEL_NONE,
    Calibration,
    LatencyObservation,
    calibrate_ratios,
    fit_calibration,
    predict_observations,
)
from app.engine.perf.predict import PerfCase, estimate
from app.engine.plan.candidates import candidate_table, enumerate_candidates, pair_constants


def _catalog() -> tuple[Model, Model, GPU, GPU, Precision]:
    m8, m70 = catalog_model("Llama-3.1-8B"), catalog_model("Llama-3.1-70B")
    h100, a100 = catalog_gpu("H100-SXM"), catalog_gpu("A100-SXM-80GB")
    bf16 = catalog_precision("bf16")
    assert m8 and m70 and h100 and a100 and bf16
    return m8, m70, h100, a100, bf16


M8, M70, H100, A100, BF16 = _catalog()


def _observations(
    n: int,
    ttft_factor: float,
    tpot_factor: float,
    noise: float = 0.0,
    seed: int = 0,
    engine: str = "vllm",
    model: Model = M8,
    gpu: GPU = H100,
) -> list[LatencyObservation]:
    """n observations of one group whose latencies are the model's times the
    factors, with multiplicative log-normal noise of std `noise`."""
    rng = np.random.default_rng(seed)
    shapes = [
        (tp, float(h), float(f), float(c))
        for tp in (1, 2, 4)
        for h in (512, 2048)
        for f in (128, 512)
        for c in (1, 4, 16)
    ]
    obs = []
    for i in range(n):
        tp, h, f, c = shapes[i % len(shapes)]
        o = LatencyObservation(engine, model, gpu, BF16, tp, 1, h, f, c, 1.0, 1.0)
        (t1,), (t2,) = predict_observations([o])
        e1, e2 = rng.normal(0.0, noise, 2) if noise else (0.0, 0.0)
        obs.append(
            replace(
                o, ttft_s=t1 * ttft_factor * math.exp(e1), tpot_s=t2 * tpot_factor * math.exp(e2)
            )
        )
    return obs


def test_recovers_known_factors_within_their_uncertainty() -> None:
    obs = _observations(400, 1.3, 0.8, noise=0.1, seed=1)
    cal = fit_calibration(obs)
    c = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    assert c.level == LEVEL_GROUP and c.points == 400 and c.calibrated
    # shrinkage toward 1 costs n0/(n + n0) of the log factor (~5/405 here) plus noise
    # of about 0.1/sqrt(400) = 0.005: well within 3 standard errors of the truth
    assert abs(math.log(c.ttft_factor / 1.3)) < 3 * c.ttft_log_se + 0.02
    assert abs(math.log(c.tpot_factor / 0.8)) < 3 * c.tpot_log_se + 0.02
    assert 0.002 < c.ttft_log_se < 0.02 and 0.002 < c.tpot_log_se < 0.02


def test_no_noise_many_points_converges_to_the_factor() -> None:
    cal = fit_calibration(_observations(2000, 1.5, 1.2))
    c = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    assert c.ttft_factor == pytest.approx(1.5, rel=0.01)
    assert c.tpot_factor == pytest.approx(1.2, rel=0.01)


def test_one_point_moves_less_than_many_consistent_points() -> None:
    one = fit_calibration(_observations(1, 1.5, 1.5))
    many = fit_calibration(_observations(24, 1.5, 1.5))
    key = ("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    f1, f24 = one.correction_for(*key), many.correction_for(*key)
    assert 1.0 < f1.ttft_factor < f24.ttft_factor < 1.5
    assert 1.0 < f1.tpot_factor < f24.tpot_factor < 1.5
    # toward no correction when points are few: one point moves 1/(1 + n0) of the way
    n0 = DEFAULT_PRIOR.effective_points()
    assert math.log(f1.ttft_factor) == pytest.approx(math.log(1.5) / (1.0 + n0), rel=1e-6)
    assert f1.ttft_log_se > f24.ttft_log_se


def test_a_single_wild_point_cannot_wreck_the_correction() -> None:
    (o,) = _observations(1, 1.0, 1.0)
    wild = replace(o, ttft_s=o.ttft_s * 100.0, tpot_s=o.tpot_s * 100.0)
    c = fit_calibration([wild]).correction_for(*wild.key)
    # clipped at 2x and shrunk: at most 2^(1/(1 + n0))
    bound = 2.0 ** (1.0 / (1.0 + DEFAULT_PRIOR.effective_points()))
    assert 1.0 < c.ttft_factor <= bound + 1e-12 and c.tpot_factor <= bound + 1e-12
    assert bound < 1.15


def test_one_outlier_among_many_points_moves_the_factor_little() -> None:
    clean = _observations(12, 1.2, 1.1, noise=0.03, seed=3)
    bad = replace(clean[0], ttft_s=clean[0].ttft_s * 10.0, tpot_s=clean[0].tpot_s * 10.0)
    key = clean[0].key
    a = fit_calibration(clean).correction_for(*key)
    b = fit_calibration([bad, *clean[1:]]).correction_for(*key)
    # the Huber weight bounds the outlier's pull: a few percent, not the ~20% a mean
    # of logs would move (log(10)/12)
    assert abs(math.log(b.ttft_factor / a.ttft_factor)) < 0.03
    assert abs(math.log(b.tpot_factor / a.tpot_factor)) < 0.03


def test_coarser_level_fallback() -> None:
    obs = _observations(60, 1.4, 1.2, seed=2)  # vllm, H100, 8B
    cal = fit_calibration(obs)
    own = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    other_model = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-70B", "bf16")
    other_gpu = cal.correction_for("vllm", "A100-SXM-80GB", "Llama-3.1-8B", "bf16")
    other_engine = cal.correction_for("trtllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    assert own.level == LEVEL_GROUP
    assert other_model.level == LEVEL_ENGINE_GPU and other_model.points == 60
    assert other_gpu.level == LEVEL_ENGINE and other_gpu.points == 60
    assert other_engine.level == LEVEL_NONE and other_engine.ttft_factor == 1.0
    assert not other_engine.calibrated and other_engine.points == 0
    # each coarser level is shrunk further toward 1 and less certain
    assert 1.0 < other_gpu.ttft_factor < other_model.ttft_factor < own.ttft_factor < 1.4
    assert own.ttft_log_se < other_model.ttft_log_se < other_gpu.ttft_log_se


def test_a_group_borrows_from_its_siblings() -> None:
    """A group with one point sits near its engine × GPU's other groups, not at 1."""
    siblings = _observations(60, 1.4, 1.4, seed=4, model=M70)
    lone = _observations(1, 1.4, 1.4, seed=5)
    alone = fit_calibration(lone).correction_for(*lone[0].key)
    with_sib = fit_calibration(siblings + lone).correction_for(*lone[0].key)
    assert with_sib.level == LEVEL_GROUP and with_sib.points == 1
    assert with_sib.ttft_factor > alone.ttft_factor
    assert with_sib.ttft_factor > 1.2


def test_document_lists_every_level_with_mape_before_and_after() -> None:
    obs = _observations(30, 1.3, 1.3, noise=0.02) + _observations(10, 1.2, 1.2, model=M70)
    cal = fit_calibration(obs)
    doc = cal.to_document()
    assert doc["points"] == 40 and doc["skipped"] == 0
    assert {(g["model"], g["points"]) for g in doc["groups"]} == {
        ("Llama-3.1-8B", 30),
        ("Llama-3.1-70B", 10),
    }
    for g in doc["groups"]:
        assert g["ttft_mape_after"] < g["ttft_mape_before"]
        assert g["tpot_mape_after"] < g["tpot_mape_before"]
        assert g["ttft_factor"] > 0 and g["ttft_log_se"] > 0
    assert [e["engine"] for e in doc["engines"]] == ["vllm"]
    assert doc["engine_gpus"][0]["points"] == 40
    assert doc["prior"]["effective_points"] == pytest.approx(DEFAULT_PRIOR.effective_points())


def test_moved_beyond_a_dead_band() -> None:
    a = fit_calibration(_observations(40, 1.0, 1.0))
    b = fit_calibration(_observations(40, 1.5, 1.0))
    assert not a.moved_beyond(a, 0.0)
    assert a.moved_beyond(b, 0.05) and b.moved_beyond(a, 0.05)
    assert not a.moved_beyond(b, 0.9)
    # a calibration against none: moved when its factors leave the band
    assert b.moved_beyond(EMPTY_CALIBRATION, 0.05)
    assert not EMPTY_CALIBRATION.moved_beyond(Calibration(), 0.0)


def test_invalid_points_are_skipped_and_counted() -> None:
    key = ("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    cal = calibrate_ratios(
        [key] * 4,
        [0.1, -1.0, float("nan"), 0.2],
        [0.01, 0.01, 0.01, float("inf")],
        [0.1, 0.1, 0.1, 0.1],
        [0.01, 0.01, 0.01, 0.01],
    )
    assert cal.skipped == 3 and cal.points == 1
    empty = calibrate_ratios([key], [0.0], [0.0], [1.0], [1.0])
    assert empty.points == 0 and empty.skipped == 1
    assert empty.correction_for(*key).level == LEVEL_NONE


def test_calibration_is_frozen() -> None:
    cal = fit_calibration(_observations(5, 1.2, 1.2))
    with pytest.raises(FrozenInstanceError):
        cal.skipped = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cal.groups[("x", "y", "z", "w")] = cal.groups[next(iter(cal.groups))]  # type: ignore[index]


# ---------------------------------------------------------------- the model uses it


def _scenario() -> Scenario:
    q = QueryType("chat", 5.0, 1000.0, 200.0, 1.0, 0.05, 0.9, 0.01, task="general")
    return Scenario(
        query_types=(q,),
        models=(M8,),
        gpus=(replace(H100, available=8), replace(A100, available=8)),
        precisions=(BF16,),
        policy=Policy(tp_options=(1, 2), pp_options=(1,)),
    )


def test_calibration_lowers_bstar_and_mu_of_its_group_only() -> None:
    s = _scenario()
    j, g, p, n, m = enumerate_candidates(s)
    base = pair_constants(s, j, g, p, n, m)
    cal = fit_calibration(_observations(200, 1.6, 1.6))  # vllm, H100, 8B, bf16: slower
    slow = pair_constants(s, j, g, p, n, m, calibration=cal)
    on_h100 = g == 0
    assert np.all(slow.bstar[:, on_h100] < base.bstar[:, on_h100])
    assert np.all(slow.mu[:, on_h100] < base.mu[:, on_h100])
    # other GPU: the engine-level fallback applies (shrunk further); never faster
    assert np.all(slow.bstar[:, ~on_h100] <= base.bstar[:, ~on_h100])
    # the SLOs hold for the corrected latencies at B*
    ok = slow.bstar >= 1
    assert np.all(slow.ttft[ok] <= 1.0 + 1e-12) and np.all(slow.tpot[ok] <= 0.05 + 1e-12)
    # the table carries the calibration
    t = candidate_table(s, calibration=cal)
    assert t.calibration is cal


def test_calibrated_constants_equal_slower_slos() -> None:
    """A uniform factor c on both latencies is the same as SLOs divided by c (the
    evaluator's delay_factor): B* and μ agree."""
    s = _scenario()
    j, g, p, n, m = enumerate_candidates(s)
    obs = []
    for gpu in (H100, A100):
        obs += _observations(4000, 1.25, 1.25, gpu=gpu)
    cal = fit_calibration(obs)
    c = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-8B", "bf16").ttft_factor
    c2 = cal.correction_for("vllm", "A100-SXM-80GB", "Llama-3.1-8B", "bf16").ttft_factor
    assert c == pytest.approx(c2, rel=1e-3)
    a = pair_constants(s, j, g, p, n, m, calibration=cal)
    b = pair_constants(s, j, g, p, n, m, delay_factor=c)
    assert np.array_equal(a.bstar, b.bstar)
    assert a.mu == pytest.approx(b.mu, rel=2e-3)


def test_estimate_reports_calibration() -> None:
    case = PerfCase(M8, H100, BF16, tp=1, input_tokens=1000, output_tokens=200, concurrency=4)
    raw = estimate(case)
    assert not raw.calibrated and raw.calibration_points == 0
    cal = fit_calibration(_observations(50, 1.3, 1.2))
    out = estimate(case, cal)
    corr = cal.correction_for("vllm", "H100-SXM", "Llama-3.1-8B", "bf16")
    assert out.calibrated and out.calibration_points == 50
    assert raw.ttft_s is not None and raw.tpot_s is not None and raw.throughput_rps is not None
    assert out.ttft_s == pytest.approx(raw.ttft_s * corr.ttft_factor, rel=1e-12)
    assert out.tpot_s == pytest.approx(raw.tpot_s * corr.tpot_factor, rel=1e-12)
    assert out.throughput_rps is not None and out.throughput_rps < raw.throughput_rps
    # a calibration of another engine leaves it uncalibrated
    trt = estimate(replace(case, engine="trtllm"), cal)
    assert not trt.calibrated and trt.engine == "trtllm"
