"""The command line (app/cli.py) through `main(argv)`, and once through
`python3 -m app` to check the module entry point."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from app.cli import main
from app.engine.model.demo import demo_scenario_document
from app.engine.model.schemas import parse_scenario
from app.service.server import listen


def _write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else None), out.err


@pytest.fixture
def demo_file(tmp_path: Path) -> str:
    return _write(tmp_path / "demo.json", demo_scenario_document())


@pytest.fixture
def solved(demo_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    rc, doc, _ = _run(["solve", demo_file, "--algorithm", "gh"], capsys)
    assert rc == 0
    return _write(tmp_path / "solved.json", doc)


def test_demo_scenario_prints_a_valid_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc, err = _run(["demo-scenario"], capsys)
    assert rc == 0 and err == ""
    assert doc == demo_scenario_document()
    assert len(parse_scenario(doc).query_types) == 6


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "demo-scenario"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    parse_scenario(json.loads(proc.stdout))


def test_solve_gh_on_the_demo_is_feasible(
    demo_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc, _ = _run(["solve", demo_file, "--algorithm", "gh"], capsys)
    assert rc == 0
    assert doc["algorithm"] == "gh"
    assert doc["termination"] == "completed"
    assert doc["plan"]["feasible"] is True
    assert doc["plan"]["violations"] == []
    assert doc["objective"] == pytest.approx(doc["plan"]["cost"]["total"])
    assert doc["plan"]["deployments"]


def test_solve_agh_on_the_demo_is_feasible(
    demo_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc, _ = _run(
        ["solve", demo_file, "--algorithm", "agh", "--time-budget", "0.3", "--seed", "1"], capsys
    )
    assert rc == 0
    assert doc["algorithm"] == "agh" and doc["seed"] == 1
    assert doc["time_budget_s"] == 0.3
    assert doc["termination"] in ("converged", "deadline")
    assert doc["plan"]["feasible"] is True


def test_solve_with_current_plan_warm_starts(
    demo_file: str, solved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    current = json.loads(Path(solved).read_text())["plan"]
    cur_file = _write(Path(solved).with_name("current.json"), current)
    rc, doc, _ = _run(["solve", demo_file, "--time-budget", "0.3", "--current", cur_file], capsys)
    assert rc == 0
    # Read as the live plan: the result descends from it, or pays to change it
    # (whether a cold start beats the warm one in 0.3 s is the search's business).
    assert doc["warm_start_used"] is True or doc["plan"]["cost"]["change_cost"] > 0
    assert doc["plan"]["feasible"] is True
    assert doc["objective"] <= current["cost"]["total"] + 1e-9


def test_evaluate_prints_stress_figures(
    demo_file: str, solved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `solved` is the solve output itself ({"algorithm", "plan": {...}}): accepted as PLAN
    rc, doc, _ = _run(["evaluate", demo_file, solved, "--inflate", "1.5"], capsys)
    assert rc == 0
    assert doc["feasible"] is True
    stress = doc["stress"]
    assert stress["delay_factor"] == 1.5 and stress["error_factor"] == 1.5
    assert stress["demand_factor"] == 1.0
    assert stress["demand_rps"] == pytest.approx(
        sum(q["arrival_rate"] for q in demo_scenario_document()["query_types"])
    )
    for key in ("slo_violating_rps", "accuracy_violating_rps", "realised_cost", "violation_share"):
        assert stress[key] >= 0
    assert stress["realised_cost"] >= doc["objective"]


def test_evaluate_accepts_plan_document_or_solve_output_alike(
    demo_file: str, solved: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_only = _write(tmp_path / "plan.json", json.loads(Path(solved).read_text())["plan"])
    rc1, a, _ = _run(["evaluate", demo_file, solved], capsys)
    rc2, b, _ = _run(["evaluate", demo_file, plan_only], capsys)
    assert rc1 == rc2 == 0
    assert a == b
    assert a["stress"] is None  # no inflation asked for


def test_evaluate_separate_inflation_factors(
    demo_file: str, solved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc, _ = _run(
        ["evaluate", demo_file, solved, "--delay-inflate", "1.2", "--demand-inflate", "1.1"],
        capsys,
    )
    assert rc == 0
    s = doc["stress"]
    assert (s["delay_factor"], s["error_factor"], s["demand_factor"]) == (1.2, 1.0, 1.1)


def test_bad_scenario_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = demo_scenario_document()
    doc["query_types"][1]["arrival_rate"] = -3.0
    bad = _write(tmp_path / "bad.json", doc)
    rc, out, err = _run(["solve", bad, "--algorithm", "gh"], capsys)
    assert rc == 2
    assert out is None
    assert "query_types[1].arrival_rate" in err


def test_bad_plan_exits_2_naming_the_field(
    demo_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(
        tmp_path / "plan.json",
        {"deployments": [{"model": "m", "gpu": "g", "precision": "bf16", "tp": 1, "pp": 1}]},
    )
    rc, out, err = _run(["evaluate", demo_file, bad], capsys)
    assert rc == 2 and out is None
    assert "deployments[0].replicas" in err


def test_nonexistent_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #13 §6: bad input exits 2 as the README promises (it was 1)."""
    missing = str(tmp_path / "nope.json")
    rc, out, err = _run(["solve", missing], capsys)
    assert rc == 2 and out is None
    assert err.startswith("error: cannot read") and "nope.json" in err
    assert err.count("\n") == 1


