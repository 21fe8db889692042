"""Identifiers (query types, models, GPU types, precisions, tasks): printable text
without leading or trailing white space. They end up in plan documents, deployment
ids, logs, metrics labels and terminals, where a NUL, a newline or a bidi override
would corrupt or disguise what is shown.

A deployment's id is `model@gpu/precision/tpNppM` (`app.engine.plan.plan`), and
plans route by it, so the parts must not be able to forge one another: a model id
has no `@` (it may have `/`, as Hugging Face names do), and GPU and precision ids
have neither `@` nor `/`. Then the first `@` ends the model and each `/` ends a
part, and two different deployments never share an id."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_ID_LENGTH = 128

# Control, format (bidi overrides, zero-width), surrogate, private-use and
# unassigned code points, and line/paragraph separators.
_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_KIND = {"Cc": "control character", "Cs": "surrogate", "Co": "private use"}


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid identifier, or None."""
    if not value.strip():
        return "must not be empty or white space only"
    if value != value.strip():
        return "must not start or end with white space"
    for k, ch in enumerate(value):
        if unicodedata.category(ch) in _FORBIDDEN:
            name = unicodedata.name(ch, _KIND.get(unicodedata.category(ch), "unassigned"))
            return f"must be printable text: U+{ord(ch):04X} ({name}) at position {k}"
    return None


def check_id(value: str) -> str:
    """Pydantic validator form of `id_problem`."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(check_id)]


def _reserved(chars: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        for ch in chars:
            if ch in value:
                raise ValueError(
                    f"must not contain {ch!r} (deployment ids are model@gpu/precision/tpNppM)"
                )
        return value

    return check


ModelId = Annotated[Id, AfterValidator(_reserved("@"))]
HardwareId = Annotated[Id, AfterValidator(_reserved("@/"))]  # GPU types and precisions
