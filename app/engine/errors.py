"""The engine's exceptions. Each names the offending field (a dotted/indexed path
into the input document) so the service can map it to a 4xx problem response.

They pickle (`__reduce__`): an engine error raised in a solver process reaches the
service as itself, not as a generic failure."""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(EngineError):
    """Input that cannot be accepted. `field` is a path such as
    `query_types[2].ttft_s`; `message` says what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.message))

    def under(self, prefix: str) -> InputError:
        """The same error with `prefix` in front of its field (the document's place
        in a larger request, e.g. `scenario` or `current_plan`)."""
        return type(self)(f"{prefix}.{self.field}" if prefix else self.field, self.message)


class ScenarioError(InputError):
    """A scenario document that violates the schema or refers to unknown ids."""


class PlanFormatError(InputError):
    """A plan document that is malformed (as opposed to merely infeasible: an
    infeasible plan is evaluated and its violations reported)."""


class SolverError(EngineError):
    """A solver failed for a reason other than the input (e.g. CBC crashed)."""
