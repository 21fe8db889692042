"""Pulling demand and latencies from Prometheus (app.service.sources).

Three layers: the pure parts (window alignment, items); the client and the poller
against a fake Prometheus (httpx.MockTransport) for what a real one cannot easily
produce; and the real thing: Debian's `prometheus` scraping a vLLM-named
trace-replay exporter, with an outage made by cutting a TCP proxy in front of
Prometheus while it keeps scraping. Assertions are on windows (counts, starts,
order) and state, never on elapsed time; waits are bounded only so that nothing
hangs.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError
from support.prometheus import PrometheusServer, free_port
from support.tcp_proxy import TcpProxy
from support.vllm_exporter import Minute, Stream, TraceReplay, VllmExporter, aligned_replay, render

from app.engine.errors import InputError
from app.service.sources import (
    ErrorKind,
    MemoryCursorStore,
    PrometheusClient,
    SourceConfig,
    SourcePoller,
    SourcesSpec,
    check_queries,
    label_selector,
    to_config,
    to_spec,
    vllm_templates,
)
from app.service.sources.config import DemandQuery, LatencyQuery
from app.service.sources.windows import last_complete_end, plan_fetch, rfc3339

T0 = 1_800_000_000  # a multiple of 60 (and of 2)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start_s(item: dict[str, Any]) -> int:
    """The Unix time of an item's RFC 3339 `start`."""
    from datetime import datetime

    return int(datetime.fromisoformat(item["start"].replace("Z", "+00:00")).timestamp())


