"""Exact MILP audits as jobs: run, certified gap, cancel (kills CBC), admission."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, wait_for_plan

from app.engine.model.schemas import scenario_to_document
from app.research.instances import generate

pytestmark = pytest.mark.milp


def wait_state(c: TestClient, audit_id: str, states: set[str], timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = c.get(f"/v1/audits/{audit_id}").json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_audit_of_live_plan_reports_certified_gap(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        plan = wait_for_plan(c, 1)
        r = c.post("/v1/audits", json={"time_limit_s": 60})
        assert r.status_code == 202, r.text
        audit = r.json()
        assert r.headers["location"] == f"/v1/audits/{audit['id']}"
        assert audit["state"] in ("queued", "running")
        assert audit["plan_version"] == plan["version"]
        done = wait_state(c, audit["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done
        assert done["result"]["termination"] in ("optimal", "time_limit")
        assert done["certified_gap"] is not None and done["certified_gap"] >= 0
        live = c.get("/v1/plan").json()
        assert live["last_audit"]["id"] == audit["id"]
        listed = c.get("/v1/audits").json()["items"]
        assert listed[0]["id"] == audit["id"]
        assert 'llm_allocator_audits{state="succeeded"} 1.0' in c.get("/metrics").text
        # Cancelling a finished audit changes nothing.
        again = c.delete(f"/v1/audits/{audit['id']}")
        assert again.status_code == 200 and again.json()["state"] == "succeeded"


def test_cancel_running_and_queued_audits_and_admission(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_concurrent_audits=1, max_queued_audits=1)
    with client_for(settings) as c:
        wait_for_plan(c, 1)
        # A scenario CBC cannot finish quickly (20 types x 20 models x 20 tiers).
        big = scenario_to_document(generate(20, 20, 20, seed=1))
        r = c.put("/v1/cluster", json={"spec": big})
        assert r.status_code == 200, r.text
        wait_for_plan(c, r.json()["generation"])

        running = c.post("/v1/audits", json={"time_limit_s": 120}).json()
        queued = c.post("/v1/audits", json={"time_limit_s": 120}).json()
        full = c.post("/v1/audits", json={"time_limit_s": 120})
        assert full.status_code == 429
        assert full.headers["content-type"].startswith("application/problem+json")
        assert "retry-after" in full.headers

        # The queued one leaves the queue at once.
        r = c.delete(f"/v1/audits/{queued['id']}")
        assert r.status_code == 200
        assert r.json()["state"] == "cancelled"

        wait_state(c, running["id"], {"running"})
        time.sleep(3)  # let it reach CBC
        t0 = time.monotonic()
        r = c.delete(f"/v1/audits/{running['id']}")
        assert r.status_code in (200, 202)
        assert r.json()["cancel_requested"] is True
        done = wait_state(c, running["id"], {"cancelled", "failed", "succeeded"}, timeout_s=30)
        assert done["state"] == "cancelled", done
        assert time.monotonic() - t0 < 30  # far less than the 120 s limit
        if done["result"] is not None:
            assert done["result"]["termination"] == "cancelled"


def test_audit_errors(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path, audit_max_time_limit_s=10)) as c:
        wait_for_plan(c, 1)
        r = c.post("/v1/audits", json={"time_limit_s": 11})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "time_limit_s"
        r = c.post("/v1/audits", json={"plan_version": 999})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "plan_version"
        r = c.post("/v1/audits", json={"relative_gap": 2})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "relative_gap"
        assert c.get("/v1/audits/0123abcd").status_code == 404
        assert c.delete("/v1/audits/0123abcd").status_code == 404
        assert c.get("/v1/audits/not-hex!").status_code == 422
