"""The solver-process side of the service (app/service/worker.py), run in-process:
a re-plan parses each document once, builds one candidate table and evaluates
the plan once; the analysis and the explanation come from that evaluation."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from app.engine.contracts import SolverOptions
from app.engine.model.demo import demo_scenario_document
from app.service.worker import SolveJob, solve_job


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
