"""Observations pulled from a real Prometheus (Debian's `prometheus`, started by a
fixture; skipped with the reason when it is not installed): exporter (a trace
replayed as vLLM metrics) -> Prometheus -> the service's poller -> forecast ->
plan, and the plan follows a demand step. Configuration errors are 422s; bad
PromQL and an unreachable Prometheus show in the status and `SourcesHealthy`."""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, running, wait_for_plan
from support.prometheus import PrometheusServer
from support.tcp_proxy import TcpProxy
from support.vllm_exporter import Stream, TraceReplay, VllmExporter, load_trace

from app.engine.api import demo_scenario_document
from app.service.sources.prometheus import redacted_url

WINDOW_S = 2
REQUESTS = f'sum(increase(vllm:request_success_total{{model_name="conv"}}[{WINDOW_S}s]))'


def sources_body(url: str, requests: str = REQUESTS, **extra: Any) -> dict[str, Any]:
    return {
        "prometheus_url": url,
        "poll_interval_s": 1.0,
        "window_s": WINDOW_S,
        "settle_s": 1.5,
        "initial_backfill_s": 0,
        "failure_threshold": 2,
        "demand": [{"query_type": "conversation", "requests": requests}],
        **extra,
    }


def conversation_rate(c: TestClient) -> float:
    spec = c.get("/v1/cluster").json()["spec"]
    return float(next(q["arrival_rate"] for q in spec["query_types"] if q["id"] == "conversation"))


