"""Checking a source configuration against Prometheus before accepting it: every
expression evaluated once, errors classified (the user's to fix, or only "could
not check")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.service.sources.config import SourceConfig
from app.service.sources.poller import Query
from app.service.sources.prometheus import ErrorKind, PrometheusClient, QueryError, shown


@dataclass(frozen=True, slots=True)
class QueryCheck:
    key: str
    field: str
    query: str
    error: QueryError | None  # None: Prometheus evaluated it to at most one series


async def check_queries(
    client: PrometheusClient, config: SourceConfig, at_s: float
) -> tuple[QueryCheck, ...]:
    """Evaluate every configured expression once (an instant query at `at_s`), so
    that a configuration can be refused before it is accepted: an error of kind
    BAD_QUERY is the user's to fix (unparsable PromQL, or more than one series);
    other kinds only mean the check could not be made (Prometheus unreachable, ...)."""
    queries: tuple[Query, ...] = (*config.demand, *config.latency)
    todo = [(q.key, f, e) for q in queries for f, e in q.fields().items()]
    results = await asyncio.gather(*(client.query(e, at_s=at_s) for _, _, e in todo))
    checks = []
    for (key, field, expr), res in zip(todo, results, strict=True):
        error = res.error
        if error is None and len(res.series) > 1:
            error = QueryError(
                ErrorKind.BAD_QUERY,
                f"the query returns {len(res.series)} series where one number per window is "
                f"needed; aggregate it, e.g. sum(...): {shown(expr)}",
            )
        checks.append(QueryCheck(key, field, expr, error))
    return tuple(checks)
