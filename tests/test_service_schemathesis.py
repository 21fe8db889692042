"""Property-based API testing with schemathesis over the committed OpenAPI
document, against the real server: no input may produce a 5xx, and every
response must match its documented status codes, media types and schemas.

Two checks are left out on purpose: `positive_data_acceptance` (a request can
match the schema and still be refused for reasons a schema cannot express: a GPU
with no compute precision, a stale If-Match) and `negative_data_rejection` (the
engine's scenario schemas use pydantic's lax mode, so `false` passes for 0 in a
nested GPU; the service's own request models are strict).

Bounded: a few dozen examples per operation. Solver-heavy operations run with
tight service limits (what-if budget, audit time limit) so random input cannot
make the run slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from service_support import TOKEN, ServerProcess, wait_for_plan

from app.service.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "st.db"
    proc = ServerProcess(
        db,
        token=TOKEN,
        LLM_ALLOCATOR_WHATIF_MAX_TIME_BUDGET_S="0.5",
        LLM_ALLOCATOR_AUDIT_MAX_TIME_LIMIT_S="2",
        LLM_ALLOCATOR_MAX_QUEUED_AUDITS="1",
        LLM_ALLOCATOR_LONG_POLL_MAX_S="0.5",
        LLM_ALLOCATOR_SOLVE_GRACE_S="20",
    )
    try:
        proc.wait_healthy()
        with proc.client(TOKEN) as c:
            wait_for_plan(c, 1)
        yield proc
    finally:
        proc.stop()
        # Random specs reach the reconciler too: show what it logged (engine
        # errors there are not HTTP 5xx, but they are bugs worth seeing).
        print(proc.log_text()[-20_000:])


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_api_conforms_and_never_5xx(case: schemathesis.Case, server: ServerProcess) -> None:  # type: ignore[type-arg]
    case.call_and_validate(
        base_url=server.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
        excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
    )
