"""The reconcile loop: coalescing, failure handling, infeasible plans; the
solver pool's crash and time-out recovery; the plan diff and change functions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from service_support import client_for, fast_settings, running, wait_for_plan

from app.engine.api import demo_scenario_document, normalize_scenario
from app.engine.plan.diff import plan_diff
from app.service.changes import apply_availability, apply_demand
from app.service.errors import InvalidInput
from app.service.pool import SolverCrashed, SolverPool, SolverTimeout
from app.service.schemas import AvailabilityUpdate, DemandUpdate
from app.service.tasks import cancel_and_wait
from app.service.worker import warm_up


def test_bursts_coalesce_into_fewer_replans(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        reconciler = running(c).reconciler
        solves_before = reconciler.solves
        n = 15
        for k in range(n):
            r = c.post(
                "/v1/cluster/demand",
                json={"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 20 + k}]},
            )
            assert r.status_code == 202
        latest = r.json()["generation"]
        assert latest == 1 + n
        body = wait_for_plan(c, latest)
        assert body["observed_generation"] == latest == body["generation"]
        assert reconciler.solves - solves_before < n
        assert body["status"] == "Ready"


class FlakyPool:
    """Fails the first `failures` solves like a crashed worker, then delegates."""

    def __init__(self, real: SolverPool, failures: int) -> None:
        self.real = real
        self.failures = failures

    def announce(self, generation: int) -> None:
        self.real.announce(generation)

    async def run(self, timeout_s: float, fn: Any, *args: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise SolverCrashed("solver process died (test)")
        return await self.real.run(timeout_s, fn, *args)


def test_failed_solve_keeps_plan_marks_degraded_and_retries(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path, retry_backoff_initial_s=1.0)) as c:
        first = wait_for_plan(c, 1)
        reconciler = running(c).reconciler
        reconciler.pool = FlakyPool(reconciler.pool, failures=1)  # type: ignore[assignment]
        r = c.post(
            "/v1/cluster/demand",
            json={"mode": "merge", "query_types": [{"id": "code", "arrival_rate": 40}]},
        )
        g = r.json()["generation"]
        # The long-poll returns when re-planning generation g failed.
        body = c.get("/v1/plan", params={"wait_for_generation": g, "timeout_s": 20}).json()
        cond = {x["type"]: x for x in body["conditions"]}
        if body["observed_generation"] < g:  # not yet retried
            assert body["status"] == "Degraded"
            assert cond["Degraded"]["status"] == "True"
            assert cond["Degraded"]["reason"] == "SolverCrashed"
            assert cond["UpToDate"]["status"] == "False"
            assert body["version"] == first["version"]  # the previous plan is still served
            assert body["plan"] == first["plan"]
        # The retry after the back-off succeeds.
        body = wait_for_plan(c, g)
        cond = {x["type"]: x for x in body["conditions"]}
        assert cond["Degraded"]["status"] == "False"
        assert body["status"] == "Ready"
        metrics = c.get("/metrics").text
        assert 'llm_allocator_replans_total{outcome="failed"} 1.0' in metrics


def test_infeasible_plan_is_published_degraded(tmp_path: Path) -> None:
    with client_for(fast_settings(tmp_path)) as c:
        wait_for_plan(c, 1)
        gpus = [g["id"] for g in c.get("/v1/cluster").json()["spec"]["gpus"]]
        r = c.post("/v1/cluster/availability", json={"available": dict.fromkeys(gpus, 0)})
        assert r.status_code == 202
        body = wait_for_plan(c, r.json()["generation"])
        assert body["plan"]["feasible"] is False
        assert body["plan"]["violations"]
        assert body["status"] == "Degraded"
        cond = {x["type"]: x for x in body["conditions"]}
        assert cond["Degraded"]["reason"] in ("UnmetDemand", "Infeasible")
        assert cond["Degraded"]["message"]
        # Every deployment of the previous plan goes.
        assert all(a["op"] in ("delete", "route", "unmet") for a in body["diff"]["actions"])
        assert c.get("/readyz").status_code == 200


# ----------------------------------------------------------------- pool ----


def _crash() -> None:
    os._exit(3)


def _sleep(s: float) -> bool:
    time.sleep(s)
    return True


def test_pool_recovers_from_crash_and_timeout() -> None:
    async def scenario() -> None:
        pool = SolverPool("test", 1, "spawn")
        pool.start()
        try:
            with pytest.raises(SolverCrashed):
                await pool.run(60, _crash)
            assert await pool.run(60, warm_up) is True
            with pytest.raises(SolverTimeout):
                await pool.run(0.5, _sleep, 30)
            assert await pool.run(60, warm_up) is True
            assert pool.restarts == 2
        finally:
            pool.close()

    asyncio.run(scenario())


def test_a_cancel_that_meets_a_finished_solve_is_not_lost() -> None:
    """The shutdown freeze of CI run 15: a reconcile task cancelled in the instant
    its solve finished swallowed the cancel (`asyncio.wait_for` on Python 3.11
    returns the result instead), went back to waiting for a wake-up, and the
    lifespan waited for it forever. Blocking the loop until the worker has
    answered queues both events in that order, every time."""

    async def scenario() -> None:
        pool = SolverPool("test", 1, "spawn")
        pool.start()
        try:
            assert await pool.run(60, warm_up) is True
            task = asyncio.create_task(pool.run(60, warm_up))
            await asyncio.sleep(0)  # submitted
            time.sleep(1.0)  # the loop is blocked; the worker answers meanwhile
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        finally:
            pool.close()

    asyncio.run(scenario())


def test_cancel_and_wait_ends_a_task_that_swallows_a_cancel() -> None:
    """Defence in depth: whatever swallows one cancel, stopping a part ends."""

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        await asyncio.sleep(60)

    async def scenario() -> None:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(cancel_and_wait(task))
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert done == {stopping} and stopping.exception() is None
        assert task.cancelled()

    asyncio.run(scenario())


# ----------------------------------------------------------- pure parts ----


def _plan(deps: dict[str, int], routes: dict[tuple[str, str], float]) -> dict[str, Any]:
    return {
        "deployments": [
            {
                "id": d,
                "model": "m",
                "gpu": d.split("@")[1],
                "precision": "bf16",
                "tp": 2,
                "pp": 1,
                "replicas": r,
            }
            for d, r in deps.items()
        ],
        "routing": [
            {"query_type": q, "deployment": d, "fraction": f} for (q, d), f in routes.items()
        ],
        "unmet": [],
    }


def test_plan_diff_orders_make_before_break() -> None:
    old = _plan({"a@H100": 2, "b@L4": 3}, {("chat", "a@H100"): 0.5, ("chat", "b@L4"): 0.5})
    new = _plan({"a@H100": 4, "c@A100": 1}, {("chat", "a@H100"): 0.7, ("chat", "c@A100"): 0.3})
    diff = plan_diff(old, new, from_version=7)
    ops = [(a["op"], a.get("deployment")) for a in diff["actions"]]
    assert ops[:2] == [("scale", "a@H100"), ("create", "c@A100")]
    assert ops[-1] == ("delete", "b@L4")
    assert {o for o, _ in ops[2:-1]} == {"route"}
    scale = diff["actions"][0]
    assert (scale["from_replicas"], scale["to_replicas"], scale["gpus_delta"]) == (2, 4, 4)
    assert diff["summary"]["gpus_added"] == {"A100": 2, "H100": 4}
    assert diff["summary"]["gpus_removed"] == {"L4": 6}
    assert diff["from_version"] == 7
    assert plan_diff(new, new, 8)["actions"] == []
    first = plan_diff(None, new, None)
    assert [a["op"] for a in first["actions"]][:2] == ["create", "create"]


def test_apply_demand_merge_maps_errors_to_request_index() -> None:
    spec = normalize_scenario(demo_scenario_document())
    update = DemandUpdate.model_validate(
        {
            "mode": "merge",
            "query_types": [{"id": "new-type"}, {"id": "code", "arrival_rate": 1}],
            "remove": ["math"],
        }
    )
    new, to_request = apply_demand(spec, update)
    ids = [q["id"] for q in new["query_types"]]
    assert "math" not in ids and ids[-1] == "new-type"
    assert to_request(f"query_types[{len(ids) - 1}].ttft_s") == "query_types[0].ttft_s"
    code_at = ids.index("code")
    assert to_request(f"query_types[{code_at}].arrival_rate") == "query_types[1].arrival_rate"
    assert spec["query_types"] != new["query_types"]  # the input is not mutated
    assert "math" in [q["id"] for q in spec["query_types"]]


def test_apply_availability_unknown_ids_all_named() -> None:
    spec = normalize_scenario(demo_scenario_document())
    update = AvailabilityUpdate.model_validate(
        {"available": {"X1": 1, "L4": 2}, "price_per_hour": {"X2": 1.0}}
    )
    with pytest.raises(InvalidInput) as err:
        apply_availability(spec, update)
    assert [f for f, _ in err.value.errors] == ["available.X1", "price_per_hour.X2"]
