"""Optional bearer-token authentication.

When a token is configured, every endpoint that changes state or spends solver
time (PUT/POST on the cluster, POST /v1/solve, audits: create, read, cancel)
requires `Authorization: Bearer <token>`. Plan, cluster and history reads,
/v1/perf/estimate (a cheap, pure computation), health and metrics stay open:
the orchestrator and dashboards read without a secret, and nothing they can do
changes the fleet. Without a token configured everything is open (development).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.service.deps import get_settings
from app.service.problems import ProblemError

_bearer = HTTPBearer(auto_error=False, description="set LLM_ALLOCATOR_TOKEN to require it")


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected: str | None = get_settings(request).token_value()
    if expected is None:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="llm-allocator"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401,
            "unauthorized",
            "this endpoint needs an Authorization: Bearer <token> header",
            errors=[("Authorization", "a bearer token is required")],
            headers=challenge,
        )
    # Constant-time comparison: no timing oracle on the token.
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ProblemError(
            401,
            "unauthorized",
            "the bearer token is not valid",
            errors=[("Authorization", "the bearer token is not valid")],
            headers={"WWW-Authenticate": 'Bearer realm="llm-allocator", error="invalid_token"'},
        )


Authorized = Depends(require_token)
