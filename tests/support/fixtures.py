"""pytest fixtures for tests that need a real Prometheus and a vLLM-like exporter.

Use them from a test module with `pytest_plugins = ["support.fixtures"]` (tests/
is on sys.path, as for service_support). Without the `prometheus` binary they
skip: "prometheus not installed: apt-get install prometheus".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from support.prometheus import SKIP_REASON, PrometheusServer, prometheus_binary
from support.vllm_exporter import Stream, VllmExporter, aligned_replay


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = prometheus_binary()
    if path is None:
        pytest.skip(SKIP_REASON)
    return path


@pytest.fixture
def exporter_factory() -> Iterator[Callable[[Sequence[Stream]], VllmExporter]]:
    """`make(streams)` → a started VllmExporter, stopped at teardown."""
    started: list[VllmExporter] = []

    def make(streams: Sequence[Stream]) -> VllmExporter:
        exp = VllmExporter(streams).start()
        started.append(exp)
        return exp

    yield make
    for exp in started:
        exp.stop()


@pytest.fixture
def prometheus_factory(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., PrometheusServer]]:
    """`make(targets, scrape_interval_s=1.0)` → a ready PrometheusServer (bounded
    wait for /-/ready), stopped at teardown."""
    started: list[PrometheusServer] = []

    def make(targets: Sequence[str], scrape_interval_s: float = 1.0) -> PrometheusServer:
        server = PrometheusServer(
            targets,
            tmp_path_factory.mktemp("prometheus"),
            scrape_interval_s=scrape_interval_s,
            binary=prometheus_bin,
        )
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def vllm_exporter(
    exporter_factory: Callable[[Sequence[Stream]], VllmExporter],
) -> VllmExporter:
    """The "conv" trace, one trace minute per 2 s, from a 2-s boundary."""
    return exporter_factory([Stream(aligned_replay(2, 2.0), model_name="llama")])


@pytest.fixture
def prometheus(
    prometheus_factory: Callable[..., PrometheusServer], vllm_exporter: VllmExporter
) -> PrometheusServer:
    """A Prometheus scraping `vllm_exporter` every second, its first samples in."""
    server = prometheus_factory([vllm_exporter.target], 1.0)
    server.wait_for_data("vllm:request_success_total")
    return server
