"""Small HTTP helpers shared by the routers and middlewares: JSON responses with
ETags and conditional GETs, a request body read once and replayed, the route
class that reads JSON request bodies, the check of query parameters, and the
table that says which route a request is for."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.problems import QUERY_UNCHECKED_PATHS, ProblemError, field_problem


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters an operation declares, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """A query parameter the operation does not declare is a 422 naming it, as an
    unknown body field is (`?version=1` on /v1/plan/explain explained the live plan
    and `?state=running` on /v1/audits listed every audit, silently). The probes
    and /metrics (`QUERY_UNCHECKED_PATHS`) take whatever scrapers send."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or getattr(route, "path", None) in QUERY_UNCHECKED_PATHS:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise field_problem(unknown[0], f"unknown query parameter (this operation takes: {takes})")


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


class RouteTable:
    """The app's routes, matched as its router matches them, for what answers in
    front of the router or instead of it (HEAD through `HeadAsGetMiddleware`, an
    idempotent replay, a 413) and for the Allow header of a 405. The router's own
    record of the match (`scope["route"]`) cannot serve: it is written only into
    the router's copy of the scope (HeadAsGetMiddleware and FastAPI's included
    routers copy it), and a request answered in front of the router has none."""

    def __init__(self, routes: Iterable[BaseRoute] = ()) -> None:
        self.routes = [r for r in routes if isinstance(r, Route)]

    def _matching(self, scope: Scope, method: str) -> Iterator[tuple[Match, Route]]:
        probe = {
            "type": "http",
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "method": method,
        }
        for route in self.routes:
            match, _ = route.matches(probe)
            if match != Match.NONE:
                yield match, route

    def template(self, scope: Scope) -> str | None:
        """The path template of the route a request is for (`/v1/plan/{version}`;
        HEAD is served as GET). A path that routes serve only for other methods
        (a 405) gives its template too; None: no route has this path (a 404)."""
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        found = None
        for match, route in self._matching(scope, method):
            if match == Match.FULL:
                return route.path
            found = found or route.path
        return found

    def allowed_methods(self, scope: Scope) -> list[str]:
        """Every method some route serves at this path (HEAD wherever GET is)."""
        methods: set[str] = set()
        for _, route in self._matching(scope, "\x00"):  # no route has it: all PARTIAL
            methods |= route.methods or set()
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)


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


def _check_json_media_type(content_type: str | None) -> None:
    """415 naming `Content-Type` unless it says JSON (`application/json` or
    `application/*+json`) in UTF-8 (no charset, or utf-8). FastAPI would read
    any other body as bytes and answer "Input should be a valid dictionary"."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    kind, _, subtype = media.partition("/")
    problem = None
    if not media:
        problem = "missing; send application/json"
    elif kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        problem = f"{media!r} is not accepted; send application/json"
    else:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                problem = f"charset {charset!r} is not accepted; JSON is UTF-8"
    if problem is not None:
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"Content-Type: {problem}",
            errors=[("Content-Type", problem)],
        )


def _decode_json(body: bytes) -> Any:
    """The body as JSON (RFC 8259: UTF-8; a leading byte order mark is ignored),
    or a 422 naming `body` that says what is wrong and where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise field_problem(
            "body", f"not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise field_problem("body", f"invalid JSON at character {exc.pos}: {exc.msg}") from None
    except RecursionError:
        # json's parser recurses once per level: it gives up near the interpreter's
        # recursion limit (~1000 levels); no document of this API is nearly as deep.
        raise field_problem("body", "JSON nested too deeply") from None


class JsonBodyRequest(Request):
    """A request whose JSON body is decoded by `_decode_json`, once: FastAPI
    then reads the decoded value from `json()`."""

    _decoded: Any = None
    _has_decoded = False

    async def json(self) -> Any:
        if not self._has_decoded:
            self._decoded = _decode_json(await self.body())
            self._has_decoded = True
        return self._decoded


class JsonBodyRoute(APIRoute):
    """The route class of every router: for an operation with a body, the body is
    checked before FastAPI sees it (media type, UTF-8, JSON syntax, nesting), so
    that every way it can be unreadable is one problem naming `Content-Type` (415)
    or `body` (422). FastAPI itself would answer 400 "There was an error parsing
    the body" (about:blank, no field) for bad UTF-8 or deep nesting, and take a
    JSON body sent as text/plain for bytes. An empty body is left to FastAPI
    (422 "Field required")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_body_first(request: Request) -> Response:
            request = JsonBodyRequest(request.scope, request.receive)
            if await request.body():
                _check_json_media_type(request.headers.get("content-type"))
                await request.json()
            return await handler(request)

        return read_body_first
