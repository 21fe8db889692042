"""Frozen domain objects of the allocation problem (SPEC §1.1).

These are the engine's own types: validated, immutable, and free of any HTTP or
pydantic concern. `app.engine.model.schemas` converts the JSON scenario document to and
from them; every solver and the evaluator work on these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # perf imports the domain: the type only, for the annotation
    from app.engine.perf.calibration import Calibration


def _frozen_map(m: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(m))


MIN_ARRIVAL_RPS = 1e-6  # requests/s; a type below it is planned as 0 (QueryType)


@dataclass(frozen=True, slots=True)
class QueryType:
    """A class of requests with its own demand and targets.

    `arrival_rate` is in requests/s; `ttft_s` and `tpot_s` are the SLOs on time to
    first token and time per output token; `e2e_s` optionally bounds TTFT + output
    tokens x TPOT. `max_error_rate` bounds the traffic-weighted error of the
    requests that are served; `max_unmet_fraction` is how much demand may be dropped
    (each dropped request costs `unmet_penalty` dollars). `task` is the key used to
    look up a model's error rate when the model has no entry for this type's id.

    A rate below MIN_ARRIVAL_RPS (one request in 11.6 days) is planned as 0: no
    fleet is sized for it, and the solvers' tolerances cannot tell it from 0 (at
    1e-8 the heuristics routed it to a deployment of 0 replicas and the MILP's
    coverage rows fell below its tolerance: every plan broke its own evaluator).
    """

    id: str
    arrival_rate: float
    input_tokens: float
    output_tokens: float
    ttft_s: float
    tpot_s: float
    max_error_rate: float
    unmet_penalty: float
    e2e_s: float | None = None
    max_unmet_fraction: float = 0.0
    delay_penalty: float | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.arrival_rate < MIN_ARRIVAL_RPS:
            object.__setattr__(self, "arrival_rate", 0.0)


@dataclass(frozen=True, slots=True)
class Model:
    """A model's architecture and quality. `error_rates` maps a task or a query-type
    id to the error fraction at 16-bit precision."""

    id: str
    params_b: float
    active_params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    error_rates: Mapping[str, float] = field(default_factory=dict)
    intermediate: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_rates", _frozen_map(self.error_rates))

    def error_rate_for(self, qt: QueryType) -> float | None:
        """Error at 16-bit precision for a query type: by its id first, then its task.
        None means the model has no known quality for that type and must not serve it."""
        if qt.id in self.error_rates:
            return self.error_rates[qt.id]
        if qt.task is not None and qt.task in self.error_rates:
            return self.error_rates[qt.task]
        return None

    def tp_problem(self, tp: int) -> str | None:
        """Why tensor parallelism `tp` cannot shard this model's attention, or None.
        The query heads split evenly over the GPUs, and the KV heads either split
        evenly or each is replicated on a whole number of GPUs (vLLM's, SGLang's and
        TensorRT-LLM's rule: vLLM refuses to start a Qwen2.5-7B, 28 heads, at tp 8)."""
        if self.heads % tp:
            return f"tp={tp} does not divide the model's {self.heads} attention heads"
        if self.kv_heads % tp and tp % self.kv_heads:
            return (
                f"tp={tp} neither divides nor is a multiple of the model's {self.kv_heads} KV heads"
            )
        return None

    def kv_bytes_per_token(self, kv_bytes_per_value: float = 2.0) -> float:
        """KV-cache bytes per token over all layers (K and V)."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * kv_bytes_per_value


@dataclass(frozen=True, slots=True)
class GPU:
    """A GPU type. `tflops` maps a compute precision (bf16, fp8, int8) to dense
    TFLOPS/TOPS; link speeds are GB/s per GPU; `available` is how many GPUs of this
    type may be rented now; price is $ per GPU-hour. `engine` names the serving
    engine on this GPU type (None: the policy's)."""

    id: str
    memory_gb: float
    memory_bandwidth_gbps: float
    tflops: Mapping[str, float]
    intra_node_gbps: float
    inter_node_gbps: float
    gpus_per_node: int
    price_per_hour: float
    available: int
    engine: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tflops", _frozen_map(self.tflops))


@dataclass(frozen=True, slots=True)
class Precision:
    """A weight precision. `compute` names the GPU `tflops` key its matmuls run at
    (int4 is weight-only: it computes at bf16). `kv_bytes` is bytes per KV-cache
    value (16-bit unless a precision says otherwise)."""

    id: str
    bytes_per_weight: float
    error_multiplier: float
    compute: str = "bf16"
    kv_bytes: float = 2.0

    def supported_on(self, gpu: GPU) -> bool:
        return self.compute in gpu.tflops and gpu.tflops[self.compute] > 0


@dataclass(frozen=True, slots=True)
class Policy:
    """Fleet-wide policy. Money is $ per horizon (`horizon_h` hours). `engine` is
    the serving engine the performance model assumes (a GPU type may override it)."""

    horizon_h: float = 1.0
    budget: float | None = None
    max_utilization: float = 0.8
    storage_capacity_gb: float | None = None
    storage_price_per_gb_h: float = 0.0
    change_cost_per_gpu: float = 0.0
    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    pp_options: tuple[int, ...] = (1, 2, 4)
    # The control loop (app.engine.model.schemas.PolicySpec documents each).
    replan_interval_s: float = 300.0
    actuation_delay_s: float = 180.0
    demand_quantile: float = 0.95
    forecast: str = "ucm_conformal"
    replan_deadband: float = 0.05
    scale_down_stabilization_s: float = 300.0
    change_payback_s: float | None = 3600.0
    engine: str = "vllm"

    def parallelism_problems(self, tp: int, pp: int) -> list[str]:
        """Why a deployment's TP and PP are not among the options the planner
        deploys (the evaluator's structure check; observed latencies too)."""
        problems = []
        if tp not in self.tp_options:
            problems.append(f"tp={tp} not in tp_options {list(self.tp_options)}")
        if pp not in self.pp_options:
            problems.append(f"pp={pp} not in pp_options {list(self.pp_options)}")
        return problems


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a plan depends on. `calibration`, when set, corrects the latency
    model per (engine, GPU, model, precision) from observed latencies; it is not
    part of the scenario document (the service fits it from observations)."""

    query_types: tuple[QueryType, ...]
    models: tuple[Model, ...]
    gpus: tuple[GPU, ...]
    precisions: tuple[Precision, ...]
    policy: Policy = Policy()
    calibration: Calibration | None = None

    def qt_index(self) -> dict[str, int]:
        return {q.id: k for k, q in enumerate(self.query_types)}

    def model_index(self) -> dict[str, int]:
        return {m.id: k for k, m in enumerate(self.models)}

    def gpu_index(self) -> dict[str, int]:
        return {g.id: k for k, g in enumerate(self.gpus)}

    def precision_index(self) -> dict[str, int]:
        return {p.id: k for k, p in enumerate(self.precisions)}
