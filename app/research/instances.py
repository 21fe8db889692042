"""Seeded instance generator for benchmarks and property tests, calibrated on the
shared data: query-type shapes from the Azure traces (code: long prompts, short
outputs; conversation: ~1.1k in / ~200 out) and typical task shapes around them,
models from the catalog (architectures and measured error rates; beyond the 13
catalog models, seeded variants of them with perturbed quality, as distinct
fine-tunes of the same base would be), GPU tiers from the catalog with its
prices.

Size is (types, models, tiers) as in the paper; a tier is a (GPU type,
precision) pair: 10 tiers = 5 GPUs x {bf16, int8}, 20 = 10 x {bf16, int8},
24 = 8 x {bf16, int8, int4}; other counts take the first GPUs of `TIER_GPUS`.

Variants:
* `loose`: plentiful GPUs (64 per type), no budget;
* `tight_availability`: each GPU type has about half of what it would take to
  serve everything on it alone, so plans must spread across types;
* `tight_budget`: a budget below what serving everything costs (about 85% of a
  GH plan's spend on the loose variant), with some demand allowed to go unmet
  (max_unmet_fraction 0.1–0.3) at a penalty;
* `tight_storage`: a model store that holds only about two deployments' weights
  (1.05x the largest deployment of GH's loose plan) and costs $0.01/GB-h, so types
  must share few deployments — the case TP upgrades (M3) exist for.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from app.engine.model.catalog import (
    DEFAULT_PRECISIONS,
    catalog_gpu,
    catalog_gpus,
    catalog_model,
    catalog_models,
)
from app.engine.model.demo import trace_profiles
from app.engine.model.domain import GPU, Model, Policy, Precision, QueryType, Scenario
from app.engine.perf.predict import predict
from app.engine.plan.candidates import candidate_table
from app.engine.solvers.greedy import greedy

TIER_GPUS = (
    "RTX-4090",
    "A100-SXM-80GB",
    "H100-SXM",
    "L40S",
    "RTX-A6000",
    "L4",
    "A10G",
    "H100-PCIe",
    "A100-SXM-40GB",
    "H200-SXM",
    "MI300X",
    "A100-PCIe-80GB",
)

# (task, input tokens, output tokens, ttft_s, tpot_s, max_error_rate) templates; the
# first two are the Azure traces' means, filled in at run time.
_TEMPLATES = (
    ("code", None, None, 1.0, 0.05, 0.25),
    ("general", None, None, 1.5, 0.08, 0.30),
    ("general", 3000, 250, 3.0, 0.10, 0.32),  # summarization
    ("general", 400, 400, 1.5, 0.07, 0.33),  # translation
    ("math_easy", 300, 600, 2.5, 0.08, 0.12),  # math
    ("general", 8000, 300, 5.0, 0.10, 0.28),  # long-context RAG
)

VARIANTS = ("loose", "tight_availability", "tight_budget", "tight_storage")


def _precisions(n_tiers: int) -> tuple[tuple[Precision, ...], int]:
    by_id = {p.id: p for p in DEFAULT_PRECISIONS}
    if n_tiers % 3 == 0 and n_tiers // 3 <= len(TIER_GPUS) and n_tiers > 20:
        return (by_id["bf16"], by_id["int8"], by_id["int4"]), n_tiers // 3
    if n_tiers % 2 == 0:
        return (by_id["bf16"], by_id["int8"]), n_tiers // 2
    return (by_id["bf16"],), n_tiers


def _models(n: int, rng: np.random.Generator) -> tuple[Model, ...]:
    base = [m for m in catalog_models() if m.params_b <= 80]  # keep 405B out: 1 node max
    out = list(base[:n])
    k = 0
    while len(out) < n:
        src = base[k % len(base)]
        k += 1
        scale = rng.uniform(0.85, 1.2)
        rates = {t: float(min(0.95, r * scale)) for t, r in src.error_rates.items()}
        out.append(replace(src, id=f"{src.id}-ft{k}", error_rates=rates))
    return tuple(out)


def _query_types(n: int, rng: np.random.Generator) -> tuple[QueryType, ...]:
    traces = trace_profiles()["traces"]
    means = {
        0: (traces["code"]["input_tokens_mean"], traces["code"]["output_tokens_mean"]),
        1: (traces["conv"]["input_tokens_mean"], traces["conv"]["output_tokens_mean"]),
    }
    out = []
    for i in range(n):
        t = i % len(_TEMPLATES)
        task, h, f, ttft, tpot, eps = _TEMPLATES[t]
        if h is None:
            h, f = means[t]
        jitter = rng.uniform(0.7, 1.3, size=4)
        out.append(
            QueryType(
                id=f"q{i:02d}-{task}",
                task=task,
                # paper: 1,000–25,000 queries/hour per type
                arrival_rate=float(round(rng.uniform(1000, 25000) / 3600.0, 3)),
                input_tokens=float(round(h * jitter[0])),
                output_tokens=float(max(4, round(f * jitter[1]))),
                ttft_s=float(round(ttft * jitter[2], 3)),
                tpot_s=float(round(tpot * jitter[3], 4)),
                max_error_rate=float(round(eps * rng.uniform(0.9, 1.15), 3)),
                unmet_penalty=0.02,
                max_unmet_fraction=0.0,
            )
        )
    return tuple(out)


def generate(
    n_types: int, n_models: int, n_tiers: int, seed: int = 0, variant: str = "loose"
) -> Scenario:
    """A seeded instance of the given size and variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    rng = np.random.default_rng(seed)
    precs, n_gpus = _precisions(n_tiers)
    if n_gpus > len(TIER_GPUS) or n_tiers < 1:
        raise ValueError(
            f"cannot make {n_tiers} tiers from {len(TIER_GPUS)} GPU types x {len(precs)} precisions"
        )
    catalog = {g.id: g for g in catalog_gpus()}
    gpus: tuple[GPU, ...] = tuple(replace(catalog[gid], available=64) for gid in TIER_GPUS[:n_gpus])
    scenario = Scenario(
        query_types=_query_types(n_types, rng),
        models=_models(n_models, rng),
        gpus=gpus,
        precisions=precs,
        policy=Policy(horizon_h=1.0, max_utilization=0.8),
    )
    if variant == "loose":
        return scenario
    # Both tight variants are derived from what GH needs on the loose instance.

    table = candidate_table(scenario)
    st = greedy(table)
    if variant == "tight_availability":
        # Per GPU type: what serving every type on its cheapest candidate on that
        # GPU would take, halved; at least one 8-GPU node's worth where any is used.
        need = np.zeros(len(gpus))
        for gi in range(len(gpus)):
            on = table.gpu == gi
            if not on.any():
                continue
            with np.errstate(invalid="ignore"):
                c = np.where(
                    table.feasible[:, on],
                    table.load[:, on] / 0.8 * table.gpus_per_replica[on],
                    np.inf,
                ).min(axis=1)
            need[gi] = float(np.where(np.isfinite(c), c, 0).sum())
        avail = np.maximum(2, np.ceil(need * rng.uniform(0.35, 0.6, size=len(gpus)))).astype(int)
        gpus = tuple(replace(g, available=int(a)) for g, a in zip(gpus, avail, strict=True))
        return replace(scenario, gpus=gpus)
    if variant == "tight_storage":
        used = table.weight_gb[st.r > 0]
        cap = float(round(1.05 * used.max(), 1)) if used.size else 100.0
        return replace(
            scenario,
            policy=replace(scenario.policy, storage_capacity_gb=cap, storage_price_per_gb_h=0.01),
        )
    spend = st.spend
    qts = tuple(
        replace(q, max_unmet_fraction=float(round(rng.uniform(0.1, 0.3), 2)))
        for q in scenario.query_types
    )
    return replace(
        scenario,
        query_types=qts,
        policy=replace(scenario.policy, budget=float(round(0.85 * spend, 2))),
    )


