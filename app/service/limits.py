"""Input size limits: the request body (enforced before anything parses it) and
the size of a spec the solvers are asked to plan.

A declared Content-Length over the limit is refused at once; a chunked body is
counted as it arrives and refused as soon as it passes the limit. Either way the
answer is a 413 problem and the body is never buffered beyond the limit.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.engine import api
from app.service.errors import InvalidInput
from app.service.http import replay_body
from app.service.problems import problem_response


def check_planning_size(
    spec: Any, max_pairs: int, field: str = "query_types", current: Any | None = None
) -> None:
    """InvalidInput naming `field` when planning the (valid) scenario document
    `spec` would evaluate more than `max_pairs` query type x candidate pairs: its
    solver memory and candidate table grow with them: a 10,000-type spec (37M pairs)
    took 29 s and 6.3 GB to build its table alone, and its re-plans ran into the
    31 s hard limit, were retried, and never published.
    A change of a `current` spec that is over the limit already (stored by an
    earlier version, or the setting lowered since) passes if it does not grow it:
    the forecaster's rates and a price change must not fail on a size nobody asked
    to change. It runs on every spec update (each forecast's included), so it
    first bounds the pairs from the document's counts, which decides every spec
    well below the limit without enumerating candidates (2 ms at 50 types)."""
    if _pairs_bound(spec) <= max_pairs:
        return
    scenario = api.parse_scenario(spec)
    candidates, pairs = api.planning_pairs(scenario)
    if pairs > max_pairs and (
        current is None or pairs > api.planning_pairs(api.parse_scenario(current))[1]
    ):
        types = len(scenario.query_types)
        raise InvalidInput.field(
            field,
            f"{types:,} query types x {candidates:,} candidate deployments = {pairs:,} pairs "
            f"to plan; this service plans at most {max_pairs:,} (setting max_plan_pairs); "
            f"at most {max(max_pairs // max(candidates, 1), 1):,} types with this catalog",
        )


def _pairs_bound(spec: Any) -> int:
    """Query types x every model, GPU, precision, TP and PP option of a valid,
    normalized scenario document: at least `api.planning_pairs`."""
    p = spec["policy"]
    candidates = len(spec["models"]) * len(spec["gpus"]) * len(spec["precisions"])
    return len(spec["query_types"]) * candidates * len(p["tp_options"]) * len(p["pp_options"])


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "body-too-large",
            "Content Too Large",
            f"the request body exceeds the limit of {self.max_body_bytes} bytes",
            instance=scope.get("path"),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body_bytes:
                    await self._too_large(scope, receive, send)
                    return
        # Read the body now (bounded), then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay_body(b"".join(chunks), receive), send)
