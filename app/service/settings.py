"""Service settings, read from the environment (prefix `LLM_ALLOCATOR_`).

Every time limit is named `*_s` and is in seconds. The table in README.md (section "Settings")
lists them all; the defaults suit a single small fleet on a laptop or one pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_ALLOCATOR_", extra="forbid")

    # Where and how the service listens.
    host: str = Field(default="127.0.0.1", description="bind address (0.0.0.0 in containers)")
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, description="uvicorn graceful-shutdown wait for open requests"
    )

    # Durability.
    db_path: Path = Field(default=Path("llm-allocator.db"), description="SQLite database file")
    demo_on_empty: bool = Field(
        default=True, description="start with the built-in demo scenario on an empty database"
    )
    plan_history_limit: int = Field(
        default=1000, ge=1, description="plan versions kept; older ones are pruned"
    )

    # Security and input limits.
    token: SecretStr | None = Field(
        default=None, description="bearer token required on every write/solve/audit endpoint"
    )
    max_body_bytes: int = Field(default=2 * MIB, ge=1024)
    max_perf_cases: int = Field(default=256, ge=1, le=1024)
    max_plan_pairs: int = Field(
        default=4_000_000,
        ge=1,
        description="largest spec planned: query types x candidate deployments (about 250 "
        "bytes of solver memory each; 4M is ~1,000 types on the 12-GPU catalog); a larger "
        "spec is a 422",
    )
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)

    # Re-planning (the reconcile loop).
    time_budget_s: float = Field(default=1.0, gt=0, le=600, description="AGH budget per re-plan")
    seed: int = Field(default=0, ge=0)
    solve_grace_s: float = Field(
        default=30.0,
        gt=0,
        description="hard limit on a solve = its budget + this (covers worker start-up); "
        "past it the worker is killed",
    )
    max_starts: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="AGH's start limit in re-plans and improvements (the deterministic "
        "mode, for tests and audits); unset: AGH searches until its budget",
    )

    # Background improvement of the live plan (see app/service/reconcile.py).
    improve_budget_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="budget of the one background improvement solve after each re-plan "
        "(AGH warm-started from the published plan, then the exact polish); 0 disables it",
    )
    improve_min_saving_fraction: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="an improved plan is published only if it saves more than this share "
        "of the published plan's objective (change cost from the published plan included)",
    )
    improve_min_saving_usd: float = Field(
        default=0.0,
        ge=0,
        description="... and more than this many $ per policy horizon",
    )
    retry_backoff_initial_s: float = Field(default=1.0, gt=0)
    retry_backoff_max_s: float = Field(default=60.0, gt=0)
    long_poll_max_s: float = Field(default=60.0, gt=0, description="cap on ?timeout_s=")
    solver_start_method: Literal["spawn", "forkserver"] = "spawn"

    # Observations and the control loop.
    observation_retention_s: float = Field(
        default=8 * 86_400.0,
        gt=0,
        description="demand observations older than this (in observation time) are dropped",
    )
    observation_max_future_s: float = Field(
        default=86_400.0,
        ge=0,
        description="a demand window may end at most this long after the wall clock (clock "
        "skew; raise it to replay simulated future days); one ending later cannot have been "
        "counted yet and is refused (422)",
    )

    latency_retention_count: int = Field(
        default=10_000, ge=10, description="latency observations kept (the newest)"
    )
    latency_retention_age_s: float = Field(
        default=7 * 86_400.0, gt=0, description="latency observations older than this are dropped"
    )

    # Stateless what-if solves (POST /v1/solve).
    whatif_workers: int = Field(default=1, ge=1, le=16)
    whatif_max_time_budget_s: float = Field(default=60.0, gt=0)

    # Exact MILP audits.
    max_concurrent_audits: int = Field(default=1, ge=1, le=16)
    max_queued_audits: int = Field(default=4, ge=0, le=1000)
    audit_default_time_limit_s: float = Field(default=60.0, gt=0)
    audit_max_time_limit_s: float = Field(default=3600.0, gt=0)
    audit_retention_count: int = Field(default=100, ge=1)
    audit_retention_age_s: float = Field(default=7 * 24 * 3600.0, gt=0)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, v: object) -> object:
        # LLM_ALLOCATOR_TOKEN= (set but empty, as compose files often leave it)
        # means "no auth", not "the empty string is the token".
        return None if isinstance(v, str) and not v.strip() else v

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None
