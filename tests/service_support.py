"""Helpers shared by the service tests: settings for a fast test app, an
in-process client with the lifespan running, and a real server in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from conftest import ROOT
from fastapi.testclient import TestClient

from app.service.app import create_app
from app.service.runtime import Running, Runtime
from app.service.settings import Settings

TOKEN = "test-token-123"


def perf_case(gpu: str = "H100-SXM", **fields: Any) -> dict[str, Any]:
    """A small /v1/perf/estimate case: Llama-3.1-8B in bf16, 100 tokens in and 10
    out on `gpu`, with `fields` on top."""
    case = {"model": "Llama-3.1-8B", "gpu": gpu, "precision": "bf16"}
    return {**case, "input_tokens": 100, "output_tokens": 10, **fields}


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db_path": tmp_path / "svc.db",
        "time_budget_s": 0.2,
        "retry_backoff_initial_s": 0.2,
        "retry_backoff_max_s": 1.0,
        "long_poll_max_s": 30.0,
        "audit_default_time_limit_s": 20.0,
        # Background improvements publish extra plan versions: only the tests of
        # them (test_service_improve.py) turn them on.
        "improve_budget_s": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def client_for(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def running(client: TestClient) -> Running:
    """The objects the app's lifespan owns (the client must be started)."""
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert rt.running is not None, "the app is not running"
    return rt.running


def wait_for_plan(
    client: TestClient | httpx.Client, generation: int, timeout_s: float = 60
) -> dict[str, Any]:
    """Long-poll until the plan for `generation` is live (or re-planning failed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get("/v1/plan", params={"wait_for_generation": generation, "timeout_s": 10})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if (body["observed_generation"] or 0) >= generation:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"no plan for generation {generation}: {body['conditions']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`serve()` in a subprocess, as the CLI would run it."""

    def __init__(self, db: Path, token: str | None = None, **env: str) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = (
            "from app.service.server import serve; "
            f"serve(host='127.0.0.1', port={self.port}, db={str(db)!r}, token={token!r})"
        )
        environ = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LLM_ALLOCATOR_TIME_BUDGET_S": "0.2",
            "LLM_ALLOCATOR_IMPROVE_BUDGET_S": "0",
            "LLM_ALLOCATOR_LOG_LEVEL": "warning",
            **env,
        }
        # Output to a file, not a pipe nobody drains (a full pipe would block it).
        self.log_path = db.with_name(db.name + f".{self.port}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # Its own session, so stop() can kill the whole group.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("server did not become healthy")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def kill9(self) -> None:
        """SIGKILL the server only (no clean-up at all), as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Solver workers of a killed server exit on their own once their parent is
        # gone; make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
