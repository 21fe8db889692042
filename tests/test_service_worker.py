"""The solver-process side of the service (app/service/worker.py), run in-process:
a re-plan parses each document once, builds one candidate table and evaluates
the plan once; the analysis and the explanation come from that evaluation. A
background improvement is priced against the published plan, sends a plan to
publish only when it is worth it, and stops when a newer generation arrives."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from app.engine.api import evaluate_documents, normalize_scenario
from app.engine.contracts import SolverOptions
from app.engine.errors import PlanFormatError
from app.engine.model.demo import demo_scenario_document
from app.research.families import FAMILIES
from app.service import worker
from app.service.worker import (
    ImproveJob,
    SolveJob,
    improve_job,
    saving_threshold,
    solve_job,
    worth_publishing,
)


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, calls: Counter[str]) -> None:
    """Wrap `name` wherever an `app` module has imported it, counting calls."""
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("app.") or not hasattr(mod, name):
            continue
        original: Callable[..., Any] = getattr(mod, name)
        if getattr(original, "_counted", False):
            continue

        def wrapper(*args: Any, _f: Callable[..., Any] = original, **kwargs: Any) -> Any:
            calls[name] += 1
            return _f(*args, **kwargs)

        wrapper._counted = True  # type: ignore[attr-defined]
        monkeypatch.setattr(mod, name, wrapper)


@pytest.mark.parametrize("with_current", [False, True])
def test_a_replan_parses_builds_and_evaluates_once(
    monkeypatch: pytest.MonkeyPatch, with_current: bool
) -> None:
    spec = demo_scenario_document()
    current = None
    if with_current:
        first = solve_job(SolveJob(spec, SolverOptions(algorithm="gh"), explain=False))
        current = first.plan
    calls: Counter[str] = Counter()
    for name in ("parse_scenario", "plan_from_document", "candidate_table", "evaluate_plan"):
        _count_calls(monkeypatch, name, calls)
    out = solve_job(
        SolveJob(spec, SolverOptions(algorithm="agh", max_starts=2), current, generation=1)
    )
    assert calls["parse_scenario"] == 1
    assert calls["plan_from_document"] == (1 if with_current else 0)
    assert calls["candidate_table"] == 1
    assert calls["evaluate_plan"] == 1
    assert out.explanation is not None and out.analysis["query_types"]
    assert out.plan["cost"]["total"] == pytest.approx(out.solver["objective"])


def test_a_replan_whose_live_plan_cannot_be_read_starts_cold_and_says_why() -> None:
    """A stored live plan the engine refuses (here a route of 1.5) used to fail every
    re-plan as InvalidScenario until the spec changed: the service froze. A re-plan
    now plans from scratch and says why; a what-if's bad plan stays the caller's
    error."""
    spec = demo_scenario_document()
    live = solve_job(SolveJob(spec, SolverOptions(algorithm="gh"), explain=False)).plan
    live["routing"][0]["fraction"] = 1.5
    out = solve_job(SolveJob(spec, SolverOptions(algorithm="gh"), live, generation=3))
    assert "routing[0].fraction" in out.solver["warm_start_refused"]
    assert out.plan["feasible"] and out.solver["warm_start_used"] is False
    with pytest.raises(PlanFormatError):
        solve_job(SolveJob(spec, SolverOptions(algorithm="gh"), live))


# ------------------------------------------------------------ background improvement


def _improvable() -> dict[str, Any]:
    doc = FAMILIES["accuracy_mix"](7, n_types=4, n_models=2)
    doc["policy"]["change_cost_per_gpu"] = 0.005
    return normalize_scenario(doc)


def _first_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """A re-plan of one AGH start without the polish (its budget is below the
    polish's minimum)."""
    out = solve_job(SolveJob(spec, SolverOptions(time_budget_s=0.2, max_starts=1), generation=1))
    return out.plan


def _improve(
    spec: dict[str, Any], published: dict[str, Any], fraction: float, usd: float = 0.0
) -> ImproveJob:
    # The deterministic search ends in ~1 s; the budget is headroom on a loaded machine.
    options = SolverOptions(time_budget_s=20.0, seed=1, max_starts=1)
    return ImproveJob(SolveJob(spec, options, published, generation=1), usd, fraction)


def test_an_improvement_is_priced_against_the_published_plan() -> None:
    spec = _improvable()
    published = _first_plan(spec)
    res = improve_job(_improve(spec, published, 0.01))
    assert res.termination != "stopped" and res.feasible and res.baseline_feasible
    baseline = evaluate_documents(spec, published, published)["objective"]
    assert res.baseline == pytest.approx(baseline)
    assert res.threshold == pytest.approx(0.01 * res.baseline)
    assert res.saving > res.threshold
    out = res.outcome
    assert out is not None and out.explanation is not None and out.analysis["query_types"]
    assert out.solver["warm_start_used"] is True
    again = evaluate_documents(spec, out.plan, published)
    assert again["objective"] == pytest.approx(res.objective) == out.plan["cost"]["total"]
    assert out.plan["cost"]["change_cost"] > 0  # the change from the published plan counts


def test_an_improvement_that_saves_too_little_sends_nothing_to_publish() -> None:
    spec = _improvable()
    res = improve_job(_improve(spec, _first_plan(spec), 0.01, usd=100.0))
    assert res.outcome is None and 0 < res.saving <= res.threshold == 100.0
    # The demo's first plan is already optimal: nothing cheaper, nothing sent.
    demo = normalize_scenario(demo_scenario_document())
    res = improve_job(_improve(demo, _first_plan(demo), 0.0))
    assert res.outcome is None and res.saving <= 1e-9


class _FlipsAfter:
    """A generation counter that reads 1 for the first `reads` reads, then 2: a
    newer generation arrives while the improvement is searching."""

    def __init__(self, reads: int) -> None:
        self.reads = reads

    @property
    def value(self) -> int:
        self.reads -= 1
        return 1 if self.reads >= 0 else 2


def test_a_newer_generation_stops_an_improvement_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _improvable()
    published = _first_plan(spec)
    # A whole run reads the counter ~420 times: it stops well inside the search.
    monkeypatch.setattr(worker, "_LATEST", _FlipsAfter(100))
    res = improve_job(_improve(spec, published, 0.0))
    assert res.termination == "stopped"
    assert res.outcome is None  # never published, however good
    assert res.objective <= res.baseline + 1e-9  # the search held its warm start


@pytest.mark.parametrize(
    ("baseline_feasible", "feasible", "saving", "termination", "worth"),
    [
        (True, True, 2.0, "deadline", True),
        (True, True, 1.0, "converged", False),  # not more than the threshold
        (True, True, -5.0, "deadline", False),  # worse
        (True, False, 9.0, "deadline", False),  # infeasible: never
        (False, False, 9.0, "deadline", False),
        (False, True, -5.0, "deadline", True),  # fixes what the live plan breaks
        (True, True, 9.0, "stopped", False),  # a newer generation waits
    ],
)
def test_worth_publishing(
    baseline_feasible: bool, feasible: bool, saving: float, termination: str, worth: bool
) -> None:
    assert worth_publishing(baseline_feasible, feasible, saving, 1.0, termination) is worth
    assert saving_threshold(200.0, 1.0, 0.01) == 2.0
    assert saving_threshold(50.0, 1.0, 0.01) == 1.0
