"""Shared test set-up: the Hypothesis profile every property test runs under, the
strategies of generated instances, and fixtures several files use.

Hypothesis: the `ci` profile (default) is derandomized with no example database,
so a run is reproducible and a failure is the same failure on every machine; no
per-example deadline (these machines are shared: time is not what a property
test checks). `HYPOTHESIS_PROFILE=dev` explores randomly instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.engine.model.demo import demo_scenario
from app.engine.model.domain import Scenario
from app.research.instances import VARIANTS

ROOT = Path(__file__).resolve().parents[1]

# Prometheus and the vLLM-metrics exporter (tests/support/fixtures.py).
pytest_plugins = ["support.fixtures"]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def generated_instances(
    types: tuple[int, int] = (1, 6),
    models: tuple[int, int] = (1, 6),
    tiers: tuple[int, ...] = (2, 4, 6, 10),
) -> st.SearchStrategy[tuple[int, int, int, int, str]]:
    """Arguments of `app.research.instances.generate` (types, models, tiers, seed,
    variant)."""
    return st.tuples(
        st.integers(*types),
        st.integers(*models),
        st.sampled_from(tiers),
        st.integers(0, 10_000),
        st.sampled_from(VARIANTS),
    )


@pytest.fixture(scope="session")
def demo() -> Scenario:
    """The built-in demo scenario (domain object; frozen, safe to share)."""
    return demo_scenario()


def load_bench(name: str) -> ModuleType:
    """A script of bench/ as a module (bench/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)  # bench scripts import each other by name
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bench() -> Callable[[str], ModuleType]:
    return load_bench
