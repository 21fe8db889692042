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


def demo_query_types() -> tuple[QueryType, ...]:
    traces = trace_profiles()["traces"]
    code, conv = traces["code"], traces["conv"]
    return (
        QueryType(
            id="conversation",
            task="general",
            arrival_rate=45.1,
            input_tokens=round(conv["input_tokens_mean"]),
            output_tokens=round(conv["output_tokens_mean"]),
            ttft_s=1.0,
            tpot_s=0.06,
            max_error_rate=0.25,
            unmet_penalty=0.01,
            max_unmet_fraction=0.0,
        ),
        QueryType(
            id="code",
            task="code",
            arrival_rate=27.8,
            input_tokens=round(code["input_tokens_mean"]),
            output_tokens=round(code["output_tokens_mean"]),
            ttft_s=0.8,
            tpot_s=0.04,
            max_error_rate=0.20,
            unmet_penalty=0.01,
            max_unmet_fraction=0.0,
        ),
        QueryType(
            id="summarization",
            task="general",
            arrival_rate=8.0,
            input_tokens=3000,
            output_tokens=250,
            ttft_s=3.0,
            tpot_s=0.08,
            max_error_rate=0.30,
            unmet_penalty=0.02,
            max_unmet_fraction=0.05,
        ),
        QueryType(
            id="translation",
            task="general",
            arrival_rate=6.0,
            input_tokens=400,
            output_tokens=400,
            ttft_s=1.0,
            tpot_s=0.05,
            max_error_rate=0.30,
            unmet_penalty=0.01,
            max_unmet_fraction=0.05,
        ),
        QueryType(
            id="math",
            task="math_easy",
            arrival_rate=3.0,
            input_tokens=300,
            output_tokens=600,
            ttft_s=2.0,
            tpot_s=0.06,
            max_error_rate=0.10,
            unmet_penalty=0.05,
            max_unmet_fraction=0.0,
        ),
        QueryType(
            id="rag-long-context",
            task="general",
            arrival_rate=2.0,
            input_tokens=12000,
            output_tokens=300,
            ttft_s=4.0,
            tpot_s=0.08,
            e2e_s=30.0,
            max_error_rate=0.22,
            unmet_penalty=0.05,
            max_unmet_fraction=0.0,
        ),
    )


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
