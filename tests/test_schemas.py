"""Scenario documents (app/engine/schemas.py): the demo round-trips, and every
rejection is a ScenarioError whose `.field` names the offending input."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from app.engine.errors import InputError, ScenarioError
from app.engine.model.demo import demo_scenario, demo_scenario_document
from app.engine.model.domain import Scenario
from app.engine.model.schemas import (
    ScenarioSpec,
    parse_scenario,
    parse_scenario_spec,
    scenario_to_document,
)

Doc = dict[str, Any]


@pytest.fixture
def doc() -> Doc:
    return copy.deepcopy(demo_scenario_document())


def _reject(doc: Doc, mutate: Callable[[Doc], object]) -> ScenarioError:
    mutate(doc)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc)
    return info.value


def _set_at(path: tuple[Any, ...], value: Any) -> Callable[[Doc], None]:
    """A mutation that sets `value` at `path` (keys and list indices) in a document."""

    def mutate(d: Doc) -> None:
        target: Any = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


# ------------------------------------------------------------------ round trip


def test_demo_document_round_trips(doc: Doc) -> None:
    assert scenario_to_document(parse_scenario(doc)) == doc


def test_demo_document_survives_json(doc: Doc) -> None:
    text = json.dumps(doc, allow_nan=False)
    assert scenario_to_document(parse_scenario(json.loads(text))) == doc


def test_domain_round_trips_through_document() -> None:
    s = demo_scenario()
    back = parse_scenario(scenario_to_document(s))
    assert isinstance(back, Scenario)
    assert back == s


def test_defaults_are_filled_and_options_normalised(doc: Doc) -> None:
    for q in doc["query_types"]:
        for key in ("max_unmet_fraction", "e2e_s", "delay_penalty", "task"):
            q.pop(key, None)
    doc["policy"] = {"tp_options": [4, 1, 2]}
    out = scenario_to_document(parse_scenario(doc))
    assert all(q["max_unmet_fraction"] == 0.0 for q in out["query_types"])
    assert all(q["e2e_s"] is None and q["task"] is None for q in out["query_types"])
    pol = out["policy"]
    assert pol["tp_options"] == [1, 2, 4]  # sorted
    assert pol["pp_options"] == [1, 2, 4]
    assert pol["horizon_h"] == 1.0 and pol["max_utilization"] == 0.8
    assert pol["budget"] is None and pol["change_cost_per_gpu"] == 0.0


def test_parse_scenario_spec_returns_spec_and_accepts_one(doc: Doc) -> None:
    spec = parse_scenario_spec(doc)
    assert isinstance(spec, ScenarioSpec)
    assert parse_scenario_spec(spec) is spec
    assert [q.id for q in spec.query_types] == [q["id"] for q in doc["query_types"]]


def test_scenario_error_is_an_input_error_with_field_and_message(doc: Doc) -> None:
    doc["query_types"][0]["arrival_rate"] = -1.0
    with pytest.raises(InputError) as info:
        parse_scenario(doc)
    err = info.value
    assert isinstance(err, ScenarioError)
    assert err.field == "query_types[0].arrival_rate"
    assert err.message
    assert str(err).startswith("query_types[0].arrival_rate: ")


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("query_types", 0, "arrival_rate"), -1.0, "query_types[0].arrival_rate"),
        (("query_types", 2, "arrival_rate"), -0.001, "query_types[2].arrival_rate"),
        (("query_types", 0, "ttft_s"), 0.0, "query_types[0].ttft_s"),
        (("query_types", 1, "ttft_s"), -1.0, "query_types[1].ttft_s"),
        (("query_types", 1, "tpot_s"), 0.0, "query_types[1].tpot_s"),
        (("query_types", 0, "e2e_s"), 0.0, "query_types[0].e2e_s"),
        (("query_types", 0, "max_unmet_fraction"), 1.5, "query_types[0].max_unmet_fraction"),
        (("query_types", 0, "max_error_rate"), 0.0, "query_types[0].max_error_rate"),
        (("gpus", 0, "available"), -1, "gpus[0].available"),
        (("gpus", 1, "available"), 2.5, "gpus[1].available"),
        (("gpus", 0, "price_per_hour"), -0.1, "gpus[0].price_per_hour"),
        (("policy", "max_utilization"), 0.0, "policy.max_utilization"),
        (("policy", "max_utilization"), 1.2, "policy.max_utilization"),
        (("policy", "budget"), -5.0, "policy.budget"),
    ],
)
def test_out_of_range_numbers_name_the_field(
    doc: Doc, path: tuple[Any, ...], value: Any, field: str
) -> None:
    assert _reject(doc, _set_at(path, value)).field == field


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("query_types", 0, "arrival_rate"), "query_types[0].arrival_rate"),
        (("query_types", 3, "tpot_s"), "query_types[3].tpot_s"),
        (("gpus", 2, "price_per_hour"), "gpus[2].price_per_hour"),
        (("gpus", 0, "tflops", "bf16"), "gpus[0].tflops.bf16"),
        (("models", 1, "error_rates", "general"), "models[1].error_rates.general"),
        (("policy", "horizon_h"), "policy.horizon_h"),
        (("policy", "budget"), "policy.budget"),
    ],
)
def test_nan_and_inf_are_rejected(doc: Doc, bad: float, path: tuple[Any, ...], field: str) -> None:
    assert _reject(doc, _set_at(path, bad)).field == field


def test_nan_from_json_text_is_rejected(doc: Doc) -> None:
    # Python's json accepts NaN/Infinity literals; the schema must not.
    text = json.dumps(doc).replace('"arrival_rate": 45.1', '"arrival_rate": NaN', 1)
    assert "NaN" in text
    with pytest.raises(ScenarioError) as info:
        parse_scenario(json.loads(text))
    assert info.value.field == "query_types[0].arrival_rate"


@pytest.mark.parametrize("rate", [1.2, -0.1])
def test_error_rates_outside_unit_interval(doc: Doc, rate: float) -> None:
    err = _reject(doc, lambda d: d["models"][2]["error_rates"].__setitem__("code", rate))
    assert err.field.startswith("models[2].error_rates")
    assert "code" in err.field + err.message


def test_error_rates_at_the_bounds_are_accepted(doc: Doc) -> None:
    doc["models"][0]["error_rates"] = {"general": 0.0, "code": 1.0}
    s = parse_scenario(doc)
    assert dict(s.models[0].error_rates) == {"general": 0.0, "code": 1.0}


# ------------------------------------------------------------------ ids and lists


@pytest.mark.parametrize("name", ["query_types", "models", "gpus", "precisions"])
def test_duplicate_ids_name_the_duplicate(doc: Doc, name: str) -> None:
    n = len(doc[name])
    dup = copy.deepcopy(doc[name][1])
    doc[name].append(dup)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc)
    assert info.value.field == f"{name}[{n}].id"
    assert dup["id"] in info.value.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("models", 0, "id"), "Q@L4"),
        (("gpus", 1, "id"), "L4@H100"),
        (("gpus", 1, "id"), "H100/NVL"),
        (("precisions", 0, "id"), "fp8/e4m3"),
    ],
)
def test_ids_cannot_forge_a_deployment_id(doc: Doc, path: tuple[Any, ...], value: str) -> None:
    """Deployment ids are model@gpu/precision/tpNppM: model Q on GPU L4@H100 and
    model Q@L4 on GPU H100 would share one, and plans route by it."""
    err = _reject(doc, _set_at(path, value))
    assert err.field == ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(
        ".[", "["
    )
    assert "deployment ids" in err.message


def test_a_model_id_may_be_a_hugging_face_name(doc: Doc) -> None:
    doc["models"][0]["id"] = "meta-llama/Llama-3.1-8B"
    assert parse_scenario(doc).models[0].id == "meta-llama/Llama-3.1-8B"


def test_duplicate_in_the_middle_names_the_second_occurrence(doc: Doc) -> None:
    doc["gpus"].insert(3, copy.deepcopy(doc["gpus"][1]))
    assert _reject(doc, lambda d: None).field == "gpus[3].id"


@pytest.mark.parametrize("name", ["query_types", "models", "gpus", "precisions"])
def test_empty_lists_are_rejected(doc: Doc, name: str) -> None:
    assert _reject(doc, lambda d: d.__setitem__(name, [])).field == name


@pytest.mark.parametrize("name", ["query_types", "models", "gpus", "precisions"])
def test_missing_lists_are_rejected(doc: Doc, name: str) -> None:
    assert _reject(doc, lambda d: d.pop(name)).field == name


def test_missing_required_field(doc: Doc) -> None:
    assert _reject(doc, lambda d: d["gpus"][0].pop("available")).field == "gpus[0].available"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (lambda d: d, "colour"),
        (lambda d: d["query_types"][0], "query_types[0].colour"),
        (lambda d: d["models"][3], "models[3].colour"),
        (lambda d: d["gpus"][1], "gpus[1].colour"),
        (lambda d: d["precisions"][0], "precisions[0].colour"),
        (lambda d: d["policy"], "policy.colour"),
    ],
)
def test_unknown_extra_fields_are_rejected(
    doc: Doc, where: Callable[[Doc], Doc], field: str
) -> None:
    assert _reject(doc, lambda d: where(d).__setitem__("colour", "red")).field == field


def test_not_an_object() -> None:
    for bad in ([1, 2], None, "scenario"):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(bad)
        assert info.value.field == "scenario"


# ------------------------------------------------------------------ options and models


def test_tp_option_3_is_rejected(doc: Doc) -> None:
    err = _reject(doc, lambda d: d["policy"].__setitem__("tp_options", [1, 3]))
    assert err.field == "policy.tp_options[1]"


def test_pp_option_8_is_rejected(doc: Doc) -> None:
    err = _reject(doc, lambda d: d["policy"].__setitem__("pp_options", [8]))
    assert err.field == "policy.pp_options[0]"


def test_repeated_tp_options_are_rejected(doc: Doc) -> None:
    err = _reject(doc, lambda d: d["policy"].__setitem__("tp_options", [2, 1, 2]))
    assert err.field == "policy.tp_options"


def test_empty_tp_options_are_rejected(doc: Doc) -> None:
    err = _reject(doc, lambda d: d["policy"].__setitem__("tp_options", []))
    assert err.field == "policy.tp_options"


@pytest.mark.parametrize(
    ("index", "name", "bound", "excess"),
    [(1, "active_params_b", "params_b", 1.0), (0, "kv_heads", "heads", 1)],
    ids=["active_params_above_total", "kv_heads_above_heads"],
)
def test_a_model_field_above_its_bound_is_rejected(
    doc: Doc, index: int, name: str, bound: str, excess: float
) -> None:
    def mutate(d: Doc) -> None:
        model = d["models"][index]
        model[name] = model[bound] + excess

    err = _reject(doc, mutate)
    assert err.field.startswith(f"models[{index}]")
    assert name in err.field + err.message


def test_kv_heads_must_divide_heads(doc: Doc) -> None:
    doc["models"][0]["heads"], doc["models"][0]["kv_heads"] = 32, 7
    err = _reject(doc, lambda d: None)
    assert err.field.startswith("models[0]")
    assert "kv_heads (7) must divide heads (32)" in err.message


def test_an_e2e_slo_below_the_ttft_slo_is_rejected(doc: Doc) -> None:
    q = doc["query_types"][0]
    q["ttft_s"], q["e2e_s"] = 1.0, 0.001
    err = _reject(doc, lambda d: None)
    assert err.field.startswith("query_types[0]") and "e2e_s" in err.message
    q["e2e_s"] = 1.0  # equal is a (tight) SLO, not a contradiction
    assert parse_scenario(doc).query_types[0].e2e_s == 1.0


def test_moe_model_with_fewer_active_params_is_accepted(doc: Doc) -> None:
    m = doc["models"][0]
    m["active_params_b"] = m["params_b"] / 4
    m["kv_heads"] = m["heads"]
    assert parse_scenario(doc).models[0].active_params_b == pytest.approx(m["params_b"] / 4)


def test_gpu_with_no_tflops_is_rejected(doc: Doc) -> None:
    err = _reject(doc, lambda d: d["gpus"][0].__setitem__("tflops", {}))
    assert err.field == "gpus[0].tflops"
