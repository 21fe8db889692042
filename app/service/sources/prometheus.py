"""An async client for the Prometheus HTTP API that never raises for what a poll
can meet: every query comes back with its series or with a classified error whose
message is written for the person who configured the query.

`windows()` evaluates an expression at the ends of aligned windows
(`/api/v1/query_range` with step = window) and reports, per window start, the
value, or that the window is missing or not a finite number.
"""

from __future__ import annotations

import json
import math
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self

import httpx

MAX_SHOWN_QUERY = 200
MAX_SHOWN_BODY = 300


class ErrorKind(StrEnum):
    UNREACHABLE = "unreachable"  # connection refused, DNS, network down, connection reset
    TIMEOUT = "timeout"  # no answer within the timeout (also Prometheus' own query timeout)
    BAD_QUERY = "bad_query"  # 400/422: Prometheus rejected the PromQL or the parameters
    HTTP = "http"  # other 4xx: wrong URL path, authentication, rate limiting
    SERVER = "server"  # 5xx: Prometheus (or a proxy in front) failed
    BAD_RESPONSE = "bad_response"  # not the API's JSON, or a result of an unusable shape


@dataclass(frozen=True, slots=True)
class QueryError:
    kind: ErrorKind
    message: str
    http_status: int | None = None
    error_type: str | None = None  # Prometheus' errorType (bad_data, execution, timeout, ...)


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]  # (unix time, value); value may be NaN or ±Inf


@dataclass(frozen=True, slots=True)
class QueryResult:
    query: str
    series: tuple[Series, ...] = ()
    error: QueryError | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


WindowOutcome = Literal["ok", "partial", "nan", "empty", "error"]


@dataclass(frozen=True, slots=True)
class WindowValues:
    """One expression over the windows ending at first_end, ..., last_end.

    `values` maps each window *start* with a finite value to it; `missing` are the
    starts with no point at all, `invalid` those whose value is NaN or ±Inf.
    """

    query: str
    window_s: int
    first_end: int
    last_end: int
    values: dict[int, float] = field(default_factory=dict)
    missing: tuple[int, ...] = ()
    invalid: tuple[int, ...] = ()
    error: QueryError | None = None
    warnings: tuple[str, ...] = ()

    @property
    def starts(self) -> range:
        return range(self.first_end - self.window_s, self.last_end, self.window_s)

    @property
    def outcome(self) -> WindowOutcome:
        if self.error is not None:
            return "error"
        if not self.values:
            return "nan" if self.invalid else "empty"
        return "partial" if self.missing or self.invalid else "ok"


def redacted_url(url: str) -> str:
    """`url` without the secret of its user information: the password becomes
    `***` (`http://admin:***@prometheus:9090`), and so does a user name given
    alone (it may be a token). This is the form every answer, status message and
    log line shows; the URL itself is what the client sends its requests to."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not (sep and at):
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user + ':***' if colon else '***'}@{host}{slash}{path}"


def shown(query: str) -> str:
    """The query as quoted in messages (long ones cut)."""
    q = " ".join(query.split())
    return q if len(q) <= MAX_SHOWN_QUERY else q[: MAX_SHOWN_QUERY - 1] + "…"


class PrometheusClient:
    """`base_url` is the Prometheus root (a path prefix such as /prometheus is kept).
    User information in it (`http://user:password@host`) is taken out of the URL
    and sent as basic auth: the URL requests go to (which httpx logs at INFO and
    its errors quote) never holds the password, and messages show `redacted_url`.

    Owns its httpx.AsyncClient unless one is given (tests pass one with an
    httpx.MockTransport); use as an async context manager or call `aclose()`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        self._auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        self.base_url = str(url.copy_with(userinfo=b"")).rstrip("/")
        self.shown_url = redacted_url(base_url.rstrip("/"))
        self.timeout_s = timeout_s
        self._own = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers=headers,
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    # ------------------------------------------------------------- queries --

    async def query_range(
        self, query: str, *, start_s: float, end_s: float, step_s: float
    ) -> QueryResult:
        """`/api/v1/query_range`: the expression at start, start + step, ..., <= end."""
        params = {
            "query": query,
            "start": _num(start_s),
            "end": _num(end_s),
            "step": _num(step_s),
            "timeout": f"{self.timeout_s:g}",  # seconds
        }
        return await self._post("/api/v1/query_range", query, params, "matrix")

    async def query(self, query: str, *, at_s: float) -> QueryResult:
        """`/api/v1/query`: the expression at one instant (a config check, say)."""
        params = {"query": query, "time": _num(at_s), "timeout": f"{self.timeout_s:g}"}
        return await self._post("/api/v1/query", query, params, "vector")

    async def windows(
        self, query: str, *, window_s: int, first_end: int, last_end: int
    ) -> WindowValues:
        """The expression at the end of each aligned window; the result must be one
        series (aggregate the expression) or none."""
        if first_end % window_s or last_end % window_s or last_end < first_end:
            raise ValueError("window ends must be aligned to window_s and ordered")
        res = await self.query_range(query, start_s=first_end, end_s=last_end, step_s=window_s)
        empty = WindowValues(query, window_s, first_end, last_end, warnings=res.warnings)
        if res.error is not None:
            return _with_error(empty, res.error)
        if len(res.series) > 1:
            sample = ", ".join(_labels(s.labels) for s in res.series[:3])
            return _with_error(
                empty,
                QueryError(
                    ErrorKind.BAD_QUERY,
                    f"the query returns {len(res.series)} series ({sample}, ...) where one "
                    f"number per window is needed; aggregate it, e.g. sum(...): {shown(query)}",
                ),
            )
        values: dict[int, float] = {}
        invalid: list[int] = []
        points = res.series[0].points if res.series else ()
        for t, v in points:
            end = round(t / window_s) * window_s
            if abs(t - end) > 1e-3 or not first_end <= end <= last_end:
                continue  # not one of the evaluation times asked for
            if math.isfinite(v):
                values[end - window_s] = v
            else:
                invalid.append(end - window_s)
        missing = tuple(s for s in empty.starts if s not in values and s not in invalid)
        return WindowValues(
            query,
            window_s,
            first_end,
            last_end,
            values=values,
            missing=missing,
            invalid=tuple(sorted(invalid)),
            warnings=res.warnings,
        )

    # ------------------------------------------------------------ plumbing --

    async def _post(
        self, path: str, query: str, params: dict[str, str], result_type: str
    ) -> QueryResult:
        url = self.base_url + path
        where = f"Prometheus at {self.shown_url}"
        try:
            # POST with a form body: long expressions do not hit URL length limits.
            auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
            resp = await self._client.post(url, data=params, auth=auth)
        except httpx.TimeoutException:
            return _failed(
                query,
                ErrorKind.TIMEOUT,
                f"{where} did not answer within {self.timeout_s:g} s: {shown(query)}",
            )
        except httpx.TransportError as exc:
            reason = _transport_reason(exc)
            return _failed(query, ErrorKind.UNREACHABLE, f"{where} is unreachable ({reason})")
        except httpx.HTTPError as exc:  # invalid URL and the like
            return _failed(query, ErrorKind.UNREACHABLE, f"{where} cannot be reached ({exc})")
        return _parse(query, where, resp, result_type)


