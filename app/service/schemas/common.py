"""Shared pieces of the API schemas: the request/response configs, limits, and
helpers that put the engine's scenario schema inside request bodies."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidatorFunctionWrapHandler,
    create_model,
)

from app.engine.errors import ScenarioError
from app.engine.model.schemas import QueryTypeSpec

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).


REQUEST = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
RESPONSE = ConfigDict(extra="allow")

_RFC3339_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_string(v: Any) -> Any:
    """Only a string in RFC 3339 form, as the OpenAPI document says: pydantic's
    parser would also take a number (or a string of digits) as Unix seconds, or
    as milliseconds when it is large, a guess an API should not make."""
    if not isinstance(v, str) or not _RFC3339_DATE_TIME.match(v):
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    return v


def _in_utc(v: datetime) -> datetime:
    """The instant in UTC; an offset that moves it outside the years 1-9999 is an
    input error (not an OverflowError later)."""
    try:
        return v.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 0001-9999 in UTC") from None


# A point in time in a request: an RFC 3339 string with a time zone, held in UTC.
# (strict=False on the field: strict mode would want a datetime object, not JSON.)
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string), AfterValidator(_in_utc)]

# Hard schema caps; the configured limits (settings) may only be lower.
MAX_PERF_CASES = 1024
MAX_QUERY_TYPES = 10_000


def _under(prefix: str, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """ScenarioSpec raises ScenarioError (not a ValueError, so it escapes pydantic)
    for cross-field problems such as duplicate ids; put the scenario's place in the
    request body in front of the field it names."""
    try:
        return handler(v)
    except ScenarioError as exc:
        raise ScenarioError(f"{prefix}.{exc.field}", exc.message) from None


def _patch_model(base: type[BaseModel], name: str, keep: set[str]) -> type[BaseModel]:
    """`base` with every field but `keep` optional (default None), same constraints:
    a partial update names only what changes."""
    fields: dict[str, Any] = {}
    for fname, info in base.model_fields.items():
        if fname in keep:
            fields[fname] = (info.annotation, info)
            continue
        optional = copy.copy(info)
        optional.default = None
        optional.default_factory = None
        annotation: Any = info.annotation
        fields[fname] = (annotation | None, optional)
    model: type[BaseModel] = create_model(name, __config__=REQUEST, **fields)
    model.__doc__ = (
        f"A {base.__name__} in which only `{', '.join(sorted(keep))}` is required; in merge "
        "mode the fields given replace those of the existing entry with the same id."
    )
    return model


QueryTypePatch = _patch_model(QueryTypeSpec, "QueryTypePatch", {"id"})