def tp_bound_instance() -> Scenario:
    """A hand-built instance where the TP upgrade (M3) decides feasibility for GH:
    one model copy fits in storage; the high-rate type is cheapest at TP1, the
    low-rate interactive type has a TPOT SLO that only TP >= 2 meets. GH serves the
    high-rate type first, so without M3 the second type finds no capacity it can
    use and no room to open a deployment. The SLO and rates are derived from the
    performance model (so the instance keeps its shape when the model is
    recalibrated): TPOT SLO halfway between TP1's and TP2's TPOT at concurrency 1;
    the bulk rate fills 70% of one TP1 replica."""

    model = catalog_model("Llama-3.1-8B")
    gpu = catalog_gpu("L40S")
    assert model is not None and gpu is not None
    bf16 = next(p for p in DEFAULT_PRECISIONS if p.id == "bf16")
    tp1 = predict(model, gpu, bf16, 1, 1, 1000, 200, 1)
    tp2 = predict(model, gpu, bf16, 2, 1, 1000, 200, 1)
    tpot_slo = round(float(np.sqrt(tp1["tpot_s"] * tp2["tpot_s"])), 4)
    bulk = QueryType("bulk", 1.0, 1000, 200, 3.0, 0.08, 0.4, 0.02, task="general")
    scenario = Scenario(
        query_types=(
            bulk,
            QueryType("interactive", 0.2, 1000, 200, 1.0, tpot_slo, 0.4, 0.02, task="general"),
        ),
        models=(model,),
        gpus=(replace(gpu, available=16),),
        precisions=(bf16,),
        policy=Policy(storage_capacity_gb=17.0, storage_price_per_gb_h=0.01),
    )

    table = candidate_table(scenario)
    k = table.index["Llama-3.1-8B@L40S/bf16/tp1pp1"]
    rate = round(0.7 * 0.8 * float(table.pairs.mu[0, k]), 3)
    return replace(
        scenario, query_types=(replace(bulk, arrival_rate=rate), scenario.query_types[1])
    )
