"""Schemas of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)

# strict: no bool-as-number or number-as-string coercion in what we define (the
# engine's scenario schemas keep pydantic's lax mode).
from app.service.schemas.common import (
    RESPONSE,
)


class Health(BaseModel):
    model_config = RESPONSE
    status: Literal["ok", "not ready"]
    checks: dict[str, str] = Field(default_factory=dict)
