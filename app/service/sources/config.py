"""What to pull from Prometheus: the API schema of a source configuration, the
frozen domain objects the poller uses, the converter between them, and PromQL
templates for the metrics vLLM exports.

Every string-valued query field is a PromQL expression evaluated at the *end* of
each window and expected to yield one series (aggregate with `sum(...)`): the
window's request count, a mean token count, a mean latency or a mean concurrency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.engine.errors import InputError

# Same conventions as the request schemas of app.service.schemas: unknown keys are
# rejected, numbers must be finite, no coercion between types.
SPEC = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)

MAX_QUERIES = 1000
PromQL = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]

_REQUESTS_EXAMPLE = 'sum(increase(vllm:request_success_total{model_name="llama"}[60s]))'


class DemandQuerySpec(BaseModel):
    """PromQL giving the demand of one query type per window."""

    model_config = SPEC
    query_type: Name = Field(description="query type id of the cluster spec", examples=["code"])
    requests: PromQL = Field(
        description="requests completed in the window (a count, e.g. increase over the window)",
        examples=[_REQUESTS_EXAMPLE],
    )
    input_tokens_mean: PromQL | None = Field(
        default=None,
        description="mean prompt tokens per request in the window",
        examples=[
            'sum(increase(vllm:prompt_tokens_total{model_name="llama"}[60s])) / '
            'sum(increase(vllm:request_success_total{model_name="llama"}[60s]))'
        ],
    )
    output_tokens_mean: PromQL | None = Field(
        default=None, description="mean generated tokens per request in the window"
    )


class LatencyQuerySpec(BaseModel):
    """PromQL giving the measured latency of one deployment per window."""

    model_config = SPEC
    model: Name = Field(examples=["Llama-3.1-8B"])
    gpu: Name = Field(examples=["H100-SXM"])
    precision: Name = Field(examples=["bf16"])
    tp: int = Field(ge=1, le=64, examples=[1])
    pp: int = Field(ge=1, le=64, examples=[1])
    engine: Name | None = Field(default=None, examples=["vllm"])
    ttft_s: PromQL = Field(description="mean time to first token in the window, s")
    tpot_s: PromQL = Field(description="mean time per output token in the window, s")
    concurrency: PromQL = Field(description="mean requests in flight per replica in the window")
    input_tokens: PromQL | None = Field(
        default=None,
        description="mean prompt tokens of the measured requests; required for a latency "
        "observation (a fixed shape can be given as e.g. vector(1024))",
    )
    output_tokens: PromQL | None = Field(
        default=None, description="mean generated tokens of the measured requests"
    )


class SourcesSpec(BaseModel):
    """Where the service pulls observations from, and how often."""

    model_config = SPEC
    prometheus_url: str = Field(
        min_length=1,
        max_length=2048,
        description="base URL of the Prometheus HTTP API (without /api/v1); user information "
        "(http://user:password@host) is sent as basic auth and shown with the password as ***",
        examples=["http://prometheus:9090"],
    )
    poll_interval_s: float = Field(default=30.0, ge=0.1, le=3600.0, examples=[30.0])
    window_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="observation window; window k covers [k·window_s, (k+1)·window_s) in Unix time",
        examples=[60],
    )
    settle_s: float = Field(
        default=15.0,
        ge=0.0,
        le=3600.0,
        description="how long after its end a window is complete: at least the scrape "
        "timeout plus Prometheus' ingestion delay",
    )
    max_catchup_s: float = Field(
        default=6 * 3600.0,
        ge=1.0,
        le=7 * 86_400.0,
        description="after an outage, windows older than this are not fetched (and are lost)",
    )
    initial_backfill_s: float = Field(
        default=3600.0,
        ge=0.0,
        le=7 * 86_400.0,
        description="history fetched on the first poll of a query (no cursor yet); 0 = only "
        "the last complete window",
    )
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0, description="per HTTP request")
    failure_threshold: int = Field(
        default=3, ge=1, le=1000, description="consecutive failed polls before unhealthy"
    )
    demand: list[DemandQuerySpec] = Field(default_factory=list, max_length=MAX_QUERIES)
    latency: list[LatencyQuerySpec] = Field(default_factory=list, max_length=MAX_QUERIES)

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        try:
            url = httpx.URL(v)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.query or url.fragment:
            raise ValueError("must not carry a query string or fragment")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _unique_entries(self) -> SourcesSpec:
        """One entry per query type and per deployment (InputError: the service
        names the repeated item's field, e.g. `demand[1].query_type`)."""
        seen: set[str] = set()
        for i, d in enumerate(self.demand):
            if d.query_type in seen:
                raise InputError(
                    f"demand[{i}].query_type", f"query type {d.query_type!r} is given twice"
                )
            seen.add(d.query_type)
        seen = set()  # deployments now: a latency key is not a query type
        for i, q in enumerate(self.latency):
            key = latency_key(q.model, q.gpu, q.precision, q.tp, q.pp, q.engine)
            if key in seen:
                raise InputError(f"latency[{i}]", f"deployment {key} is given twice")
            seen.add(key)
        return self


# ---------------------------------------------------------------- domain ----


def demand_key(query_type: str) -> str:
    return f"demand/{query_type}"


def latency_key(model: str, gpu: str, precision: str, tp: int, pp: int, engine: str | None) -> str:
    return f"latency/{model}/{gpu}/{precision}/tp{tp}pp{pp}/{engine or '-'}"


def _configured(**queries: str | None) -> dict[str, str]:
    """A query's PromQL by field name, in the order given, leaving out optional
    fields that are not configured."""
    return {name: q for name, q in queries.items() if q is not None}


@dataclass(frozen=True, slots=True)
class DemandQuery:
    query_type: str
    requests: str
    input_tokens_mean: str | None = None
    output_tokens_mean: str | None = None

    @property
    def key(self) -> str:
        """Names this query in cursors, statuses and metric labels."""
        return demand_key(self.query_type)

    def fields(self) -> dict[str, str]:
        """The configured PromQL by field name, required ones first."""
        return _configured(
            requests=self.requests,
            input_tokens_mean=self.input_tokens_mean,
            output_tokens_mean=self.output_tokens_mean,
        )


@dataclass(frozen=True, slots=True)
class LatencyQuery:
    model: str
    gpu: str
    precision: str
    tp: int
    pp: int
    ttft_s: str
    tpot_s: str
    concurrency: str
    engine: str | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None

    @property
    def key(self) -> str:
        return latency_key(self.model, self.gpu, self.precision, self.tp, self.pp, self.engine)

    @property
    def has_shape(self) -> bool:
        return self.input_tokens is not None and self.output_tokens is not None

    def fields(self) -> dict[str, str]:
        return _configured(
            ttft_s=self.ttft_s,
            tpot_s=self.tpot_s,
            concurrency=self.concurrency,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


@dataclass(frozen=True, slots=True)
class SourceConfig:
    prometheus_url: str
    demand: tuple[DemandQuery, ...] = ()
    latency: tuple[LatencyQuery, ...] = ()
    poll_interval_s: float = 30.0
    window_s: int = 60
    settle_s: float = 15.0
    max_catchup_s: float = 6 * 3600.0
    initial_backfill_s: float = 3600.0
    timeout_s: float = 10.0
    failure_threshold: int = 3


def to_config(spec: SourcesSpec) -> SourceConfig:
    """The validated API document as the poller's domain object (field for field:
    the two are kept in step by `tests/test_sources_prometheus.py`'s round trip)."""
    doc = spec.model_dump()
    return SourceConfig(
        **{k: v for k, v in doc.items() if k not in ("demand", "latency")},
        demand=tuple(DemandQuery(**d) for d in doc["demand"]),
        latency=tuple(LatencyQuery(**q) for q in doc["latency"]),
    )


def to_spec(config: SourceConfig) -> SourcesSpec:
    """The domain object back as the API document (GET /v1/sources)."""
    doc = asdict(config)
    return SourcesSpec.model_validate(
        doc | {"demand": list(doc["demand"]), "latency": list(doc["latency"])}
    )


# ------------------------------------------------------- vLLM templates ----


def label_selector(**labels: str) -> str:
    """`{a="x",b="y"}` with PromQL string escaping; "" when no labels."""
    if not labels:
        return ""
    parts = []
    for name, value in sorted(labels.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{name}="{escaped}"')
    return "{" + ",".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class VllmTemplates:
    """PromQL over the vLLM metric names for windows of `window_s`, one series each."""

    window_s: int
    selector: str
    requests: str
    input_tokens_mean: str
    output_tokens_mean: str
    ttft_s: str
    tpot_s: str
    concurrency: str

    def demand(self, query_type: str, *, token_means: bool = True) -> DemandQuerySpec:
        return DemandQuerySpec(
            query_type=query_type,
            requests=self.requests,
            input_tokens_mean=self.input_tokens_mean if token_means else None,
            output_tokens_mean=self.output_tokens_mean if token_means else None,
        )

    def latency(
        self,
        *,
        model: str,
        gpu: str,
        precision: str,
        tp: int = 1,
        pp: int = 1,
        engine: str | None = "vllm",
    ) -> LatencyQuerySpec:
        """The request shape of the measured latencies is the window's mean prompt and
        generation length of the same selector."""
        return LatencyQuerySpec(
            model=model,
            gpu=gpu,
            precision=precision,
            tp=tp,
            pp=pp,
            engine=engine,
            ttft_s=self.ttft_s,
            tpot_s=self.tpot_s,
            concurrency=self.concurrency,
            input_tokens=self.input_tokens_mean,
            output_tokens=self.output_tokens_mean,
        )


def vllm_templates(window_s: int, selector: str = "") -> VllmTemplates:
    """PromQL for vLLM's `/metrics` over windows of `window_s` seconds.

    `selector` restricts every metric, e.g. `label_selector(model_name="llama")`
    (vLLM's label) or `label_selector(route="/v1/code")` for a gateway that adds one.
    Each expression is `increase` over exactly one window, so evaluated at the
    window's end it covers that window; means are ratios of increases (0/0 = NaN in
    a window where nothing completed, which the poller skips).
    """
    if window_s < 1:
        raise ValueError("window_s must be at least 1 s")
    r = f"[{window_s}s]"

    def inc(metric: str) -> str:
        return f"sum(increase({metric}{selector}{r}))"

    def ratio(num: str, den: str) -> str:
        return f"{inc(num)} / {inc(den)}"

    return VllmTemplates(
        window_s=window_s,
        selector=selector,
        requests=inc("vllm:request_success_total"),
        input_tokens_mean=ratio("vllm:prompt_tokens_total", "vllm:request_success_total"),
        output_tokens_mean=ratio("vllm:generation_tokens_total", "vllm:request_success_total"),
        ttft_s=ratio(
            "vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count"
        ),
        tpot_s=ratio(
            "vllm:time_per_output_token_seconds_sum", "vllm:time_per_output_token_seconds_count"
        ),
        # Per replica: each replica's time average, then the mean over replicas.
        concurrency=f"avg(avg_over_time(vllm:num_requests_running{selector}{r}))",
    )
