"""The architecture, enforced: a pure engine (no HTTP, no service) that the service
and the CLI reach only through its facade; research-only code off the production
path; no import cycle among the application's modules; no function-local imports
except where the function says why."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

APP = ROOT / "app"

# What the service and the CLI may import from the engine: the facade, its typed
# contracts and errors, and the scenario document schema (the API's field names).
ENGINE_SURFACE = {
    "app.engine",
    "app.engine.api",
    "app.engine.contracts",
    "app.engine.errors",
    "app.engine.model.schemas",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(APP.rglob("*.py")):
        yield module_name(path), path, ast.parse(path.read_text(), str(path))


def _imported(node: ast.AST, here: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module is not None:
        if node.level:  # relative: resolve against the package
            base = here.split(".")[: -node.level]
            return [".".join([*base, node.module])]
        return [node.module]
    return []


def top_level_imports(tree: ast.Module, here: str) -> list[str]:
    """Imports executed at import time (not under `if TYPE_CHECKING:`)."""
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ():
            out += _imported(sub, here)
    return out


def test_the_engine_knows_nothing_of_the_service_or_http() -> None:
    for name, path, tree in modules():
        if not name.startswith("app.engine"):
            continue
        for node in ast.walk(tree):
            for mod in _imported(node, name):
                assert not mod.startswith(("app.service", "fastapi", "starlette", "uvicorn")), (
                    f"{path}: the engine imports {mod}"
                )
                assert not mod.startswith("app.research"), (
                    f"{path}: research-only code on the production path ({mod})"
                )


@pytest.mark.parametrize("where", ["app.service", "app.cli"])
def test_the_service_and_cli_use_only_the_engine_facade(where: str) -> None:
    for name, path, tree in modules():
        if not name.startswith(where):
            continue
        for node in ast.walk(tree):
            for mod in _imported(node, name):
                if mod.startswith("app.engine"):
                    assert mod in ENGINE_SURFACE, f"{path}: imports {mod} past the facade"
                assert not mod.startswith("app.research"), f"{path}: imports {mod}"


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    names = {name for name, _, _ in modules()}
    for name, _, tree in modules():
        deps = set()
        for mod in top_level_imports(tree, name):
            # `from pkg import x` may name a submodule: count the longest known prefix
            while mod and mod not in names:
                mod = mod.rpartition(".")[0]
            if mod and mod != name and not name.startswith(mod + "."):
                deps.add(mod)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle = [*stack[stack.index(m) :], m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_function_local_imports_say_why() -> None:
    """A function-local import needs a reason in a comment on its line, the line
    above, or the module docstring (e.g. the CLI keeps `--help` fast)."""
    for _name, path, tree in modules():
        lines = path.read_text().splitlines()
        doc = ast.get_docstring(tree) or ""
        module_reason = "imported inside" in doc or ("import" in doc and "on purpose" in doc)
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    here = lines[node.lineno - 1] + lines[node.lineno - 2]
                    assert module_reason or "#" in here, (
                        f"{path}:{node.lineno}: function-local import without a stated reason"
                    )


def test_the_engine_imports_without_statsmodels() -> None:
    """Every solver worker imports the engine and never forecasts: statsmodels (with
    pandas and scipy, ~120 MB and ~1 s per process) is imported when the forecaster
    first fits a model, not with the engine (server + two workers: 600 -> 260 MB)."""
    code = (
        "import sys, app.engine.api, app.service.worker; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'statsmodels', 'pandas'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
