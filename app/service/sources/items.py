"""Per-window query values → observation items in the shapes of
POST /v1/observations/demand and /v1/observations/latency. Pure.

A window that lacks a required value (missing, NaN, ±Inf, out of range, a latency
below the API's floor of 1 µs) yields no item; it is listed in `skipped` with the
reason. Nothing is rounded or filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.service.schemas.perf import MIN_LATENCY_S
from app.service.sources.config import DemandQuery, LatencyQuery
from app.service.sources.prometheus import WindowOutcome, WindowValues
from app.service.sources.windows import rfc3339

MAX_LISTED = 3


@dataclass(frozen=True, slots=True)
class Built:
    items: tuple[dict[str, Any], ...]
    starts: tuple[int, ...]  # window start of each item, in order
    windows: int  # windows in the span
    skipped: tuple[int, ...]  # window starts without an item
    notes: tuple[str, ...]
    outcome: WindowOutcome  # ok | partial | nan | empty (errors never get here)


def _value(v: WindowValues, start: int) -> tuple[float | None, str]:
    """The finite value of the window, or None and why not."""
    if start in v.values:
        return v.values[start], ""
    return None, ("not a finite number" if start in v.invalid else "missing")


def _listed(starts: list[int]) -> str:
    head = ", ".join(rfc3339(s) for s in starts[:MAX_LISTED])
    more = f" and {len(starts) - MAX_LISTED} more" if len(starts) > MAX_LISTED else ""
    return head + more


def _outcome(
    n_items: int, windows: int, partial: bool, required: list[WindowValues]
) -> WindowOutcome:
    if n_items == 0 and windows > 0:
        return "empty" if any(v.outcome == "empty" for v in required) else "nan"
    return "partial" if partial or n_items < windows else "ok"


def _notes(reasons: dict[str, list[int]]) -> list[str]:
    return [
        f"{len(starts)} window(s) skipped, {why}: {_listed(starts)}"
        for why, starts in reasons.items()
    ]


def demand_items(q: DemandQuery, window_s: int, values: Mapping[str, WindowValues]) -> Built:
    """One item per window with a finite, non-negative request count; the token means
    where requests > 0 and the mean is finite and positive."""
    req = values["requests"]
    items: list[dict[str, Any]] = []
    starts: list[int] = []
    skipped: list[int] = []
    reasons: dict[str, list[int]] = {}
    no_mean: dict[str, list[int]] = {}
    for start in req.starts:
        n, why = _value(req, start)
        if n is not None and n < 0:
            n, why = None, "negative"
        if n is None:
            skipped.append(start)
            reasons.setdefault(f"requests {why}", []).append(start)
            continue
        item: dict[str, Any] = {
            "query_type": q.query_type,
            "start": rfc3339(start),
            "window_s": window_s,
            "requests": n,
        }
        for name in ("input_tokens_mean", "output_tokens_mean"):
            if name not in values or n == 0:
                continue
            m, why = _value(values[name], start)
            if m is not None and m > 0:
                item[name] = m
            else:
                no_mean.setdefault(f"{name} {why or 'not positive'}", []).append(start)
        items.append(item)
        starts.append(start)
    notes = _notes(reasons) + [
        f"{len(s)} window(s) without {why}: {_listed(s)}" for why, s in no_mean.items()
    ]
    windows = len(req.starts)
    return Built(
        items=tuple(items),
        starts=tuple(starts),
        windows=windows,
        skipped=tuple(skipped),
        notes=tuple(notes),
        outcome=_outcome(len(items), windows, bool(no_mean), [req]),
    )


SHAPE_REQUIRED = (
    "latency observations need the request shape they were measured at: configure "
    "input_tokens and output_tokens (PromQL; e.g. the mean prompt/generation tokens of the "
    "same deployment, or vector(1024) for a fixed shape)"
)

_LATENCY_BOUNDS = {
    "ttft_s": "positive",
    "tpot_s": "positive",
    "concurrency": "non-negative",
    "input_tokens": "positive",
    "output_tokens": "positive",
}


def latency_items(q: LatencyQuery, window_s: int, values: Mapping[str, WindowValues]) -> Built:
    """One item per window where TTFT, TPOT, concurrency and the request shape are all
    finite and in range. Without shape queries: no items (see SHAPE_REQUIRED)."""
    ttft = values["ttft_s"]
    windows = len(ttft.starts)
    if not q.has_shape:
        return Built((), (), windows, tuple(ttft.starts), (SHAPE_REQUIRED,), "empty")
    items: list[dict[str, Any]] = []
    starts: list[int] = []
    skipped: list[int] = []
    reasons: dict[str, list[int]] = {}
    for start in ttft.starts:
        got: dict[str, float] = {}
        for name, bound in _LATENCY_BOUNDS.items():
            v, why = _value(values[name], start)
            if v is not None and (v < 0 or (v == 0 and bound == "positive")):
                v, why = None, f"not {bound}"
            elif v is not None and name in ("ttft_s", "tpot_s") and v < MIN_LATENCY_S:
                v, why = None, f"below {MIN_LATENCY_S:g} s (implausible)"
            if v is None:
                reasons.setdefault(f"{name} {why}", []).append(start)
                break
            got[name] = v
        else:
            item: dict[str, Any] = {
                "model": q.model,
                "gpu": q.gpu,
                "precision": q.precision,
                "tp": q.tp,
                "pp": q.pp,
            }
            if q.engine is not None:
                item["engine"] = q.engine
            item |= {
                "input_tokens": got["input_tokens"],
                "output_tokens": got["output_tokens"],
                "concurrency": got["concurrency"],
                "ttft_s": got["ttft_s"],
                "tpot_s": got["tpot_s"],
                "start": rfc3339(start),
                "window_s": window_s,
            }
            items.append(item)
            starts.append(start)
            continue
        skipped.append(start)
    return Built(
        items=tuple(items),
        starts=tuple(starts),
        windows=windows,
        skipped=tuple(skipped),
        notes=tuple(_notes(reasons)),
        outcome=_outcome(len(items), windows, False, [values[n] for n in _LATENCY_BOUNDS]),
    )