def test_invalid_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    rc, _, err = _run(["solve", str(path)], capsys)
    assert rc == 2 and "not valid JSON" in err and err.count("\n") == 1


def test_a_scenario_is_not_accepted_as_a_plan(
    demo_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate scenario.json scenario.json` used to evaluate an empty plan."""
    rc, out, err = _run(["evaluate", demo_file, demo_file], capsys)
    assert rc == 2 and out is None
    assert "plan.deployments" in err and "scenario" in err


def test_solve_current_takes_the_output_of_solve(
    demo_file: str, solved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--current` accepts `solve`'s output (its plan), as `evaluate` does; it used
    to read it as an empty plan (no warm start, no change cost)."""
    rc, doc, _ = _run(["solve", demo_file, "--algorithm", "agh", "--current", solved], capsys)
    assert rc == 0
    assert doc["warm_start_used"] is True or doc["plan"]["cost"]["change_cost"] > 0


def test_a_closed_pipe_ends_quietly() -> None:
    """`llm-allocator demo-scenario | head` ended in a BrokenPipeError traceback."""
    out = subprocess.run(
        # `true` exits at once: the write (after ~0.3 s of start-up) meets a closed pipe
        f"{sys.executable} -m app demo-scenario | true; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stderr == ""
    assert out.stdout.strip() in ("0", "141")  # 0 when the whole document fit the pipe


def test_serve_with_a_missing_db_directory_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--db", str(tmp_path / "no/x.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "does not exist" in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["serve", "--port", "99999"], {}, "--port"),
        (["serve"], {"LLM_ALLOCATOR_PORT": "99999"}, "LLM_ALLOCATOR_PORT"),
        (["serve", "--port", "0"], {"LLM_ALLOCATOR_SEED": "-1"}, "LLM_ALLOCATOR_SEED"),
    ],
)
def test_serve_with_a_bad_flag_or_setting_exits_2_naming_it(
    argv: list[str],
    env: dict[str, str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad flag exits 2, as the README says (`--port 99999` exited 1 with
    `invalid setting: LLM_ALLOCATOR_PORT`, naming a variable nobody set)."""
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith(f"error: {named}: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_serve_on_a_taken_port_exits_1_before_creating_the_database(tmp_path: Path) -> None:
    """It exited 3 after creating and seeding a new database: the address is now
    bound first."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", "new.db"]
        out = subprocess.run(
            [sys.executable, "-m", "app", *argv],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 1, out.stderr
    assert out.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert list(tmp_path.iterdir()) == []


def test_the_served_connections_send_without_delay() -> None:
    """The socket `serve` binds must say TCP, or asyncio leaves Nagle on for every
    connection it accepts and each keep-alive answer waits ~40 ms for the client's
    delayed ACK (GET /healthz took 44 ms instead of 1.4 ms)."""
    sock = listen("127.0.0.1", 0)
    accepted: list[int] = []

    async def main() -> None:
        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                raw = transport.get_extra_info("socket")
                accepted.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                done.set()

        done = asyncio.Event()
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            host, port = sock.getsockname()[:2]
            _, writer = await asyncio.open_connection(host, port)
            await done.wait()
            writer.close()

    with sock:
        asyncio.run(asyncio.wait_for(main(), timeout=60))
        assert accepted and accepted[0] != 0
        assert sock.proto == socket.IPPROTO_TCP


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "x.json", "--time-budget", "0"],
        ["solve", "x.json", "--algorithm", "simplex"],
        ["evaluate", "a.json", "b.json", "--inflate", "20"],
        ["frobnicate"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """As the README says of every bad input: status 2 and one line naming it
    (argparse printed its whole usage first)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--help" in err, err
    assert "usage" not in err


def test_a_plan_given_as_the_scenario_is_named(
    solved: str, demo_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`solve plan.json`, or evaluate's arguments swapped, said only
    "query_types: Field required"."""
    for argv in (["solve", solved], ["evaluate", solved, demo_file]):
        rc, out, err = _run(argv, capsys)
        assert rc == 2 and out is None
        assert err == f"error: {solved} is a plan, not a scenario: " + (
            "this argument takes the scenario (evaluate and audit take the scenario first, "
            "then the plan)\n"
        ), err


def test_evaluate_plan_routed_to_slo_infeasible_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = demo_scenario_document()
    doc["query_types"][0]["tpot_s"] = 0.0001  # conversation: no candidate meets 0.1 ms/token
    scen = _write(tmp_path / "s.json", doc)
    plan = _write(
        tmp_path / "p.json",
        {
            "deployments": [
                {
                    "model": "Qwen2.5-7B",
                    "gpu": "H100-SXM",
                    "precision": "bf16",
                    "tp": 1,
                    "pp": 1,
                    "replicas": 4,
                }
            ],
            "routing": [
                {
                    "query_type": q["id"],
                    "deployment": "Qwen2.5-7B@H100-SXM/bf16/tp1pp1",
                    "fraction": 1.0,
                }
                for q in doc["query_types"]
            ],
        },
    )
    rc, out, _ = _run(["evaluate", scen, plan], capsys)
    assert rc == 0
    assert out["feasible"] is False
    assert any(v["constraint"] == "slo" for v in out["violations"])
