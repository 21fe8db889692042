"""Pure functions that apply a change request to a scenario document.

They return the candidate spec; the caller validates the whole of it with the
engine (`normalize_scenario`) before anything is stored, so a rejected change
leaves no trace. Errors name the field of the *request*.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

from pydantic import BaseModel

from app.service.errors import InvalidInput
from app.service.schemas import AvailabilityUpdate, DemandUpdate


def _invalid(errors: list[tuple[str, str]]) -> InvalidInput:
    return InvalidInput(errors)


def apply_demand(
    spec: dict[str, Any], update: DemandUpdate
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """New spec with the demand applied, and a function that rewrites a field path
    of the new spec (`query_types[j]...`) to the request's (`query_types[k]...`)."""
    out = copy.deepcopy(spec)
    patches = [cast(BaseModel, q).model_dump(exclude_unset=True) for q in update.query_types]
    index_map: dict[int, int] = {}  # position in the new spec -> position in the request

    errors: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for k, p in enumerate(patches):
        if p["id"] in seen:
            errors.append((f"query_types[{k}].id", f"duplicate id {p['id']!r} in this request"))
        seen[p["id"]] = k

    if update.mode == "replace":
        out["query_types"] = patches
        index_map = {k: k for k in range(len(patches))}
    else:
        existing = [q["id"] for q in out["query_types"]]
        for k, qid in enumerate(update.remove):
            if qid not in existing:
                errors.append((f"remove[{k}]", f"unknown query type {qid!r}"))
            elif qid in seen:
                errors.append((f"remove[{k}]", f"{qid!r} is also in query_types"))
        remove = set(update.remove)
        kept = [q for q in out["query_types"] if q["id"] not in remove]
        position = {q["id"]: j for j, q in enumerate(kept)}
        for k, p in enumerate(patches):
            j = position.get(p["id"])
            if j is None:
                kept.append(p)
                j = len(kept) - 1
                position[p["id"]] = j
            else:
                kept[j] = {**kept[j], **p}
            index_map[j] = k
        out["query_types"] = kept
    if errors:
        raise _invalid(errors)

    def to_request_field(field: str) -> str:
        prefix = "query_types["
        if field.startswith(prefix):
            j_text, _, rest = field[len(prefix) :].partition("]")
            if j_text.isdigit() and int(j_text) in index_map:
                return f"query_types[{index_map[int(j_text)]}]{rest}"
        return field

    return out, to_request_field


def apply_availability(spec: dict[str, Any], update: AvailabilityUpdate) -> dict[str, Any]:
    """New spec with GPU availability and prices changed; unknown GPU ids are a 422
    naming each of them."""
    out = copy.deepcopy(spec)
    by_id = {g["id"]: g for g in out["gpus"]}
    known = ", ".join(sorted(by_id)) or "none"
    errors = [
        (f"{name}.{gid}", f"unknown GPU id {gid!r} (the cluster has: {known})")
        for name, values in (
            ("available", update.available),
            ("price_per_hour", update.price_per_hour),
        )
        for gid in values
        if gid not in by_id
    ]
    if errors:
        raise _invalid(errors)
    for gid, n in update.available.items():
        by_id[gid]["available"] = n
    for gid, price in update.price_per_hour.items():
        by_id[gid]["price_per_hour"] = price
    return out
