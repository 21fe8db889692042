"""The control plane's own errors: what went wrong in the caller's terms, with no
HTTP in them. `app.service.problems` maps each kind to its status code and problem
type, once; the HTTP layer (routers, auth, dependencies) is the only place that
speaks in status codes."""

from __future__ import annotations

from collections.abc import Iterable


class ServiceError(Exception):
    """Base: `detail` is the message a client sees."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(ServiceError):
    """Input that cannot be accepted; `errors` name each offending field of the
    request."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors[:5]) or "invalid input")

    @staticmethod
    def field(field: str, message: str) -> InvalidInput:
        return InvalidInput([(field, message)])


class PreconditionFailed(ServiceError):
    """An If-Match that no longer matches: the resource changed since the caller
    read it."""

    def __init__(self, detail: str, etag: str) -> None:
        super().__init__(detail)
        self.etag = etag


class Busy(ServiceError):
    """A bounded resource (solver workers, audit slots) is full: retry later."""

    def __init__(self, detail: str, retry_after_s: float, kind: str) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.kind = kind  # "solver-busy" | "too-many-audits"


class NotFound(ServiceError):
    """The named resource does not exist (or was pruned)."""


class Unavailable(ServiceError):
    """A dependency (the database, the solver processes) failed: nothing was
    applied; retry later."""

    def __init__(self, detail: str, retry_after_s: float, kind: str) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.kind = kind  # "storage-unavailable" | "solver-unavailable"


class SolverFailed(ServiceError):
    """A solver failed for a reason other than the input (a bug): logged."""
