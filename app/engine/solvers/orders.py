"""Orderings of query types: the order GH serves them in (phase 2) and the
deterministic starts of AGH's multi-start."""

from __future__ import annotations

import numpy as np

from app.engine.plan.candidates import CandidateTable


def type_order(
    table: CandidateTable, how: str, rng: np.random.Generator | None = None
) -> list[int]:
    """Orderings of query types for GH's phase 2 (and AGH's multi-start)."""
    I = len(table.arrival)
    idx = np.arange(I)
    if how == "lambda_desc":
        return list(np.lexsort((idx, -table.arrival)))
    if how == "lambda_asc":
        return list(np.lexsort((idx, table.arrival)))
    if how == "eps_asc":
        return list(np.lexsort((idx, table.max_error)))
    if how == "eps_desc":
        return list(np.lexsort((idx, -table.max_error)))
    if how in ("footprint_desc", "footprint_asc"):
        # GPU-hours the type needs on its cheapest feasible candidate.
        with np.errstate(invalid="ignore"):
            need = np.where(table.feasible, table.load * table.replica_cost, np.inf).min(
                axis=1, initial=np.inf
            )
        need = np.where(np.isfinite(need), need, 0.0)
        return list(np.lexsort((idx, -need if how == "footprint_desc" else need)))
    if how == "scarcity":
        # Types with the fewest feasible candidates first.
        return list(np.lexsort((idx, table.feasible.sum(axis=1))))
    if how == "random":
        assert rng is not None
        return list(rng.permutation(I))
    raise ValueError(f"unknown ordering {how!r}")
