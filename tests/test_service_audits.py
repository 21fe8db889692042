"""Exact MILP audits as jobs: run, certified gap, cancel (kills CBC), admission."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_support import client_for, fast_settings, wait_for_plan

from app.engine.model.schemas import scenario_to_document
from app.engine.solvers.milp.backends.cbc import cbc_executable
from app.research.instances import generate

pytestmark = pytest.mark.milp


def wait_state(
    c: TestClient, audit_id: str, states: set[str], timeout_s: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = c.get(f"/v1/audits/{audit_id}").json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def _cbc_pids() -> set[int]:
    exe = cbc_executable()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                if exe.encode() in cmd:
                    pids.add(int(entry.name))
    return pids


def wait_for_cbc(timeout_s: float = 90) -> int:
    """The pid of a CBC process once one runs (bounded wait: an event, not a clock)."""
    deadline = time.monotonic() + timeout_s
    while not (pids := _cbc_pids()):
        assert time.monotonic() < deadline, "CBC never started"
        time.sleep(0.1)
    return min(pids)


def process_gone(pid: int, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def plan_a_large_fleet(c: TestClient) -> None:
    """A scenario the MILP cannot finish quickly (20 types x 20 models x 20 tiers),
    planned: audits of it run long."""
    wait_for_plan(c, 1)
    big = scenario_to_document(generate(20, 20, 20, seed=1))
    r = c.put("/v1/cluster", json={"spec": big})
    assert r.status_code == 200, r.text
    wait_for_plan(c, r.json()["generation"])


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
        # a plan's audits stay findable once it is no longer live (there was no filter)
        mine = c.get("/v1/audits", params={"plan_version": plan["version"]}).json()
        assert [a["id"] for a in mine["items"]] == [audit["id"]]
        other = c.get("/v1/audits", params={"plan_version": plan["version"] + 1}).json()
        assert other == {"items": [], "next": None}
        assert 'llm_allocator_audits{state="succeeded"} 1.0' in c.get("/metrics").text
        # Cancelling a finished audit changes nothing.
        again = c.delete(f"/v1/audits/{audit['id']}")
        assert again.status_code == 200 and again.json()["state"] == "succeeded"


def test_cancel_running_and_queued_audits_and_admission(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_concurrent_audits=1, max_queued_audits=1)
    with client_for(settings) as c:
        plan_a_large_fleet(c)

        running = c.post("/v1/audits", json={"time_limit_s": 120, "backend": "cbc"}).json()
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
        cbc = wait_for_cbc()  # cancel once CBC itself runs, so the cancel must kill it
        r = c.delete(f"/v1/audits/{running['id']}")
        assert r.status_code in (200, 202)
        assert r.json()["cancel_requested"] is True
        done = wait_state(c, running["id"], {"cancelled", "failed", "succeeded"}, timeout_s=60)
        assert done["state"] == "cancelled", done
        if done["result"] is not None:
            assert done["result"]["termination"] == "cancelled"
        assert process_gone(cbc)  # CBC did not run on to its 120 s limit


def test_a_shutdown_fails_running_and_queued_audits_without_calling_them_cancelled(
    tmp_path: Path,
) -> None:
    """A graceful shutdown recorded the queued audit as cancelled by a user
    ("cancelled while queued", cancel_requested true): the slot the killed running
    audit freed let it start and it read the shutdown's stop as a cancel."""
    settings = fast_settings(tmp_path, max_concurrent_audits=1, max_queued_audits=1)
    with client_for(settings) as c:
        plan_a_large_fleet(c)
        running = c.post("/v1/audits", json={"time_limit_s": 120, "backend": "cbc"}).json()
        queued = c.post("/v1/audits", json={"time_limit_s": 120}).json()
        wait_state(c, running["id"], {"running"})
        wait_for_cbc()
    with client_for(settings) as c:
        for audit in (running, queued):
            body = c.get(f"/v1/audits/{audit['id']}").json()
            assert body["state"] == "failed", body
            assert body["error"] == "interrupted by shutdown", body
            assert body["cancel_requested"] is False, body


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


def test_concurrent_creates_respect_the_admission_limit(tmp_path: Path) -> None:
    """Issue #13 §3: 12 concurrent POSTs were all accepted (limit 1 running + 4
    queued): the check and the insert must be one step."""
    settings = fast_settings(tmp_path, max_concurrent_audits=1, max_queued_audits=4)
    with client_for(settings) as c:
        plan_a_large_fleet(c)  # long audits: none ends during the burst
        barrier = threading.Barrier(12)

        def create(_: int) -> httpx.Response:
            barrier.wait()
            r: httpx.Response = c.post("/v1/audits", json={"time_limit_s": 300})
            return r

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(create, range(12)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [202] * 5 + [429] * 7, codes
        listed = c.get("/v1/audits", params={"limit": 50}).json()["items"]
        assert len(listed) == 5
        for a in answers:
            if a.status_code == 202:
                c.delete(f"/v1/audits/{a.json()['id']}")
