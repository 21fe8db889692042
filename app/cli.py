"""Command line: `llm-allocator solve | evaluate | audit | demo-scenario | serve`.

Documents are JSON files (or `-` for standard input); results go to standard
output as JSON. Input errors exit with status 2 and a message naming the field.

The engine and the service are imported inside the commands that need them, on
purpose: `llm-allocator --help` and `demo-scenario` should not pay for numpy,
Pyomo and FastAPI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from app.engine.contracts import SolverOptions
from app.engine.errors import InputError


class CliInputError(Exception):
    """Bad input to the command line (unreadable file, invalid JSON, a document of
    the wrong kind): one line on stderr, exit status 2."""


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliInputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliInputError(f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliInputError(f"{path} is not valid JSON: {exc}") from None


def _read_scenario(path: str) -> Any:
    """A scenario document; a plan (or a solve's answer) given in its place is named
    as such (it was "query_types: Field required", which says neither)."""
    doc = _read_json(path)
    is_plan = isinstance(doc, dict) and ("deployments" in doc or "plan" in doc)
    if is_plan and "query_types" not in doc:
        raise CliInputError(
            f"{path} is a plan, not a scenario: this argument takes the scenario "
            "(evaluate and audit take the scenario first, then the plan)"
        )
    return doc


def _read_plan(path: str) -> Any:
    """A plan document, or the output of `solve` (its `plan`)."""
    from app.engine.api import plan_of

    return plan_of(_read_json(path))


def _print(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _positive(v: str) -> float:
    f = float(v)
    if not f > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return f


def _factor(v: str) -> float:
    f = float(v)
    if not 0.1 <= f <= 10:
        raise argparse.ArgumentTypeError("must be within [0.1, 10]")
    return f


def _options(a: argparse.Namespace) -> SolverOptions:
    """The flags through the one solver-options schema (bad values: exit 2 naming
    the flag)."""
    algorithm = getattr(a, "algorithm", "milp")  # `audit` solves the MILP
    budget = a.time_limit if algorithm == "milp" and a.time_limit else a.time_budget
    values = {
        "algorithm": algorithm,
        "time_budget_s": budget,
        "seed": getattr(a, "seed", 0),
        "relative_gap": a.gap,
        "threads": a.threads,
        "backend": a.backend,
    }
    try:
        return SolverOptions.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "options"
        flag = _FLAGS.get(name, name)
        raise CliInputError(f"{flag}: {err['msg']}") from None


_FLAGS = {
    "time_budget_s": "--time-budget/--time-limit",
    "seed": "--seed",
    "relative_gap": "--gap",
    "threads": "--threads",
    "backend": "--backend",
}


def cmd_solve(a: argparse.Namespace) -> None:
    from app.engine.api import solve_documents

    scenario = _read_scenario(a.scenario)
    current = _read_plan(a.current) if a.current else None
    _print(solve_documents(scenario, current_plan_doc=current, options=_options(a)))


def cmd_evaluate(a: argparse.Namespace) -> None:
    from app.engine.api import evaluate_documents

    scenario, plan = _read_scenario(a.scenario), _read_plan(a.plan)
    current = _read_plan(a.current) if a.current else None
    _print(
        evaluate_documents(
            scenario,
            plan,
            current,
            delay_factor=a.delay_inflate or a.inflate,
            error_factor=a.error_inflate or a.inflate,
            demand_factor=a.demand_inflate,
        )
    )


def cmd_audit(a: argparse.Namespace) -> None:
    from app.engine.api import audit_documents

    scenario, plan = _read_scenario(a.scenario), _read_plan(a.plan)
    o = _options(a)  # validates --gap, --threads, --backend
    _print(
        audit_documents(
            scenario,
            plan,
            time_limit_s=a.time_limit,
            relative_gap=o.relative_gap,
            threads=o.threads,
            backend=o.backend,
        )
    )


def cmd_demo(_: argparse.Namespace) -> None:
    from app.engine.api import demo_scenario_document

    _print(demo_scenario_document())


def cmd_serve(a: argparse.Namespace) -> None:
    from app.service.server import serve

    serve(host=a.host, port=a.port, db=a.db, token=a.token)


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line naming it (`error: argument --time-budget: must be > 0`)
    and status 2, as every other bad input of the command line; `--help` has the
    usage. (argparse printed the whole usage first.) Subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="llm-allocator", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("solve", help="plan for a scenario (prints the plan JSON)")
    s.add_argument("scenario")
    s.add_argument("--algorithm", choices=["gh", "agh", "milp"], default="agh")
    s.add_argument(
        "--time-budget", type=_positive, default=1.0, help="AGH anytime budget, seconds (default 1)"
    )
    s.add_argument(
        "--time-limit",
        type=_positive,
        default=None,
        help="MILP wall-clock limit, seconds (default: --time-budget)",
    )
    s.add_argument("--gap", type=float, default=1e-4, help="MILP relative gap")
    s.add_argument("--threads", type=int, default=1, help="MILP solver threads")
    s.add_argument("--backend", default="highs", help="MILP solver: highs (default) or cbc")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--current", help="live plan JSON: warm start + change cost")
    s.set_defaults(func=cmd_solve)

    e = sub.add_parser("evaluate", help="check and price a plan")
    e.add_argument("scenario")
    e.add_argument("plan")
    e.add_argument("--current", help="live plan JSON, for the change cost")
    e.add_argument(
        "--inflate",
        type=_factor,
        default=1.0,
        help="stress: multiply latencies and error rates (1.0-1.5)",
    )
    e.add_argument("--delay-inflate", type=_factor, default=None)
    e.add_argument("--error-inflate", type=_factor, default=None)
    e.add_argument("--demand-inflate", type=_factor, default=1.0)
    e.set_defaults(func=cmd_evaluate)

    au = sub.add_parser("audit", help="exact MILP bound and the plan's certified gap")
    au.add_argument("scenario")
    au.add_argument("plan")
    au.add_argument("--time-limit", type=_positive, default=60.0)
    au.set_defaults(time_budget=60.0)
    au.add_argument("--gap", type=float, default=1e-4)
    au.add_argument("--threads", type=int, default=1)
    au.add_argument("--backend", default="highs", help="MILP solver: highs (default) or cbc")
    au.set_defaults(func=cmd_audit)

    d = sub.add_parser("demo-scenario", help="print the built-in demo scenario")
    d.set_defaults(func=cmd_demo)

    sv = sub.add_parser("serve", help="run the REST service")
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--db", default=None, help="SQLite path")
    sv.add_argument("--token", default=None, help="bearer token required for writes")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except InputError as exc:
        print(f"error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    except CliInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`llm-allocator demo-scenario | head`): end quietly.
        # Python would report the pipe again while flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # 141, what a shell reports for `cat` in its place
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