def _parse(query: str, where: str, resp: httpx.Response, result_type: str) -> QueryResult:
    body: Any
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    status = resp.status_code
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        text = " ".join(resp.text[:MAX_SHOWN_BODY].split())
        kind = (
            ErrorKind.SERVER
            if status >= 500
            else ErrorKind.HTTP
            if status >= 400
            else ErrorKind.BAD_RESPONSE
        )
        hint = " (is this the Prometheus root URL?)" if status in (404, 405) else ""
        return _failed(
            query,
            kind,
            f"{where} answered HTTP {status}{hint} without the Prometheus API's JSON: {text!r}",
            http_status=status,
        )
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    if body["status"] == "error" or status >= 400:
        etype = str(body.get("errorType") or "")
        emsg = str(body.get("error") or "no message")
        if etype == "timeout" or (status == 503 and "timeout" in emsg):
            kind = ErrorKind.TIMEOUT
            text = f"{where} gave up evaluating the query ({emsg}): {shown(query)}"
        elif status in (400, 422) or etype in ("bad_data", "execution"):
            kind = ErrorKind.BAD_QUERY
            text = f"{where} rejected the query ({emsg}): {shown(query)}"
        elif status >= 500:
            kind = ErrorKind.SERVER
            text = f"{where} failed with HTTP {status} ({etype or 'error'}: {emsg})"
        else:
            kind = ErrorKind.HTTP
            text = f"{where} answered HTTP {status} ({etype or 'error'}: {emsg})"
        return QueryResult(
            query,
            error=QueryError(kind, text, http_status=status, error_type=etype or None),
            warnings=warnings,
        )
    data = body.get("data")
    try:
        if not isinstance(data, dict):
            raise ValueError("no data")
        rtype = data.get("resultType")
        result = data.get("result")
        if rtype == "scalar" and result_type == "vector" and isinstance(result, list):
            # an instant query of a scalar expression: [t, "v"]
            series: tuple[Series, ...] = (Series({}, ((float(result[0]), float(result[1])),)),)
        elif rtype != result_type or not isinstance(result, list):
            raise ValueError(f"resultType {rtype!r}, expected {result_type!r}")
        elif rtype == "matrix":
            series = tuple(
                Series(
                    {str(k): str(v) for k, v in s.get("metric", {}).items()},
                    tuple((float(t), float(v)) for t, v in s.get("values", [])),
                )
                for s in result
            )
        else:
            series = tuple(
                Series(
                    {str(k): str(v) for k, v in s.get("metric", {}).items()},
                    ((float(s["value"][0]), float(s["value"][1])),),
                )
                for s in result
            )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return _failed(
            query,
            ErrorKind.BAD_RESPONSE,
            f"{where} answered with a result this service cannot read ({exc}): {shown(query)}",
            http_status=status,
        )
    return QueryResult(query, series=series, warnings=warnings)


def _failed(
    query: str, kind: ErrorKind, message: str, *, http_status: int | None = None
) -> QueryResult:
    return QueryResult(query, error=QueryError(kind, message, http_status=http_status))


def _with_error(v: WindowValues, error: QueryError) -> WindowValues:
    return WindowValues(
        v.query, v.window_s, v.first_end, v.last_end, error=error, warnings=v.warnings
    )


def _transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    # httpx words connection failures generically ("All connection attempts
    # failed"); the cause names what happened.
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    words = " ".join(str(c).lower() for c in chain)
    if any(isinstance(c, ConnectionRefusedError) for c in chain) or "refused" in words:
        return "connection refused: is it running, and is the URL right?"
    if any(isinstance(c, socket.gaierror) for c in chain) or "name or service" in words:
        return f"host name not found: {text}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text}"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return f"connection lost: {text or 'closed by the peer'}"
    return text


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(float(x))