def sources_condition(c: TestClient) -> dict[str, Any]:
    conds = c.get("/v1/plan").json()["conditions"]
    return next(x for x in conds if x["type"] == "SourcesHealthy")


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """A bounded wait for a state (not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_configuration_errors_are_422(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        body = sources_body("http://127.0.0.1:9")
        body["demand"][0]["query_type"] = "nope"
        r = c.put("/v1/sources", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "demand[0].query_type"
        body = sources_body("not a url")
        r = c.put("/v1/sources", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "prometheus_url"
        # a repeated entry names the repeat (it said "demand": "[1]: ...")
        body = sources_body("http://127.0.0.1:9")
        body["demand"].append(dict(body["demand"][0]))
        r = c.put("/v1/sources", json=body)
        assert r.status_code == 422, r.text
        err = r.json()["errors"][0]
        assert err["field"] == "demand[1].query_type" and "given twice" in err["message"]
        assert c.get("/v1/sources").json() == {"config": None, "status": None}


def test_latency_entries_for_deployments_that_cannot_exist_are_422(tmp_path: Path) -> None:
    """Checked as latency observations are (the engine's checks), naming the entry;
    the configuration is not stored and the generation does not move."""
    entry = {
        "model": "Qwen2.5-7B",
        "gpu": "H100-SXM",
        "precision": "bf16",
        "tp": 1,
        "pp": 1,
        "ttft_s": "vector(0.2)",
        "tpot_s": "vector(0.01)",
        "concurrency": "vector(8)",
    }
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        before = c.get("/v1/cluster").json()["generation"]
        latency = [
            entry,
            {**entry, "tp": 16},
            {**entry, "gpu": "A100-SXM-80GB", "precision": "fp8"},
        ]
        r = c.put("/v1/sources", json=sources_body("http://127.0.0.1:9", latency=latency))
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert [e["field"] for e in errors] == ["latency[1]", "latency[2]"]
        assert "gpus_per_node" in errors[0]["message"]
        assert "not supported" in errors[1]["message"]
        assert c.get("/v1/sources").json() == {"config": None, "status": None}
        assert c.get("/v1/cluster").json()["generation"] == before


def test_unreachable_prometheus_is_reported_not_fatal(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        r = c.put("/v1/sources", json=sources_body("http://127.0.0.1:9"))  # nothing listens
        assert r.status_code == 200, r.text
        wait_until(lambda: sources_condition_or_none(c) == "False", 30, "SourcesHealthy False")
        cond = sources_condition(c)
        assert cond["reason"] == "PrometheusUnreachable"
        status = c.get("/v1/sources").json()["status"]
        (q,) = status["queries"]
        assert q["consecutive_failures"] >= 2 and q["last_error"] and q["windows_ingested"] == 0
        assert "llm_allocator_sources_healthy 0.0" in c.get("/metrics").text
        assert c.get("/readyz").status_code == 200  # the service still serves its plan


def test_a_source_entry_of_a_removed_query_type_is_reported_not_retried(tmp_path: Path) -> None:
    """The service wires the cluster spec's types into the poller: after the type
    of its entry is removed from the spec, the source says so (it used to fail to
    store the same window at every poll, for ever)."""
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        r = c.put("/v1/sources", json=sources_body("http://127.0.0.1:9"))
        assert r.status_code == 200, r.text
        spec = c.get("/v1/cluster").json()["spec"]
        spec["query_types"] = [q for q in spec["query_types"] if q["id"] != "conversation"]
        assert c.put("/v1/cluster", json={"spec": spec}).status_code == 200

        def reason() -> str | None:
            conds = c.get("/v1/plan").json()["conditions"]
            return next((x["reason"] for x in conds if x["type"] == "SourcesHealthy"), None)

        wait_until(lambda: reason() == "QueryTypeNotInSpec", 30, "the reason")
        (q,) = c.get("/v1/sources").json()["status"]["queries"]
        assert "no query type 'conversation'" in q["last_error"]


class _PasswordedPrometheus(BaseHTTPRequestHandler):
    """A Prometheus behind basic auth that rejects every query (so that each
    message about it quotes its URL); it keeps the Authorization headers it got."""

    authorizations: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.authorizations.append(self.headers.get("Authorization") or "")
        body = b'{"status": "error", "errorType": "bad_data", "error": "parse error"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_the_password_in_the_prometheus_url_is_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GET /v1/sources (open even with a token), the status messages, the plan's
    condition and the log (ours and httpx's request lines) showed the password;
    the queries must still use it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PasswordedPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://admin:hunter2@127.0.0.1:{server.server_address[1]}"
    shown = f"http://admin:***@127.0.0.1:{server.server_address[1]}"
    caplog.set_level(logging.INFO)  # httpx logs each request's URL at INFO
    try:
        with client_for(fast_settings(tmp_path)) as c:
            wait_for_plan(c, 1)
            put = c.put("/v1/sources", json=sources_body(url))
            assert put.status_code == 200, put.text
            wait_until(lambda: sources_condition_or_none(c) == "False", 30, "SourcesHealthy False")
            got = c.get("/v1/sources")
            answers = [put.text, got.text, c.get("/v1/plan").text, c.get("/metrics").text]
    finally:
        server.shutdown()
        server.server_close()
    assert got.json()["config"]["prometheus_url"] == shown
    (q,) = got.json()["status"]["queries"]
    assert f"Prometheus at {shown} rejected the query" in q["last_error"]
    assert shown in caplog.text and any(r.name == "httpx" for r in caplog.records)
    for text in [*answers, caplog.text]:
        assert "hunter2" not in text
    expected = "Basic " + base64.b64encode(b"admin:hunter2").decode()
    assert _PasswordedPrometheus.authorizations
    assert set(_PasswordedPrometheus.authorizations) == {expected}


def test_redacted_url_hides_only_the_secret() -> None:
    assert redacted_url("http://admin:hunter2@prom:9090/x") == "http://admin:***@prom:9090/x"
    assert redacted_url("https://t0ken@prom") == "https://***@prom"
    assert redacted_url("http://a:p@ss@prom:9090") == "http://a:***@prom:9090"
    assert redacted_url("http://prom:9090/prometheus") == "http://prom:9090/prometheus"


def sources_condition_or_none(c: TestClient) -> str | None:
    conds = c.get("/v1/plan").json()["conditions"]
    hit = [x for x in conds if x["type"] == "SourcesHealthy"]
    return str(hit[0]["status"]) if hit else None


def test_prometheus_demand_reaches_the_plan_and_it_follows_a_step(
    tmp_path: Path,
    exporter_factory: Callable[[Sequence[Stream]], VllmExporter],
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    # The conversation trace, one trace minute per window, scaled to ~20 req/s; at
    # 30 s the demand triples.
    start = float(int(time.time() // WINDOW_S) * WINDOW_S)
    replay = TraceReplay(
        load_trace("conv"),
        start_s=start,
        seconds_per_minute=WINDOW_S,
        scale=20.0 * WINDOW_S / 330.0,
        step_at_s=30.0,
        step_factor=3.0,
    )
    exporter = exporter_factory([Stream(replay, model_name="conv")])
    prom = prometheus_factory([exporter.target], 0.5)
    prom.wait_for_data("vllm:request_success_total")
    spec = demo_scenario_document()
    spec["policy"].update(forecast="last", replan_deadband=0.2, scale_down_stabilization_s=0)
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        assert c.put("/v1/cluster", json={"spec": spec}).status_code == 200
        r = c.put("/v1/sources", json=sources_body(prom.url))
        assert r.status_code == 200, r.text
        # before the step: the planned rate comes from Prometheus (~20/s, not 45)
        wait_until(lambda: conversation_rate(c) < 35, 60, "the observed rate in the spec")
        before = wait_for_plan(c, c.get("/v1/cluster").json()["generation"])
        assert sources_condition(c)["status"] == "True"
        step_at = start + 30.0
        assert time.time() < step_at, "the set-up took longer than the step's offset"
        # after the step (~60/s): a new planned rate, and a plan for it with more GPUs
        wait_until(lambda: time.time() > step_at, 60, "the step")
        wait_until(lambda: conversation_rate(c) > 45, 90, "the step in the spec")
        seen_at = time.time()
        after = wait_for_plan(c, c.get("/v1/cluster").json()["generation"])
        planned_at = time.time()
        assert after["plan"]["cost"]["rental"] > before["plan"]["cost"]["rental"]
        demand = {d["query_type"]: d for d in after["analysis"]["demand"]}
        assert demand["conversation"]["planned_rps"] > 45
        status = c.get("/v1/sources").json()["status"]
        (q,) = status["queries"]
        # (a window Prometheus had no sample for, under load, is a transient failure)
        assert q["windows_ingested"] > 0 and q["last_success_s"] is not None
        # For the closing note (not an assertion): from the first window after the
        # step being complete in Prometheus to the plan for it.
        first_complete = (int(step_at // WINDOW_S) + 1) * WINDOW_S + 1.5
        print(
            f"\nstep -> spec {seen_at - first_complete:.2f} s, "
            f"-> plan {planned_at - first_complete:.2f} s after the window was complete"
        )


def test_an_outage_loses_no_window(
    tmp_path: Path,
    exporter_factory: Callable[[Sequence[Stream]], VllmExporter],
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    """Prometheus unreachable from the service for 10+ windows (it keeps scraping):
    once it is back, every window is in the store exactly once (counted, not timed)."""
    start = float(int(time.time() // WINDOW_S) * WINDOW_S)
    replay = TraceReplay(load_trace("conv"), start_s=start, seconds_per_minute=WINDOW_S)
    exporter = exporter_factory([Stream(replay, model_name="conv")])
    prom = prometheus_factory([exporter.target], 0.5)
    prom.wait_for_data("vllm:request_success_total")
    proxy = TcpProxy(("127.0.0.1", prom.port)).start()
    try:
        with client_for(fast_settings(tmp_path)) as c:
            wait_for_plan(c, 1)
            assert c.put("/v1/sources", json=sources_body(proxy.url)).status_code == 200
            store = running(c).store

            def windows() -> list[float]:
                return sorted(r.start_s for r in store.demand_since(0.0))

            wait_until(lambda: len(windows()) >= 2, 60, "the first windows")
            proxy.cut()
            cut_at = time.time()
            wait_until(lambda: sources_condition_or_none(c) == "False", 60, "unhealthy")
            wait_until(lambda: time.time() > cut_at + 10 * WINDOW_S, 60, "10 windows")
            during = len(windows())
            proxy.restore()
            wait_until(lambda: sources_condition_or_none(c) == "True", 60, "healthy again")
            wait_until(lambda: max(windows()) > cut_at + 10 * WINDOW_S, 60, "the catch-up")
            seen = windows()
            assert len(seen) > during + 10
            gaps = [b - a for a, b in itertools.pairwise(seen) if b - a != WINDOW_S]
            assert gaps == [], gaps  # every window once, none missing
    finally:
        proxy.cut()
