"""A real Prometheus for tests: `PrometheusServer` runs the `prometheus` binary
(Debian's package) with a generated config scraping the given targets, its TSDB
in a temporary directory, on a free port of 127.0.0.1.

The fixtures are in `support.fixtures`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

SKIP_REASON = "prometheus not installed: apt-get install prometheus"
READY_TIMEOUT_S = 60.0


def prometheus_binary() -> str | None:
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _duration(s: float) -> str:
    return f"{round(s * 1000)}ms"


class PrometheusServer:
    """One Prometheus process. `start()` waits (bounded) for /-/ready."""

    def __init__(
        self,
        targets: Sequence[str],
        workdir: Path,
        *,
        scrape_interval_s: float = 1.0,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or prometheus_binary()
        if self.binary is None:
            raise FileNotFoundError(SKIP_REASON)
        self.targets = list(targets)
        self.workdir = workdir
        self.scrape_interval_s = scrape_interval_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        interval = _duration(self.scrape_interval_s)
        timeout = _duration(min(self.scrape_interval_s, 10.0))
        targets = ", ".join(f"'{t}'" for t in self.targets)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {timeout}\n"
            f"  evaluation_interval: 1m\n"
            "scrape_configs:\n"
            "  - job_name: vllm\n"
            "    static_configs:\n"
            f"      - targets: [{targets}]\n"
        )
        return config

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        last = ""
        for _attempt in range(3):  # the free port may be taken before Prometheus binds it
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(self.binary),
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1d",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready(ready_timeout_s):
                return self
            last = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"prometheus did not become ready; log tail:\n{last}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return True
            time.sleep(0.2)
        return False

    def query(self, expr: str, at_s: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result (raises on errors: for test set-up only)."""
        params: dict[str, str] = {"query": expr}
        if at_s is not None:
            params["time"] = repr(at_s)
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result

    def wait_for_data(self, expr: str, timeout_s: float = 60.0) -> None:
        """Until `expr` has a result (the first scrapes are in), bounded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self.query(expr):
                    return
            time.sleep(0.25)
        raise TimeoutError(f"no data for {expr} within {timeout_s} s")

    def pause(self) -> None:
        """SIGSTOP: Prometheus neither answers nor scrapes (data of the pause is lost)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