@dataclass
class Sink:
    """Ingest callbacks that record what they were given."""

    demand: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    demand_batches: list[int] = field(default_factory=list)
    fail: bool = False

    async def ingest_demand(self, items: list[dict[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("database is locked")
        self.demand.extend(items)
        self.demand_batches.append(len(items))

    async def ingest_latency(self, items: list[dict[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("database is locked")
        self.latency.extend(items)

    def starts(self, kind: str = "demand", key: str | None = None) -> list[int]:
        items = self.demand if kind == "demand" else self.latency
        return [start_s(i) for i in items if key is None or i.get("query_type") == key]

    def poller(self, config: SourceConfig, **options: Any) -> SourcePoller:
        """A poller of `config` that ingests into this sink (`options`: the
        poller's own, e.g. `client`, `cursors`, `clock`)."""
        return SourcePoller(
            config, ingest_demand=self.ingest_demand, ingest_latency=self.ingest_latency, **options
        )


# ------------------------------------------------------------ pure parts ----


def test_windows_are_aligned_and_complete_only_after_settling() -> None:
    assert last_complete_end(T0 + 59.9, 60, 0) == T0
    assert last_complete_end(T0 + 60 + 9, 60, 10) == T0
    assert last_complete_end(T0 + 60 + 10, 60, 10) == T0 + 60
    # first poll, no backfill: the last complete window only
    p = plan_fetch(
        T0 + 130, None, window_s=60, settle_s=5, max_catchup_s=3600, initial_backfill_s=0
    )
    assert (p.first_end, p.last_end, p.count) == (T0 + 120, T0 + 120, 1)
    # first poll with an hour of backfill
    p = plan_fetch(
        T0 + 3600, None, window_s=60, settle_s=0, max_catchup_s=7200, initial_backfill_s=3600
    )
    assert p.count == 60 and p.first_end == T0 + 60
    # after the cursor: everything up to the last complete window, nothing before
    p = plan_fetch(
        T0 + 600, T0 + 120, window_s=60, settle_s=5, max_catchup_s=3600, initial_backfill_s=0
    )
    assert (p.first_end, p.last_end, p.count, p.dropped) == (T0 + 180, T0 + 540, 7, 0)
    # up to date: nothing to fetch
    p = plan_fetch(
        T0 + 600, T0 + 540, window_s=60, settle_s=5, max_catchup_s=3600, initial_backfill_s=0
    )
    assert p.count == 0 and p.chunks() == []
    # a cursor older than the catch-up span: the oldest windows are dropped, counted
    p = plan_fetch(T0 + 7200, T0, window_s=60, settle_s=0, max_catchup_s=600, initial_backfill_s=0)
    assert p.count == 10 and p.dropped == 110 and p.last_end == T0 + 7200
    # a cursor off the grid (the window width changed) resumes at the next boundary
    p = plan_fetch(
        T0 + 600, T0 + 90, window_s=60, settle_s=0, max_catchup_s=3600, initial_backfill_s=0
    )
    assert p.first_end == T0 + 180
    # chunks are consecutive and cover the plan exactly
    p = plan_fetch(
        T0 + 6000, T0, window_s=60, settle_s=0, max_catchup_s=86400, initial_backfill_s=0
    )
    chunks = p.chunks(max_windows=30)
    assert chunks[0][0] == T0 + 60 and chunks[-1][1] == T0 + 6000
    assert sum((b - a) // 60 + 1 for a, b in chunks) == p.count == 100
    assert all(b + 60 == c for (_, b), (c, _) in itertools.pairwise(chunks))


def test_rfc3339() -> None:
    assert rfc3339(T0) == "2027-01-15T08:00:00Z"
    assert rfc3339(T0 + 0.5) == "2027-01-15T08:00:00.500Z"


def test_config_schema_validates_and_round_trips() -> None:
    t = vllm_templates(60, label_selector(model_name='lla"ma'))
    spec = SourcesSpec(
        prometheus_url="http://prometheus:9090/",
        demand=[t.demand("code")],
        latency=[t.latency(model="Llama-3.1-8B", gpu="H100-SXM", precision="bf16")],
    )
    assert spec.prometheus_url == "http://prometheus:9090"
    assert to_spec(to_config(spec)) == spec
    assert SourcesSpec.model_validate_json(spec.model_dump_json()) == spec
    assert t.requests == ('sum(increase(vllm:request_success_total{model_name="lla\\"ma"}[60s]))')
    for bad in (
        {"prometheus_url": "ftp://x"},
        {"prometheus_url": "http://x", "window_s": 0},
        {"prometheus_url": "http://x", "poll_interval_s": float("nan")},
        {"prometheus_url": "http://x", "surprise": 1},
        {"prometheus_url": "http://x", "demand": [{"query_type": "a", "requests": "  "}]},
    ):
        with pytest.raises(ValidationError):
            SourcesSpec.model_validate(bad)
    # a repeated entry is an InputError naming the repeat (the service's 422 field)
    twice = [{"query_type": "a", "requests": "x"}, {"query_type": "a", "requests": "y"}]
    with pytest.raises(InputError) as info:
        SourcesSpec.model_validate({"prometheus_url": "http://x", "demand": twice})
    assert info.value.field == "demand[1].query_type"


def test_vllm_templates() -> None:
    t = vllm_templates(120, '{model_name="m"}')
    assert t.requests == 'sum(increase(vllm:request_success_total{model_name="m"}[120s]))'
    assert t.input_tokens_mean == (
        'sum(increase(vllm:prompt_tokens_total{model_name="m"}[120s])) / '
        'sum(increase(vllm:request_success_total{model_name="m"}[120s]))'
    )
    assert t.ttft_s == (
        'sum(increase(vllm:time_to_first_token_seconds_sum{model_name="m"}[120s])) / '
        'sum(increase(vllm:time_to_first_token_seconds_count{model_name="m"}[120s]))'
    )
    assert t.concurrency == 'avg(avg_over_time(vllm:num_requests_running{model_name="m"}[120s]))'
    assert vllm_templates(60).requests == "sum(increase(vllm:request_success_total[60s]))"


def test_exporter_counters_are_monotonic_and_consistent() -> None:
    minutes = (Minute(30, 100.0, 10.0), Minute(0), Minute(60, 200.0, 20.0))
    replay = TraceReplay(minutes, start_s=T0, seconds_per_minute=60, step_at_s=120, step_factor=2)
    stream = Stream(replay, ttft_s=0.2, tpot_s=0.02)
    previous: dict[str, float] = {}
    for t in range(T0, T0 + 3 * 60 * 2, 7):
        text = render([stream], t)
        values = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        for name, v in values.items():
            if "running" not in name:
                assert v >= previous.get(name, 0.0), name  # counters never go down
        previous = values
        assert stream.completed == replay.served(t)
        assert stream.ttft.count == stream.completed
        assert stream.tpot.count == stream.generation_tokens - stream.completed
    # the step doubles minute 2 (and the next loop's minute 0): 30 + 0 + 120 + 60
    assert replay.served(T0 + 240) == 210
    # every request carries the prompt length of the minute it completed in
    last = T0 + 357
    expected = 0
    for m in range(6):
        a, b = T0 + 60 * m, min(last, T0 + 60 * (m + 1))
        expected += (replay.served(b) - replay.served(a)) * round(
            replay.minute(m).input_tokens_mean or 1000
        )
    assert stream.prompt_tokens == expected


# ------------------------------------------------------ fake Prometheus ----

Series = Callable[[float], float | None]


class FakePrometheus:
    """Answers /api/v1/query_range from Python functions of the evaluation time;
    `mode` makes it refuse connections, time out or fail."""

    def __init__(self, series: dict[str, Series]) -> None:
        self.series = series
        self.mode = "up"
        self.calls: list[tuple[str, float, float, float]] = []
        self.forms: list[dict[str, str]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.mode == "500":
            return httpx.Response(500, text="<html>internal error</html>")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        q, start, end, step = form["query"], *(float(form[k]) for k in ("start", "end", "step"))
        self.calls.append((q, start, end, step))
        if q not in self.series:
            body = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error"}
            return httpx.Response(400, json=body)
        values = []
        for i in range(round((end - start) / step) + 1):
            t = start + i * step
            v = self.series[q](t)
            if v is not None:
                values.append([t, "NaN" if math.isnan(v) else repr(v).replace("inf", "Inf")])
        result = [{"metric": {}, "values": values}] if values else []
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    def client(self) -> PrometheusClient:
        transport = httpx.MockTransport(self.handler)
        return PrometheusClient(
            "http://prom.test", client=httpx.AsyncClient(transport=transport), timeout_s=2
        )


def fake_config(
    *,
    demand: tuple[DemandQuery, ...] = (),
    latency: tuple[LatencyQuery, ...] = (),
    **cfg: Any,
) -> SourceConfig:
    """A source config for the fake Prometheus: 60-s windows, settled after 10 s,
    no initial backfill, unless `cfg` says otherwise."""
    return SourceConfig(
        "http://prom.test",
        demand=demand,
        latency=latency,
        **{"window_s": 60, "settle_s": 10, "initial_backfill_s": 0, **cfg},
    )


def fake_poller(
    fake: FakePrometheus,
    sink: Sink,
    *,
    demand: tuple[DemandQuery, ...] = (),
    latency: tuple[LatencyQuery, ...] = (),
    cursors: MemoryCursorStore | None = None,
    **cfg: Any,
) -> SourcePoller:
    config = fake_config(demand=demand, latency=latency, **cfg)
    return sink.poller(config, cursors=cursors, client=fake.client())


@pytest.mark.anyio
async def test_client_classifies_errors() -> None:
    def respond(status: int, body: Any) -> PrometheusClient:
        def handler(request: httpx.Request) -> httpx.Response:
            if isinstance(body, str):
                return httpx.Response(status, text=body)
            return httpx.Response(status, json=body)

        transport = httpx.MockTransport(handler)
        return PrometheusClient("http://p", client=httpx.AsyncClient(transport=transport))

    cases = [
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_query"),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many"}, "bad_query"),
        (503, {"status": "error", "errorType": "timeout", "error": "query timed out"}, "timeout"),
        (500, {"status": "error", "errorType": "internal", "error": "boom"}, "server"),
        (502, "<html>Bad Gateway</html>", "server"),
        (404, "404 page not found", "http"),
        (401, "Unauthorized", "http"),
        (200, "not json", "bad_response"),
        (
            200,
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "bad_response",
        ),
    ]
    for status, body, kind in cases:
        res = await respond(status, body).query_range("up", start_s=60, end_s=120, step_s=60)
        assert res.error is not None and res.error.kind == ErrorKind(kind), (status, body)
    res = await respond(404, "404 page not found").query_range("up", start_s=0, end_s=0, step_s=1)
    assert res.error is not None and "Prometheus root URL" in res.error.message

    two = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"a": "1"}, "values": [[120, "1"]]},
                {"metric": {"a": "2"}, "values": [[120, "1"]]},
            ],
        },
    }
    wv = await respond(200, two).windows("x", window_s=60, first_end=120, last_end=120)
    assert wv.outcome == "error" and wv.error is not None and "sum(...)" in wv.error.message


@pytest.mark.anyio
async def test_client_unreachable_and_timeout_do_not_raise() -> None:
    port = free_port()  # nothing listens there
    async with PrometheusClient(f"http://127.0.0.1:{port}", timeout_s=2) as client:
        wv = await client.windows("up", window_s=60, first_end=T0, last_end=T0 + 120)
    assert wv.error is not None and wv.error.kind is ErrorKind.UNREACHABLE
    assert "refused" in wv.error.message and f"127.0.0.1:{port}" in wv.error.message
    fake = FakePrometheus({})
    fake.mode = "timeout"
    wv = await fake.client().windows("up", window_s=60, first_end=T0, last_end=T0)
    assert wv.error is not None and wv.error.kind is ErrorKind.TIMEOUT


@pytest.mark.anyio
async def test_client_windows_missing_and_not_finite() -> None:
    def f(t: float) -> float | None:
        k = int(t - T0) // 60
        return {1: 5.0, 2: None, 3: math.nan, 4: math.inf, 5: 0.0}.get(k)

    fake = FakePrometheus({"q": f})
    wv = await fake.client().windows("q", window_s=60, first_end=T0 + 60, last_end=T0 + 300)
    assert wv.values == {T0: 5.0, T0 + 240: 0.0}
    assert wv.missing == (T0 + 60,)
    assert wv.invalid == (T0 + 120, T0 + 180)
    assert wv.outcome == "partial"
    assert fake.calls == [("q", T0 + 60, T0 + 300, 60)]  # evaluated at window ends, step w
    # Prometheus parses a bare number of seconds, not "2.5s"
    assert fake.forms[0] == {
        "query": "q",
        "start": str(T0 + 60),
        "end": str(T0 + 300),
        "step": "60",
        "timeout": "2",
    }


@pytest.mark.anyio
async def test_poller_demand_items_means_and_gaps() -> None:
    counts = {0: 120.0, 1: 0.0, 2: None, 3: math.nan, 4: 30.0}

    def requests(t: float) -> float | None:
        return counts.get(int(t - T0) // 60 - 1)

    def tokens(t: float) -> float | None:
        n = requests(t)
        return None if n is None or math.isnan(n) else (math.nan if n == 0 else 1500.0)

    fake = FakePrometheus({"r": requests, "in": tokens})
    sink = Sink()
    q = DemandQuery("code", requests="r", input_tokens_mean="in")
    poller = fake_poller(fake, sink, demand=(q,), initial_backfill_s=300)
    report = await poller.poll_once(T0 + 300 + 10)
    assert report.queries[0].outcome == "partial"
    assert sink.demand == [
        {
            "query_type": "code",
            "start": rfc3339(T0),
            "window_s": 60,
            "requests": 120.0,
            "input_tokens_mean": 1500.0,
        },
        # no mean where nothing was requested; nothing made up for the gaps
        {"query_type": "code", "start": rfc3339(T0 + 60), "window_s": 60, "requests": 0.0},
        {
            "query_type": "code",
            "start": rfc3339(T0 + 240),
            "window_s": 60,
            "requests": 30.0,
            "input_tokens_mean": 1500.0,
        },
    ]
    s = poller.status().queries[0]
    assert s.cursor_s == T0 + 300 and s.windows_ingested == 3 and s.windows_skipped == 2
    assert s.consecutive_failures == 0 and s.last_success_s == T0 + 310
    assert s.note is not None and "requests missing" in s.note and "not a finite" in s.note
    # the skipped windows are final: the next poll asks for the next window only
    fake.calls.clear()
    await poller.poll_once(T0 + 360 + 10)
    assert {c[1:] for c in fake.calls} == {(T0 + 360, T0 + 360, 60)}


@pytest.mark.anyio
async def test_poller_outage_catches_up_exactly_once() -> None:
    fake = FakePrometheus({"r": lambda t: (t - T0) / 60})
    sink = Sink()
    cursors = MemoryCursorStore()
    q = DemandQuery("code", requests="r")
    poller = fake_poller(fake, sink, demand=(q,), cursors=cursors, failure_threshold=2)
    now = T0 + 10
    outcomes = []
    for minute in range(40):
        now = T0 + 60 * minute + 10
        fake.mode = "refused" if 5 <= minute < 20 else "timeout" if 20 <= minute < 25 else "up"
        if minute == 22:
            # the service restarts mid-outage: a new poller, the same (persisted) cursors
            await poller.stop()
            poller = fake_poller(fake, sink, demand=(q,), cursors=cursors, failure_threshold=2)
        report = await poller.poll_once(now)
        outcomes.append(report.queries[0].outcome)
        status = poller.status()
        if minute in (8, 23):
            assert not status.healthy
            assert status.reason == (
                "PrometheusUnreachable" if minute == 8 else "PrometheusTimeout"
            )
            assert "connection refused" in status.message or "did not answer" in status.message
    assert outcomes.count("error") == 20 and outcomes[25] == "ok"
    starts = sink.starts()
    assert len(starts) == len(set(starts)), "a window was ingested twice"
    assert starts == list(range(T0 - 60, T0 + 60 * 39, 60)), "a window was lost"
    assert sink.demand_batches[5] == 21  # the catch-up: minute 25 brings 21 windows at once
    assert poller.status().healthy and poller.status().queries[0].cursor_s == T0 + 39 * 60
    # every count is the window's own value, not a sum over the outage
    assert all(i["requests"] == start_s(i) // 60 - T0 // 60 + 1 for i in sink.demand)
    m = poller.metrics()
    assert m.polls_total[("demand/code", "ok")] == 15  # the second poller's own counts
    assert m.consecutive_failures == {"demand/code": 0}


@pytest.mark.anyio
async def test_poller_catch_up_is_bounded_and_chunked() -> None:
    fake = FakePrometheus({"r": lambda t: 1.0})
    sink = Sink()
    cursors = MemoryCursorStore({"demand/code": T0})
    config = fake_config(
        demand=(DemandQuery("code", requests="r"),),
        settle_s=0,
        max_catchup_s=3600,
        initial_backfill_s=3600,
    )
    poller = sink.poller(config, cursors=cursors, client=fake.client(), max_windows_per_query=25)
    report = await poller.poll_once(T0 + 3 * 3600)
    # 180 windows since the cursor; the newest 60 (max_catchup_s) are fetched in 3 chunks
    assert report.queries[0].windows_ingested == 60 and report.queries[0].windows_skipped == 120
    assert sink.demand_batches == [25, 25, 10]
    assert sink.starts() == list(range(T0 + 7200, T0 + 3 * 3600, 60))
    note = poller.status().queries[0].note
    assert note is not None and "120 window(s) older than max_catchup_s" in note
    # an error in a later chunk keeps what earlier chunks ingested, and the cursor there
    cursors.cursors["demand/code"] = T0 + 3 * 3600
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise httpx.ConnectError("Connection refused", request=request)
        return fake.handler(request)

    poller.client = PrometheusClient(
        "http://prom.test", client=httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    )
    report = await poller.poll_once(T0 + 3 * 3600 + 60 * 60)
    assert report.queries[0].outcome == "error" and report.queries[0].windows_ingested == 25
    assert cursors.cursors["demand/code"] == T0 + 3 * 3600 + 25 * 60


@pytest.mark.anyio
async def test_poller_bad_query_nan_empty_ingest_failure() -> None:
    fake = FakePrometheus(
        {
            "r": lambda t: 10.0,
            "nan": lambda t: math.nan,
            "none": lambda t: None,
        }
    )
    sink = Sink()
    demand = (
        DemandQuery("typo", requests="sum(rate(x[1m]"),  # not in the fake: 400 bad_data
        DemandQuery("bad_mean", requests="r", input_tokens_mean="broken("),
        DemandQuery("nan", requests="nan"),
        DemandQuery("empty", requests="none"),
        DemandQuery("good", requests="r"),
    )
    poller = fake_poller(fake, sink, demand=demand, failure_threshold=1)
    report = await poller.poll_once(T0 + 70)
    outcomes = {p.key: p.outcome for p in report.queries}
    assert outcomes == {
        "demand/typo": "error",
        "demand/bad_mean": "error",  # a broken optional query holds the whole entry back
        "demand/nan": "nan",
        "demand/empty": "empty",
        "demand/good": "ok",
    }
    assert [i["query_type"] for i in sink.demand] == ["good"]
    st = {q.key: q for q in poller.status().queries}
    typo = st["demand/typo"]
    assert typo.last_error_kind == "bad_query" and typo.cursor_s is None
    assert typo.last_error is not None
    assert 'demand "typo" (requests)' in typo.last_error and "sum(rate(x[1m]" in typo.last_error
    assert st["demand/bad_mean"].fields[1].outcome == "error"
    assert st["demand/nan"].consecutive_failures == 0 and st["demand/nan"].cursor_s == T0 + 60
    assert st["demand/empty"].consecutive_failures == 1
    assert st["demand/empty"].last_error is not None
    assert "matched no series" in st["demand/empty"].last_error
    status = poller.status()
    assert not status.healthy and status.reason == "QueryRejected"
    # ingest failing: nothing acknowledged, the cursor stays, the next poll retries
    sink.fail = True
    report = await poller.poll_once(T0 + 130)
    good = {q.key: q for q in poller.status().queries}["demand/good"]
    assert good.last_error_kind == "ingest" and good.cursor_s == T0 + 60
    sink.fail = False
    await poller.poll_once(T0 + 130)
    assert [start_s(i) for i in sink.demand] == [T0, T0 + 60]


@pytest.mark.anyio
async def test_a_demand_entry_of_a_type_the_spec_dropped_is_not_fetched_until_it_is_back() -> None:
    """Removing a query type from the cluster spec left its Prometheus entry failing
    to store the same window at every poll, the cursor stuck, for ever. Such an
    entry is now not fetched (reported, reason QueryTypeNotInSpec), the others go
    on, and when the type is back its windows are caught up from the cursor."""
    fake = FakePrometheus({"r": lambda t: 10.0, "g": lambda t: 20.0})
    sink = Sink()
    planned = {"code"}
    config = fake_config(
        demand=(DemandQuery("code", requests="r"), DemandQuery("gone", requests="g")),
        initial_backfill_s=120,
        failure_threshold=1,
    )
    poller = sink.poller(config, client=fake.client(), planned_types=lambda: set(planned))
    report = await poller.poll_once(T0 + 70)
    assert {p.key: p.outcome for p in report.queries} == {
        "demand/code": "ok",
        "demand/gone": "error",
    }
    assert {c[0] for c in fake.calls} == {"r"}  # nothing asked for the dropped type
    st = {q.key: q for q in poller.status().queries}["demand/gone"]
    assert st.last_error_kind == "unplanned" and st.cursor_s is None
    assert st.last_error is not None and "no query type 'gone'" in st.last_error
    status = poller.status()
    assert not status.healthy and status.reason == "QueryTypeNotInSpec"
    await poller.poll_once(T0 + 130)
    assert {c[0] for c in fake.calls} == {"r"}
    planned.add("gone")
    await poller.poll_once(T0 + 190)
    assert sink.starts(key="gone") == [T0 + 60, T0 + 120]  # the backfill, from then on
    assert poller.status().healthy


FULL_LATENCY_QUERY = LatencyQuery(
    "Llama-3.1-8B", "H100-SXM", "bf16", 1, 1, "ttft", "tpot", "conc", "vllm", "in", "out"
)


def latency_prometheus(
    ttft: Series = lambda t: 0.4,
    tpot: Series = lambda t: 0.03,
) -> FakePrometheus:
    """A Prometheus serving FULL_LATENCY_QUERY's series (concurrency 6.5, a
    1024-in / 128-out shape) with these TTFT and TPOT means."""
    return FakePrometheus(
        {"ttft": ttft, "tpot": tpot, "conc": lambda t: 6.5, "in": lambda t: 1024.0,
         "out": lambda t: 128.0}
    )  # fmt: skip


@pytest.mark.anyio
async def test_poller_latency_items_and_shape_required() -> None:
    fake = latency_prometheus(
        ttft=lambda t: 0.4 if (t - T0) % 120 else math.nan  # idle every other window
    )
    sink = Sink()
    full = FULL_LATENCY_QUERY
    shapeless = LatencyQuery("Qwen2.5-7B", "L4", "fp8", 2, 1, "ttft", "tpot", "conc")
    poller = fake_poller(fake, sink, latency=(full, shapeless), initial_backfill_s=240)
    report = await poller.poll_once(T0 + 240 + 10)
    assert [p.outcome for p in report.queries] == ["partial", "error"]
    assert sink.latency == [
        {
            "model": "Llama-3.1-8B",
            "gpu": "H100-SXM",
            "precision": "bf16",
            "tp": 1,
            "pp": 1,
            "engine": "vllm",
            "input_tokens": 1024.0,
            "output_tokens": 128.0,
            "concurrency": 6.5,
            "ttft_s": 0.4,
            "tpot_s": 0.03,
            "start": rfc3339(start),
            "window_s": 60,
        }
        for start in (T0, T0 + 120)
    ]
    st = poller.status().queries
    assert st[0].key == "latency/Llama-3.1-8B/H100-SXM/bf16/tp1pp1/vllm"
    assert st[1].last_error_kind == "shape_required" and st[1].last_error is not None
    assert "input_tokens and output_tokens" in st[1].last_error and st[1].cursor_s is None


@pytest.mark.anyio
async def test_poller_skips_latencies_below_the_api_floor() -> None:
    """A mean TPOT under 1 µs (a unit error) is no observation: the window is
    skipped with the reason, as the API would refuse the item (and the chunk would
    otherwise fail again at every poll)."""
    fake = latency_prometheus(tpot=lambda t: 0.03 if (t - T0) % 120 else 3e-8)
    sink = Sink()
    poller = fake_poller(fake, sink, latency=(FULL_LATENCY_QUERY,), initial_backfill_s=240)
    report = await poller.poll_once(T0 + 240 + 10)
    assert [p.outcome for p in report.queries] == ["partial"]
    assert [i["start"] for i in sink.latency] == [rfc3339(T0), rfc3339(T0 + 120)]
    assert "tpot_s below 1e-06 s" in (poller.status().queries[0].note or "")


@pytest.mark.anyio
async def test_run_loop_polls_until_stopped() -> None:
    fake = FakePrometheus({"r": lambda t: 1.0})
    sink = Sink()
    clock = iter(range(T0 + 70, T0 + 10**6, 60))
    config = fake_config(demand=(DemandQuery("code", requests="r"),), poll_interval_s=0.1)
    poller = sink.poller(config, client=fake.client(), clock=lambda: float(next(clock)))
    poller.start()
    with anyio.fail_after(30):
        while len(sink.demand) < 3:
            await anyio.sleep(0.05)
    await poller.stop()
    n = len(sink.demand)
    await anyio.sleep(0.3)
    assert len(sink.demand) == n  # stopped
    assert sink.starts()[:3] == [T0, T0 + 60, T0 + 120]


# ------------------------------------------------------- real Prometheus ----

WINDOW_S = 2  # fast tests: 2-s windows, one trace minute each
SCRAPE_S = 0.5  # four samples per window: a late scrape cannot empty a window


@dataclass
class Stack:
    exporter: VllmExporter
    prometheus: PrometheusServer
    data_since_s: float  # Unix time of the first scrapes

    async def wait_for_history(self, seconds: float) -> None:
        """Until Prometheus holds `seconds` of data (bounded)."""
        await wait_until(
            lambda: time.time() >= self.data_since_s + seconds, seconds + 30, "history"
        )

    @property
    def replay(self) -> TraceReplay:
        return self.exporter.streams[0].replay


@pytest.fixture(scope="module")
def stack(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The "conv" trace replayed at one minute per window, scraped by a real
    Prometheus every 0.5 s."""
    replay = aligned_replay(WINDOW_S, float(WINDOW_S), trace="conv")
    exporter = VllmExporter([Stream(replay, model_name="llama")]).start()
    server = PrometheusServer(
        [exporter.target],
        tmp_path_factory.mktemp("prometheus"),
        scrape_interval_s=SCRAPE_S,
        binary=prometheus_bin,
    )
    try:
        server.start()
        server.wait_for_data("vllm:request_success_total")
        yield Stack(exporter, server, time.time())
    finally:
        server.stop()
        exporter.stop()


def fast_config(url: str, **overrides: Any) -> SourceConfig:
    t = vllm_templates(WINDOW_S, label_selector(model_name="llama"))
    spec = SourcesSpec(
        prometheus_url=url,
        window_s=WINDOW_S,
        settle_s=1.0,
        poll_interval_s=0.5,
        initial_backfill_s=0,
        timeout_s=2.0,
        failure_threshold=2,
        demand=[t.demand("conv")],
        latency=[t.latency(model="Llama-3.1-8B", gpu="H100-SXM", precision="bf16")],
    )
    return to_config(spec.model_copy(update=overrides))


def assert_counts_match(items: list[dict[str, Any]], replay: TraceReplay, window_s: int) -> None:
    """Each window's count is what the exporter counted in it, up to Prometheus'
    extrapolation of `increase` from the samples inside the window."""
    total_ingested = total_served = 0.0
    for item in items:
        s = start_s(item)
        served = replay.served(s + window_s) - replay.served(s)
        assert abs(item["requests"] - served) <= 3 + 0.03 * served, (item, served)
        total_ingested += item["requests"]
        total_served += served
    assert abs(total_ingested - total_served) <= 0.02 * total_served + 3


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.1)
    assert predicate(), what


@pytest.mark.anyio
async def test_real_prometheus_windows_match_the_exporter(stack: Stack) -> None:
    # windows wholly after the first scrapes (the very first one would be extrapolated
    # from fewer samples)
    first = last_complete_end(time.time(), WINDOW_S, 0.0) + 2 * WINDOW_S
    await wait_until(
        lambda: last_complete_end(time.time(), WINDOW_S, 1.0) >= first + 4 * WINDOW_S,
        60,
        "five more windows",
    )
    last = last_complete_end(time.time(), WINDOW_S, 1.0)
    t = vllm_templates(WINDOW_S, label_selector(model_name="llama"))
    async with PrometheusClient(stack.prometheus.url, timeout_s=5) as client:
        wv = await client.windows(t.requests, window_s=WINDOW_S, first_end=first, last_end=last)
        means = await client.windows(
            t.input_tokens_mean, window_s=WINDOW_S, first_end=first, last_end=last
        )
        ttft = await client.windows(t.ttft_s, window_s=WINDOW_S, first_end=first, last_end=last)
    assert wv.outcome == "ok" and list(wv.values) == list(wv.starts)
    assert len(wv.values) == (last - first) // WINDOW_S + 1
    items = [{"start": rfc3339(s), "requests": v} for s, v in wv.values.items()]
    assert_counts_match(items, stack.replay, WINDOW_S)
    # per-window means: each window is one trace minute, so its mean prompt length
    for s, v in means.values.items():
        minute = stack.replay.minute(stack.replay.minute_index(s))
        assert minute.input_tokens_mean is not None
        assert abs(v - round(minute.input_tokens_mean)) <= 1
    assert all(0.125 <= v <= 0.375 for v in ttft.values.values())  # 0.25 s ± 50 %


@pytest.mark.anyio
async def test_real_prometheus_nan_empty_partial_and_bad_query(stack: Stack) -> None:
    t = vllm_templates(WINDOW_S, label_selector(model_name="llama"))
    demand = (
        DemandQuery("ok", requests=t.requests),
        DemandQuery("nan", requests="vector(0) / 0"),
        DemandQuery("empty", requests=f"sum(increase(vllm:no_such_metric[{WINDOW_S}s]))"),
        # every third window filtered out: Prometheus answers for the others only
        DemandQuery("partial", requests=f"{t.requests} and on() (vector(time()) % 6 > 1)"),
        DemandQuery("typo", requests="sum(increase(vllm:request_success_total[2s])"),
    )
    await stack.wait_for_history(8 * WINDOW_S)
    sink = Sink()
    config = SourceConfig(
        stack.prometheus.url,
        demand=demand,
        window_s=WINDOW_S,
        settle_s=1.0,
        initial_backfill_s=12.0,
        failure_threshold=1,
    )
    poller = sink.poller(config)
    now = time.time()
    report = await poller.poll_once(now)
    await poller.stop()
    outcomes = {p.key: p.outcome for p in report.queries}
    assert outcomes == {
        "demand/ok": "ok",
        "demand/nan": "nan",
        "demand/empty": "empty",
        "demand/partial": "partial",
        "demand/typo": "error",
    }
    by_type: dict[str, list[int]] = {}
    for item in sink.demand:
        by_type.setdefault(item["query_type"], []).append(start_s(item))
    assert set(by_type) == {"ok", "partial"}
    assert len(by_type["ok"]) == 6
    assert by_type["partial"] == [s for s in by_type["ok"] if (s + WINDOW_S) % 6 != 0]
    st = {q.key: q for q in poller.status().queries}
    typo = st["demand/typo"]
    assert typo.last_error_kind == "bad_query" and typo.last_error is not None
    assert "rejected the query" in typo.last_error
    assert "sum(increase(vllm:request_success_total[2s])" in typo.last_error
    assert typo.cursor_s is None
    assert not poller.status().healthy


@pytest.mark.anyio
async def test_real_check_queries_before_accepting_a_config(stack: Stack) -> None:
    t = vllm_templates(WINDOW_S, label_selector(model_name="llama"))
    config = SourceConfig(
        stack.prometheus.url,
        demand=(
            DemandQuery("good", requests=t.requests, input_tokens_mean=t.input_tokens_mean),
            DemandQuery("typo", requests="sum(increase(vllm:request_success_total[2s])"),
            DemandQuery("unaggregated", requests="vllm:time_to_first_token_seconds_bucket"),
        ),
    )
    async with PrometheusClient(stack.prometheus.url) as client:
        checks = await check_queries(client, config, time.time())
    errors = {(c.key, c.field): c.error.kind if c.error else None for c in checks}
    assert errors == {
        ("demand/good", "requests"): None,
        ("demand/good", "input_tokens_mean"): None,
        ("demand/typo", "requests"): ErrorKind.BAD_QUERY,
        ("demand/unaggregated", "requests"): ErrorKind.BAD_QUERY,
    }
    async with PrometheusClient(f"http://127.0.0.1:{free_port()}") as client:
        checks = await check_queries(client, config, time.time())
    assert {c.error.kind for c in checks if c.error} == {ErrorKind.UNREACHABLE}


@pytest.mark.anyio
async def test_real_unreachable_prometheus_is_a_status_not_an_exception() -> None:
    sink = Sink()
    poller = sink.poller(fast_config(f"http://127.0.0.1:{free_port()}"))
    for i in range(3):
        report = await poller.poll_once(T0 + 10 + 2 * i)
        assert {p.outcome for p in report.queries} == {"error"}
    await poller.stop()
    assert sink.demand == [] and sink.latency == []
    status = poller.status()
    assert not status.healthy and status.reason == "PrometheusUnreachable"
    assert all(q.consecutive_failures == 3 and q.cursor_s is None for q in status.queries)
    assert poller.metrics().polls_total[("demand/conv", "error")] == 3


@dataclass
class OutageResult:
    windows_before: int
    outage_windows: list[int]  # starts of the windows overlapping the outage
    demand: list[dict[str, Any]]  # every demand item ingested, in order
    latency_starts: list[int]
    batches: list[int]
    healthy_during: bool
    reason_during: str
    errors: int

    @property
    def starts(self) -> list[int]:
        return [start_s(i) for i in self.demand]


async def run_outage(
    prometheus: PrometheusServer,
    *,
    window_s: int,
    settle_s: float,
    poll_interval_s: float,
    outage_s: float,
    before_windows: int = 3,
    after_windows: int = 2,
) -> OutageResult:
    """Poll through a proxy, cut it for `outage_s` (Prometheus keeps scraping),
    restore it, and return what was ingested. The waits are bounded; the
    assertions are the caller's."""
    proxy = TcpProxy(("127.0.0.1", prometheus.port)).start()
    sink = Sink()
    t = vllm_templates(window_s, label_selector(model_name="llama"))
    spec = SourcesSpec(
        prometheus_url=proxy.url,
        window_s=window_s,
        settle_s=settle_s,
        poll_interval_s=poll_interval_s,
        initial_backfill_s=0,
        timeout_s=2.0,
        failure_threshold=2,
        demand=[t.demand("conv")],
        latency=[t.latency(model="Llama-3.1-8B", gpu="H100-SXM", precision="bf16")],
    )
    poller = sink.poller(to_config(spec))
    poller.start()
    slack = 60 + 3 * window_s
    try:
        await wait_until(
            lambda: len(sink.demand) >= before_windows,
            before_windows * window_s + slack,
            "windows before the outage",
        )
        windows_before = len(sink.demand)
        proxy.cut()
        cut_at = time.time()
        await anyio.sleep(outage_s)
        status = poller.status()
        errors = poller.metrics().polls_total[("demand/conv", "error")]
        restored_at = time.time()
        proxy.restore()
        target = last_complete_end(restored_at, window_s, settle_s) + after_windows * window_s
        await wait_until(
            lambda: all(
                bool(starts) and max(starts) + window_s >= target
                for starts in (sink.starts(), sink.starts("latency"))
            ),
            (after_windows + 1) * window_s + slack,
            "windows after the outage",
        )
    finally:
        await poller.stop()
        proxy.cut()
    first = int(cut_at // window_s) * window_s
    outage = list(range(first, int(restored_at // window_s) * window_s + 1, window_s))
    return OutageResult(
        windows_before=windows_before,
        outage_windows=outage,
        demand=list(sink.demand),
        latency_starts=sink.starts("latency"),
        batches=sink.demand_batches,
        healthy_during=status.healthy,
        reason_during=status.reason,
        errors=errors,
    )


def check_outage(
    r: OutageResult,
    replay: TraceReplay,
    window_s: int,
    min_outage_windows: int,
    data_since_s: float,
) -> None:
    assert len(r.outage_windows) >= min_outage_windows  # the outage was as long as meant
    assert r.errors >= 1 and not r.healthy_during and r.reason_during == "PrometheusUnreachable"
    for starts in (r.starts, r.latency_starts):
        assert len(starts) == len(set(starts)), "a window was ingested twice"
        assert starts == list(range(starts[0], starts[-1] + window_s, window_s)), "a gap"
        assert set(r.outage_windows) <= set(starts), "a window of the outage is missing"
    # the outage's windows came back in one catch-up batch, each with its own count
    # (windows Prometheus saw only part of, before its first scrape, excepted)
    assert max(r.batches) >= len(r.outage_windows) - 1
    whole = [i for i in r.demand if start_s(i) >= data_since_s]
    assert len(whole) >= len(r.demand) - 1
    assert_counts_match(whole, replay, window_s)


@pytest.mark.anyio
async def test_real_outage_catch_up_exactly_once(stack: Stack) -> None:
    result = await run_outage(
        stack.prometheus,
        window_s=WINDOW_S,
        settle_s=1.0,
        poll_interval_s=0.5,
        outage_s=12 * WINDOW_S,
    )
    check_outage(result, stack.replay, WINDOW_S, 12, stack.data_since_s)
    print(
        f"\nfast outage: {result.windows_before} windows before, "
        f"{len(result.outage_windows)} overlapping the outage, {len(result.starts)} in all "
        f"(demand), {len(result.latency_starts)} (latency), {result.errors} failed polls, "
        f"batches {result.batches}"
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.anyio
async def test_real_five_minute_outage_loses_no_window(prometheus_bin: str, tmp_path: Path) -> None:
    """The target as stated: a Prometheus outage of 5 minutes loses no window once
    it is back (60-s windows, the trace in real time, scrapes every second)."""
    window_s = 60
    replay = aligned_replay(window_s, 60.0, trace="conv")
    with VllmExporter([Stream(replay, model_name="llama")]) as exporter:
        server = PrometheusServer([exporter.target], tmp_path, binary=prometheus_bin)
        with server:
            server.wait_for_data("vllm:request_success_total")
            data_since = time.time()
            result = await run_outage(
                server,
                window_s=window_s,
                settle_s=5.0,
                poll_interval_s=5.0,
                outage_s=300.0,
                before_windows=1,
                after_windows=1,
            )
    check_outage(result, replay, window_s, 5, data_since)
    report = {
        "windows_before": result.windows_before,
        "outage_windows": [rfc3339(s) for s in result.outage_windows],
        "ingested": [(i["start"], i["requests"]) for i in result.demand],
        "served": [
            replay.served(start_s(i) + window_s) - replay.served(start_s(i)) for i in result.demand
        ],
        "latency_windows": len(result.latency_starts),
        "batches": result.batches,
        "failed_polls": result.errors,
    }
    print("\nslow outage:", json.dumps(report, indent=1))


@pytest.mark.anyio
async def test_gateway_routes_through_the_fixtures(
    exporter_factory: Callable[..., VllmExporter],
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    """The gateway view: one exporter, two routes, a demand query per route; the
    generic fixtures (1-s scrapes, so 4-s windows)."""
    w = 4
    code = aligned_replay(w, float(w), trace="code")
    conv = aligned_replay(w, float(w), trace="conv")
    exporter = exporter_factory(
        [
            Stream(code, model_name="llama", route="/v1/code"),
            Stream(conv, model_name="llama", route="/v1/chat"),
        ]
    )
    server = prometheus_factory([exporter.target])
    server.wait_for_data("vllm:request_success_total")
    since = time.time()
    sink = Sink()
    spec = SourcesSpec(
        prometheus_url=server.url,
        window_s=w,
        settle_s=1.5,
        initial_backfill_s=0,
        demand=[
            vllm_templates(w, label_selector(route="/v1/code")).demand("code"),
            vllm_templates(w, label_selector(route="/v1/chat")).demand("chat"),
        ],
    )
    poller = sink.poller(to_config(spec))
    with anyio.fail_after(120):
        while sum(start_s(i) >= since for i in sink.demand) < 6:
            await poller.poll_once(time.time())
            await anyio.sleep(0.5)
    await poller.stop()
    for qt, replay in (("code", code), ("chat", conv)):
        items = [i for i in sink.demand if i["query_type"] == qt]
        starts = [start_s(i) for i in items]
        assert starts == list(range(starts[0], starts[-1] + w, w))
        # windows that began before the first scrapes were only partly seen
        assert_counts_match([i for i in items if start_s(i) >= since], replay, w)
