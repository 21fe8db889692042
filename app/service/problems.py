"""RFC 9457 problem details: one exception type for the service's own errors and
the handlers that map every error (ours, FastAPI's validation errors, Starlette's
404/405, the engine's InputError) to `application/problem+json`.

Every problem has `type`, `title`, `status`, `detail` and `errors`, a list of
`{"field", "message"}` naming the offending input (empty when no field is at fault).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.engine.errors import InputError
from app.engine.model.schemas import loc_to_path
from app.service.errors import (
    Busy,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    ServiceError,
    Unavailable,
)

log = logging.getLogger("llm_allocator.service")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:llm-allocator:problem:"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(examples=["query_types[0].ttft_s"])
    message: str = Field(examples=["Input should be greater than 0"])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=[TYPE_PREFIX + "validation"])
    title: str = Field(examples=["Invalid input"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["query_types[0].ttft_s: Input should be greater than 0"])
    instance: str | None = Field(default=None, examples=["/v1/cluster/demand"])
    errors: list[FieldError] = Field(default_factory=list)


class ProblemError(Exception):
    """An error the service answers with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        errors: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.errors = list(errors)
        self.headers = dict(headers or {})


def field_problem(field: str, message: str, status: int = 422) -> ProblemError:
    """A 4xx naming one field."""
    return ProblemError(
        status,
        "validation",
        f"{field}: {message}",
        title="Invalid input",
        errors=[(field, message)],
    )


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: Sequence[tuple[str, str]] = (),
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank" if slug == "about:blank" else TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": f, "message": m} for f, m in errors],
    }
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def loc_to_field(loc: Sequence[int | str]) -> str:
    """FastAPI error location -> dotted path into the request: ("body",
    "query_types", 0, "ttft_s") -> "query_types[0].ttft_s"; query and header
    parameters keep their name."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return loc_to_path(parts, empty="body")


def _validation_errors(exc: RequestValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        # (Bodies that are not JSON never get here: app.service.http.JsonBodyRoute.)
        loc = tuple(err.get("loc", ()))
        # Union members (e.g. "catalog id or inline ModelSpec") add the member's name
        # to the location; it says nothing about where the input is wrong.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, InputError):
            base = loc_to_field(loc)
            field = ctx_err.field if base == "body" else f"{base}.{ctx_err.field}"
            out.append((field, ctx_err.message))
        else:
            out.append((loc_to_field(loc), msg))
    return out


_UNION_TAGS = {"catalog_id", "inline"}


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's own Allow header
    names only the first route that matched the path, and GET and PUT on
    /v1/cluster are two routes (the route table: `app.service.http.RouteTable`)."""
    methods: list[str] = request.app.state.runtime.routes.allowed_methods(request.scope)
    return methods


def _map_service_error(
    exc: ServiceError,
) -> tuple[int, str, str, dict[str, str], list[tuple[str, str]]]:
    """The one place a control-plane error becomes HTTP: (status, problem type,
    title, headers, field errors)."""
    if isinstance(exc, InvalidInput):
        return 422, "validation", "Invalid input", {}, exc.errors
    if isinstance(exc, PreconditionFailed):
        errors = [("If-Match", f"does not match the current ETag {exc.etag}")]
        return 412, "precondition-failed", "Precondition Failed", {"ETag": exc.etag}, errors
    if isinstance(exc, Busy):
        retry = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
        return 429, exc.kind, "Too Many Requests", retry, []
    if isinstance(exc, NotFound):
        return 404, "not-found", "Not Found", {}, []
    if isinstance(exc, Unavailable):
        retry = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
        return 503, exc.kind, "Service Unavailable", retry, []
    return 500, "solver-error", "Internal Server Error", {}, []


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            errors=exc.errors,
            instance=request.url.path,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{f}: {m}" for f, m in errors[:5]) or "invalid request"
        return problem_response(
            422, "validation", "Invalid input", detail, errors=errors, instance=request.url.path
        )

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        status, slug, title, headers, errors = _map_service_error(exc)
        if status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return problem_response(
            status,
            slug,
            title,
            exc.detail,
            errors=errors,
            instance=request.url.path,
            headers=headers,
        )

    @app.exception_handler(InputError)
    async def _engine_input(request: Request, exc: InputError) -> JSONResponse:
        return problem_response(
            422,
            "validation",
            "Invalid input",
            f"{exc.field}: {exc.message}",
            errors=[(exc.field, exc.message)],
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        if status == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        headers = dict(exc.headers or {})
        if status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(
            status,
            "about:blank",
            title,
            detail,
            instance=request.url.path,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: log it with the traceback, tell the client nothing internal.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal",
            "Internal Server Error",
            "an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for problem answers (`document_problems` gives
    them their problem+json content)."""
    return {s: {"description": HTTPStatus(s).phrase} for s in statuses}


# Operations that take any query string (what probes and scrapers send); every other
# one refuses a query parameter it does not declare (app.service.http
# `refuse_unknown_query`) and documents the 422.
QUERY_UNCHECKED_PATHS = ("/healthz", "/readyz", "/metrics")


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Post-process the generated OpenAPI document: every 4xx/5xx answer is a
    Problem in application/problem+json (FastAPI would document its own 422
    HTTPValidationError as application/json); every operation but the probes and
    /metrics documents 422 (an unknown query parameter is one: `refuse_unknown_query`),
    every one with a body 413 and 415, every one behind the bearer token 401."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            responses = op.setdefault("responses", {})
            if op.get("security"):
                responses.setdefault("401", {"description": "Unauthorized"})
            if path not in QUERY_UNCHECKED_PATHS:
                responses.setdefault("422", {"description": "Unprocessable Content"})
            if op.get("requestBody"):
                responses.setdefault("413", {"description": "Content Too Large"})
                responses.setdefault(
                    "415", {"description": "Unsupported Media Type (send application/json)"}
                )
            for code, resp in responses.items():
                if path == "/readyz" or code[:1] not in ("4", "5"):
                    continue
                resp["content"] = content
                if int(code) in HTTPStatus._value2member_map_:
                    resp.setdefault("description", HTTPStatus(int(code)).phrase)
            op["responses"] = dict(sorted(responses.items()))
    return schema
