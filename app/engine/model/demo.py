"""The built-in demo scenario: what the service plans for when started on an empty
database, and what `llm-allocator demo-scenario` prints.

Query types `code` and `conversation` are calibrated on the Azure LLM inference
traces (token means from the 2023 traces shipped in `app/data/trace_profiles.json`;
request rates at the 2024 traces' fleet-level means, 27.8 and 45.1 req/s). The
other four (summarization, translation, math, long-context RAG) are typical
shapes with rates of the same order. Models, GPUs and precisions come from the
built-in catalog with modest availability, so the plan is a real heterogeneous
trade-off rather than "all on the cheapest GPU".
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

from app.engine.model.catalog import DEFAULT_PRECISIONS, catalog_gpus, catalog_models
from app.engine.model.domain import Policy, QueryType, Scenario
from app.engine.model.schemas import scenario_to_document

DEMO_MODELS = (
    "Llama-3.1-8B",
    "Llama-3.1-70B",
    "Qwen2.5-7B",
    "Qwen2.5-14B",
    "Qwen2.5-32B",
    "Qwen2.5-72B",
    "Gemma-2-27B",
    "Mixtral-8x7B",
)

DEMO_AVAILABILITY = {
    "H200-SXM": 8,
    "H100-SXM": 32,
    "A100-SXM-80GB": 32,
    "L40S": 24,
    "L4": 32,
    "RTX-4090": 16,
}


@cache
def trace_profiles() -> dict[str, Any]:
    text = resources.files("app.data").joinpath("trace_profiles.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# id, task, rate (req/s), input and output tokens (None: the trace's means), TTFT
# and TPOT SLOs (s), max error rate, unmet penalty ($/request), max unmet share,
# e2e SLO (s) or None.
_TYPES: tuple[tuple[str, str, float, int | None, int | None, float, float, float, float,
                    float, float | None], ...] = (
    ("conversation", "general", 45.1, None, None, 1.0, 0.06, 0.25, 0.01, 0.0, None),
    ("code", "code", 27.8, None, None, 0.8, 0.04, 0.20, 0.01, 0.0, None),
    ("summarization", "general", 8.0, 3000, 250, 3.0, 0.08, 0.30, 0.02, 0.05, None),
    ("translation", "general", 6.0, 400, 400, 1.0, 0.05, 0.30, 0.01, 0.05, None),
    ("math", "math_easy", 3.0, 300, 600, 2.0, 0.06, 0.10, 0.05, 0.0, None),
    ("rag-long-context", "general", 2.0, 12000, 300, 4.0, 0.08, 0.22, 0.05, 0.0, 30.0),
)  # fmt: skip
_TRACE_OF = {"conversation": "conv", "code": "code"}


def demo_query_types() -> tuple[QueryType, ...]:
    """The demo's six query types; `code` and `conversation` take their token means
    from the Azure traces."""
    traces = trace_profiles()["traces"]
    out = []
    for qid, task, rate, h, f, ttft, tpot, eps, phi, zeta, e2e in _TYPES:
        trace = traces.get(_TRACE_OF.get(qid, ""), {})
        out.append(
            QueryType(
                id=qid,
                task=task,
                arrival_rate=rate,
                input_tokens=h if h is not None else round(trace["input_tokens_mean"]),
                output_tokens=f if f is not None else round(trace["output_tokens_mean"]),
                ttft_s=ttft,
                tpot_s=tpot,
                max_error_rate=eps,
                unmet_penalty=phi,
                max_unmet_fraction=zeta,
                e2e_s=e2e,
            )
        )
    return tuple(out)


def demo_scenario() -> Scenario:
    models = tuple(m for m in catalog_models() if m.id in DEMO_MODELS)
    gpus = tuple(
        replace(g, available=DEMO_AVAILABILITY[g.id])
        for g in catalog_gpus()
        if g.id in DEMO_AVAILABILITY
    )
    return Scenario(
        query_types=demo_query_types(),
        models=models,
        gpus=gpus,
        precisions=DEFAULT_PRECISIONS,
        policy=Policy(horizon_h=1.0, max_utilization=0.8, change_cost_per_gpu=0.5),
    )


def demo_scenario_document() -> dict[str, Any]:
    return scenario_to_document(demo_scenario())
