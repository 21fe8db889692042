"""Issue #10's acceptance case: on the demo, a fleet whose observed TPOT runs 1.3x
the model's gets, once calibrated, a plan that meets the SLOs under the evaluator
with calibrated latencies, where the uncalibrated plan does not."""

from __future__ import annotations

from dataclasses import replace

from app.engine.model.demo import demo_scenario
from app.engine.perf.calibration import LatencyObservation, fit_calibration
from app.engine.perf.predict import PerfCase, estimate
from app.engine.plan.candidates import candidate_table
from app.engine.plan.evaluate import evaluate_plan
from app.engine.solvers.solve import solve


def test_a_calibrated_plan_holds_where_the_uncalibrated_one_does_not() -> None:
    s = demo_scenario()
    uncalibrated = solve(s, algorithm="agh", max_starts=4).plan
    # What the fleet measured: every deployment of the plan, and a sample of the
    # other candidates, at several concurrencies, with TPOT 1.3x the model's.
    table = candidate_table(s)
    sample = sorted(
        {table.index[d.id] for d in uncalibrated.deployments} | set(range(0, table.size, 17))
    )
    observations = []
    for d in sample:
        dep = table.deployment(d, 1)
        model = next(m for m in s.models if m.id == dep.model)
        gpu = next(g for g in s.gpus if g.id == dep.gpu)
        prec = next(p for p in s.precisions if p.id == dep.precision)
        for conc in (1, 4, 16):
            p = estimate(PerfCase(model, gpu, prec, dep.tp, dep.pp, 1024, 256, conc))
            if p.error is None and p.ttft_s and p.tpot_s:
                observations.append(
                    LatencyObservation(
                        "vllm", model, gpu, prec, dep.tp, dep.pp, 1024, 256, conc,
                        p.ttft_s, 1.3 * p.tpot_s,
                    )
                )  # fmt: skip
    calibration = fit_calibration(observations)
    used = {(d.gpu, d.model, d.precision) for d in uncalibrated.deployments}
    for gpu_id, model_id, prec_id in used:
        c = calibration.correction_for("vllm", gpu_id, model_id, prec_id)
        assert 1.2 < c.tpot_factor < 1.35, (gpu_id, model_id, prec_id, c)
    calibrated_s = replace(s, calibration=calibration)

    before = evaluate_plan(calibrated_s, uncalibrated)
    assert not before.feasible
    assert {v.constraint for v in before.violations} & {"capacity", "slo"}

    calibrated = solve(calibrated_s, algorithm="agh", max_starts=4).plan
    after = evaluate_plan(calibrated_s, calibrated)
    assert after.feasible, after.violations
