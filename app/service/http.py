"""Small HTTP helpers shared by the routers and middlewares: JSON responses with
ETags and conditional GETs, a request body read once and replayed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# OpenAPI `responses=` entry of a GET answered by `json_with_etag`.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified (If-None-Match)"}
}


def body_etag(body: Any) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def json_with_etag(
    request: Request,
    body: Any,
    etag: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """JSON response carrying an ETag; 304 when If-None-Match already has it."""
    tag = etag or body_etag(body)
    all_headers = {"ETag": tag, **(headers or {})}
    if status_code == 200 and not_modified(request, tag):
        return Response(status_code=304, headers=all_headers)
    return JSONResponse(body, status_code=status_code, headers=all_headers)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` for an app downstream of a middleware that has read the whole
    request body: the body once, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class HeadAsGetMiddleware:
    """HEAD for every GET route (FastAPI routes answer only the methods they
    declare): run the GET, send its status and headers, drop the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
