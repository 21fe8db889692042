"""The fixed benchmark sets over the instance families (`families.FAMILIES`): the
instances `bench/compare.py` and `bench/families_baseline.py` run, and the
timing set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.research.families import FAMILIES, Document


@dataclass(frozen=True)
class Instance:
    """One member of a fixed set. `expect`: "feasible" or "infeasible" when proven
    by construction (see the family's docstring), None when not proven."""

    family: str
    seed: int
    params: tuple[tuple[str, Any], ...]
    expect: str | None = None

    @property
    def name(self) -> str:
        parts = [f"s{self.seed}"] + [
            f"{k}" if v is True else f"{k}={v}" for k, v in self.params if v is not False
        ]
        return f"{self.family}/" + ",".join(parts)

    def document(self) -> Document:
        return FAMILIES[self.family](self.seed, **dict(self.params))


def _inst(family: str, seed: int, expect: str | None = None, **params: Any) -> Instance:
    return Instance(family, seed, tuple(params.items()), expect)


def benchmark_set() -> list[Instance]:
    """The fixed benchmark: 20 instances, 4-50 query types, every family but
    `scale`. `expect` is what is proven without a solver: by construction
    (`scarce`) or by `certify`; None = not proven (the MILP decides). The budget
    instances use the first seed (from 1, or from 4 for a second instance of the
    same family) on which `budget_binding_proof` shows the budget binds."""
    return [
        _inst("single_model", 0, "feasible", n_types=4, n_gpus=4),
        _inst("single_model", 1, "feasible", n_types=8, n_gpus=3),
        _inst("single_model", 2, "feasible", n_types=12, n_gpus=5),
        _inst("single_model", 3, "feasible", n_types=20, n_gpus=4),
        _inst("scarce", 0, "feasible", n_types=6, n_models=3),
        _inst("scarce", 1, "feasible", n_types=10, n_models=4),
        _inst("scarce", 2, "feasible", n_types=16, n_models=4),
        _inst("scarce", 4, "feasible", n_types=8, n_models=3, budget=True),
        _inst("scarce", 11, "feasible", n_types=12, n_models=4, budget=True),
        _inst("scarce", 5, "infeasible", n_types=8, n_models=3, short=True),
        _inst("budget_binding", 1, "feasible", n_types=6, n_models=3),
        _inst("budget_binding", 4, "feasible", n_types=10, n_models=4),
        _inst("budget_binding", 2, "feasible", n_types=16, n_models=4),
        _inst("budget_binding", 3, "infeasible", n_types=8, n_models=3, short=True),
        _inst("accuracy_mix", 0, "feasible", n_types=6, n_models=2),
        _inst("accuracy_mix", 1, "feasible", n_types=10, n_models=3),
        _inst("accuracy_mix", 2, None, n_types=16, n_models=3),
        _inst("many_types", 0, "feasible", n_types=20, n_models=3),
        _inst("many_types", 1, None, n_types=35, n_models=3),
        _inst("many_types", 2, None, n_types=50, n_models=4),
    ]


def timing_set() -> list[Instance]:
    """`scale` instances (100-200 types), for timing only."""
    return [
        _inst("scale", 0, None, n_types=100),
        _inst("scale", 1, None, n_types=200),
    ]
