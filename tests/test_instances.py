"""The seeded instance generator (app/engine/instances.py)."""

from __future__ import annotations

import pytest

from app.engine.model.catalog import catalog_gpu
from app.engine.model.domain import Scenario
from app.engine.model.schemas import parse_scenario, scenario_to_document
from app.research.instances import TIER_GPUS, VARIANTS, generate, tp_bound_instance


def tiers(s: Scenario) -> int:
    """Supported (GPU type, precision) pairs."""
    return sum(p.supported_on(g) for g in s.gpus for p in s.precisions)


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_same_instance(variant: str) -> None:
    assert generate(4, 5, 10, 17, variant) == generate(4, 5, 10, 17, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_different_seeds_differ(variant: str) -> None:
    a, b = generate(4, 5, 10, 1, variant), generate(4, 5, 10, 2, variant)
    assert [q.arrival_rate for q in a.query_types] != [q.arrival_rate for q in b.query_types]


@pytest.mark.parametrize(
    ("n_types", "n_models", "n_tiers", "n_gpus", "precisions"),
    [
        (1, 1, 2, 1, ("bf16", "int8")),
        (6, 6, 10, 5, ("bf16", "int8")),
        (3, 13, 4, 2, ("bf16", "int8")),
        (20, 20, 20, 10, ("bf16", "int8")),
        (8, 4, 24, 8, ("bf16", "int8", "int4")),
        (2, 2, 5, 5, ("bf16",)),
        (2, 2, 12, 6, ("bf16", "int8")),
    ],
)
def test_sizes(
    n_types: int, n_models: int, n_tiers: int, n_gpus: int, precisions: tuple[str, ...]
) -> None:
    s = generate(n_types, n_models, n_tiers, seed=3)
    assert len(s.query_types) == n_types
    assert len(s.models) == n_models
    assert [g.id for g in s.gpus] == list(TIER_GPUS[:n_gpus])
    assert tuple(p.id for p in s.precisions) == precisions
    assert tiers(s) == n_tiers


def test_ids_are_unique_and_the_instance_is_a_valid_document() -> None:
    s = generate(20, 20, 20, seed=5, variant="tight_budget")
    for items in (s.query_types, s.models, s.gpus, s.precisions):
        ids = [x.id for x in items]
        assert len(ids) == len(set(ids))
    assert parse_scenario(scenario_to_document(s)) == s


def test_models_beyond_the_catalog_are_seeded_variants() -> None:
    s = generate(1, 15, 2, seed=9)
    assert all(m.params_b <= 80 for m in s.models)  # no multi-node 405B
    extra = [m for m in s.models if "-ft" in m.id]
    assert len(extra) == 15 - 12
    assert all(0.0 <= r <= 0.95 for m in extra for r in m.error_rates.values())


def test_loose_variant() -> None:
    s = generate(4, 4, 6, seed=2, variant="loose")
    assert s.policy.budget is None
    assert s.policy.storage_capacity_gb is None
    assert all(g.available == 64 for g in s.gpus)
    assert all(q.max_unmet_fraction == 0.0 for q in s.query_types)
    for g in s.gpus:
        ref = catalog_gpu(g.id)
        assert ref is not None and g.price_per_hour == ref.price_per_hour


def test_tight_budget_variant() -> None:
    for seed in range(5):
        s = generate(4, 4, 6, seed=seed, variant="tight_budget")
        assert s.policy.budget is not None and s.policy.budget > 0
        assert all(0.1 <= q.max_unmet_fraction <= 0.3 for q in s.query_types)
        assert all(q.max_unmet_fraction > 0 for q in s.query_types)


def test_tight_availability_variant() -> None:
    loose = generate(5, 5, 10, seed=4, variant="loose")
    tight = generate(5, 5, 10, seed=4, variant="tight_availability")
    assert [g.id for g in tight.gpus] == [g.id for g in loose.gpus]
    assert all(2 <= g.available < 64 for g in tight.gpus)
    assert tight.query_types == loose.query_types and tight.models == loose.models
    assert tight.policy.budget is None


def test_tight_storage_variant() -> None:
    s = generate(5, 5, 10, seed=4, variant="tight_storage")
    assert s.policy.storage_capacity_gb is not None and s.policy.storage_capacity_gb > 0
    assert s.policy.storage_price_per_gb_h == 0.01
    assert s.policy.budget is None


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(ValueError):
        generate(2, 2, 2, seed=0, variant="cosy")


@pytest.mark.parametrize("n_tiers", [13, 26])
def test_unreachable_tier_counts_are_not_silently_shrunk(n_tiers: int) -> None:
    try:
        s = generate(1, 1, n_tiers, seed=0)
    except ValueError:
        return
    assert tiers(s) == n_tiers


def test_tp_bound_instance_shape() -> None:
    s = tp_bound_instance()
    assert [q.id for q in s.query_types] == ["bulk", "interactive"]
    assert len(s.models) == 1 and len(s.gpus) == 1
    assert s.policy.storage_capacity_gb == 17.0
