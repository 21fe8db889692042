"""Observation sources: pull demand and measured latencies from Prometheus.

* `config`: the source configuration (API schema `SourcesSpec`, domain
  `SourceConfig`, `to_config`) and PromQL templates for vLLM's metrics.
* `windows`: window alignment and what to fetch after a cursor (pure).
* `prometheus`: the HTTP API client; every query returns values or a classified error.
* `items`: window values → observation items in the POST /v1/observations shapes (pure).
* `poller`: `SourcePoller`, the loop that ingests each complete window exactly once.
* `checks`: `check_queries`, every expression evaluated once before a config is accepted.
"""

from app.service.sources.checks import QueryCheck, check_queries
from app.service.sources.config import (
    DemandQuery,
    DemandQuerySpec,
    LatencyQuery,
    LatencyQuerySpec,
    SourceConfig,
    SourcesSpec,
    VllmTemplates,
    label_selector,
    to_config,
    to_spec,
    vllm_templates,
)
from app.service.sources.poller import (
    CursorStore,
    IngestFn,
    MemoryCursorStore,
    PollReport,
    QueryStatus,
    SourceMetrics,
    SourcePoller,
    SourcesStatus,
)
from app.service.sources.prometheus import ErrorKind, PrometheusClient, QueryError, WindowValues

__all__ = [
    "CursorStore",
    "DemandQuery",
    "DemandQuerySpec",
    "ErrorKind",
    "IngestFn",
    "LatencyQuery",
    "LatencyQuerySpec",
    "MemoryCursorStore",
    "PollReport",
    "PrometheusClient",
    "QueryCheck",
    "QueryError",
    "QueryStatus",
    "SourceConfig",
    "SourceMetrics",
    "SourcePoller",
    "SourcesSpec",
    "SourcesStatus",
    "VllmTemplates",
    "WindowValues",
    "check_queries",
    "label_selector",
    "to_config",
    "to_spec",
    "vllm_templates",
]
