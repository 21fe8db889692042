"""The allocation plan: what every solver returns and the evaluator checks.

A plan holds decisions only (deployments with replica counts, routing fractions,
unmet fractions). Costs, utilizations and feasibility are never stored in it: they
are recomputed by `app.engine.plan.evaluate.evaluate_plan` from scenario + plan, and the
JSON plan document (`plan_document`) is assembled from both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.engine.errors import PlanFormatError
from app.engine.model.ids import id_problem


def deployment_id(model: str, gpu: str, precision: str, tp: int, pp: int) -> str:
    """Stable id of a deployment candidate, so plans diff cleanly across re-plans."""
    return f"{model}@{gpu}/{precision}/tp{tp}pp{pp}"


@dataclass(frozen=True, slots=True)
class Deployment:
    model: str
    gpu: str
    precision: str
    tp: int
    pp: int
    replicas: int

    @property
    def id(self) -> str:
        return deployment_id(self.model, self.gpu, self.precision, self.tp, self.pp)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas


@dataclass(frozen=True, slots=True)
class Route:
    query_type: str
    deployment: str
    fraction: float


@dataclass(frozen=True, slots=True)
class Plan:
    deployments: tuple[Deployment, ...] = ()
    routing: tuple[Route, ...] = ()
    unmet: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unmet", MappingProxyType(dict(self.unmet)))

    @staticmethod
    def build(
        deployments: Iterable[Deployment],
        routing: Iterable[Route],
        unmet: Mapping[str, float] | None = None,
    ) -> Plan:
        """Canonical form: deployments with replicas > 0 sorted by id, routes with a
        positive fraction sorted, unmet entries > 0 only."""
        deps = sorted((d for d in deployments if d.replicas > 0), key=lambda d: d.id)
        routes = sorted(
            (
                Route(r.query_type, r.deployment, _snap(r.fraction))
                for r in routing
                if r.fraction > 0.0
            ),
            key=lambda r: (r.query_type, r.deployment),
        )
        um = {k: _snap(v) for k, v in sorted((unmet or {}).items()) if v > 0.0}
        return Plan(tuple(deps), tuple(routes), um)

    def deployment_map(self) -> dict[str, Deployment]:
        return {d.id: d for d in self.deployments}

    @property
    def total_gpus(self) -> int:
        return sum(d.gpus for d in self.deployments)


def plan_of(doc: Any) -> Any:
    """A plan document given as itself or as a solve's answer (its `plan`): what
    the CLI's plan files and the API's plan fields accept."""
    if isinstance(doc, Mapping) and "plan" in doc and "deployments" not in doc:
        return doc["plan"]
    return doc


def plan_from_document(doc: Mapping[str, Any]) -> Plan:
    """Read the decision part of a plan document (extra keys such as cost or
    utilization are ignored: they are outputs, recomputed by the evaluator).

    Raises `PlanFormatError` naming the offending field."""
    if not isinstance(doc, Mapping):
        raise PlanFormatError("plan", "must be an object")
    if "deployments" not in doc:
        keys = ", ".join(sorted(str(k) for k in doc)[:6]) or "none"
        hint = " (this looks like a scenario)" if "query_types" in doc else ""
        raise PlanFormatError(
            "plan.deployments",
            f"is required: a plan document has deployments, routing and unmet; "
            f"this one has keys {keys}{hint}",
        )
    deps: list[Deployment] = []
    for k, d in enumerate(doc.get("deployments") or []):
        loc = f"deployments[{k}]"
        try:
            dep = Deployment(
                model=_str(d, "model", loc),
                gpu=_str(d, "gpu", loc),
                precision=_str(d, "precision", loc),
                tp=_int(d, "tp", loc),
                pp=_int(d, "pp", loc),
                replicas=_int(d, "replicas", loc),
            )
        except (TypeError, AttributeError) as exc:
            raise PlanFormatError(loc, "must be an object") from exc
        if dep.replicas < 0 or dep.tp < 1 or dep.pp < 1:
            raise PlanFormatError(loc, "tp, pp must be >= 1 and replicas >= 0")
        if "id" in d and d["id"] != dep.id:
            raise PlanFormatError(f"{loc}.id", f"must be {dep.id!r} for this candidate")
        deps.append(dep)
    routes: list[Route] = []
    for k, r in enumerate(doc.get("routing") or []):
        loc = f"routing[{k}]"
        frac = _fraction(r, loc)
        routes.append(Route(_str(r, "query_type", loc), _str(r, "deployment", loc), frac))
    unmet: dict[str, float] = {}
    for k, u in enumerate(doc.get("unmet") or []):
        loc = f"unmet[{k}]"
        frac = _fraction(u, loc)
        unmet[_str(u, "query_type", loc)] = frac
    ids = [d.id for d in deps]
    if len(ids) != len(set(ids)):
        raise PlanFormatError(
            "deployments", "duplicate deployment (same model/gpu/precision/tp/pp)"
        )
    return Plan(tuple(deps), tuple(routes), unmet)


FRACTION_TOLERANCE = 1e-9  # a solver's feasibility tolerance: 1 + 1e-12 is 1


def _snap(frac: float) -> float:
    """1 for a fraction above 1 by no more than FRACTION_TOLERANCE (float rounding in
    a sum of shares); anything else as it is (an overshoot beyond is a plan error the
    evaluator reports, not something to hide)."""
    return 1.0 if 1.0 < frac <= 1.0 + FRACTION_TOLERANCE else frac


def _fraction(obj: Any, loc: str) -> float:
    """A fraction within [0, 1]; an overshoot within FRACTION_TOLERANCE (what a
    solver's rounding leaves, e.g. in a plan stored by an older version) reads as
    the bound, anything beyond is an error naming the field."""
    frac = _num(obj, "fraction", loc)
    if not -FRACTION_TOLERANCE <= frac <= 1.0 + FRACTION_TOLERANCE:
        raise PlanFormatError(f"{loc}.fraction", f"must be within [0, 1] (got {frac!r})")
    return min(max(frac, 0.0), 1.0)


def _field(obj: Any, key: str, loc: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise PlanFormatError(f"{loc}.{key}", "is required")
    return obj[key]


def _str(obj: Any, key: str, loc: str) -> str:
    v = _field(obj, key, loc)
    if not isinstance(v, str):
        raise PlanFormatError(f"{loc}.{key}", "must be a string")
    problem = id_problem(v)
    if problem is not None:
        raise PlanFormatError(f"{loc}.{key}", problem)
    return v


def _int(obj: Any, key: str, loc: str) -> int:
    v = _field(obj, key, loc)
    if isinstance(v, bool) or not isinstance(v, int):
        raise PlanFormatError(f"{loc}.{key}", "must be an integer")
    return v


def _num(obj: Any, key: str, loc: str) -> float:
    v = _field(obj, key, loc)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise PlanFormatError(f"{loc}.{key}", "must be a finite number")
    return float(v)
