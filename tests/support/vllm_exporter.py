"""A trace-replay stand-in for vLLM's `/metrics`: serves the Prometheus text format
with vLLM's metric names, counting the requests of a per-minute demand trace as
they "complete".

    python -m tests.support.vllm_exporter --trace code --seconds-per-minute 2 \
        --step-at-s 60 --step-factor 3 --port 9400

Counts follow a deterministic cumulative curve: within trace minute m the
requests complete at a constant rate (n_m per minute, times the scale, times the
step factor once the step is reached), and `vllm:request_success_total` is the
whole number of requests completed so far. Each completed request j carries its
minute's mean prompt/generation length and deterministic TTFT and TPOT values, and
is counted in every counter and histogram at once, so the counters are monotonic
and consistent with each other (prompt tokens / requests = mean prompt length;
histogram _count = observations, _sum = their total, buckets cumulative). As in
vLLM, TPOT is observed once per output token after the first.

`TraceReplay.served(t)` is what the exporter has counted at Unix time t, so a
test knows exactly what any window held.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# vLLM's bucket bounds
TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1),
    *(0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
SQRT2_FRAC = math.sqrt(2.0) - 1.0
DEFAULT_INPUT_TOKENS = 1000.0
DEFAULT_OUTPUT_TOKENS = 100.0


@dataclass(frozen=True, slots=True)
class Minute:
    requests: float
    input_tokens_mean: float | None = None
    output_tokens_mean: float | None = None


def load_trace(name: str = "code") -> tuple[Minute, ...]:
    """A per-minute trace of app/data/trace_profiles.json (Azure LLM inference 2023)."""
    data: dict[str, Any]
    try:
        from app.engine.model.demo import trace_profiles

        data = trace_profiles()
    except ImportError:  # run as a script outside the repository's environment
        path = Path(__file__).resolve().parents[2] / "app" / "data" / "trace_profiles.json"
        data = json.loads(path.read_text("utf-8"))
    traces = data["traces"]
    if name not in traces:
        raise ValueError(f"unknown trace {name!r}; known: {', '.join(sorted(traces))}")
    return minutes_from_json(traces[name]["per_minute"])


def minutes_from_json(rows: Sequence[Any]) -> tuple[Minute, ...]:
    """From a list of counts or of {"requests", "input_tokens_mean"?, "output_tokens_mean"?}."""
    out = []
    for row in rows:
        if isinstance(row, int | float):
            out.append(Minute(float(row)))
        else:
            out.append(
                Minute(
                    float(row["requests"]),
                    row.get("input_tokens_mean"),
                    row.get("output_tokens_mean"),
                )
            )
    if not out or sum(m.requests for m in out) <= 0:
        raise ValueError("the trace has no requests")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TraceReplay:
    """The cumulative request curve of a trace replayed from `start_s` (Unix time):
    one trace minute lasts `seconds_per_minute`; from `step_at_s` after the start
    the rate is multiplied by `step_factor`; the trace loops unless `loop` is False
    (then no request completes after its end)."""

    minutes: tuple[Minute, ...]
    start_s: float
    seconds_per_minute: float = 60.0
    scale: float = 1.0
    step_at_s: float | None = None
    step_factor: float = 1.0
    loop: bool = True
    _prefix: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seconds_per_minute <= 0 or self.scale < 0 or self.step_factor < 0:
            raise ValueError("seconds_per_minute must be positive, scale and factor >= 0")
        prefix = [0.0]
        for m in self.minutes:
            prefix.append(prefix[-1] + m.requests)
        object.__setattr__(self, "_prefix", tuple(prefix))

    def _base(self, elapsed_s: float) -> float:
        """Requests completed `elapsed_s` after the start, before the step."""
        if elapsed_s <= 0:
            return 0.0
        n = len(self.minutes)
        pos = elapsed_s / self.seconds_per_minute  # in trace minutes
        loops, rem = divmod(pos, n)
        if not self.loop and loops >= 1:
            return self._prefix[n] * self.scale
        m = int(rem)
        frac = rem - m
        total = loops * self._prefix[n] + self._prefix[m] + frac * self.minutes[m].requests
        return total * self.scale

    def cumulative(self, t_s: float) -> float:
        """Requests completed by Unix time `t_s`, as a real number."""
        e = t_s - self.start_s
        base = self._base(e)
        if self.step_at_s is not None and e > self.step_at_s:
            base += (self.step_factor - 1.0) * (base - self._base(self.step_at_s))
        return base

    def served(self, t_s: float) -> int:
        """`vllm:request_success_total` at Unix time `t_s`."""
        return math.floor(self.cumulative(t_s) + 1e-9)

    def minute_index(self, t_s: float) -> int:
        """The absolute trace minute (0, 1, ... counting loops) at `t_s`."""
        return max(0, math.floor((t_s - self.start_s) / self.seconds_per_minute))

    def minute(self, index: int) -> Minute:
        return self.minutes[index % len(self.minutes)]

    def rate(self, t_s: float) -> float:
        """Requests per second at `t_s`."""
        e = t_s - self.start_s
        if e < 0 or (not self.loop and e >= len(self.minutes) * self.seconds_per_minute):
            return 0.0
        r = self.minute(self.minute_index(t_s)).requests * self.scale / self.seconds_per_minute
        if self.step_at_s is not None and e > self.step_at_s:
            r *= self.step_factor
        return r


def aligned_replay(window_s: int, seconds_per_minute: float, trace: str = "conv") -> TraceReplay:
    """A replay of a built-in trace from the last window boundary, so that trace
    minutes line up with windows when seconds_per_minute is a multiple of window_s."""
    return TraceReplay(
        load_trace(trace),
        start_s=float(int(time.time() // window_s) * window_s),
        seconds_per_minute=seconds_per_minute,
    )


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * len(bounds)  # non-cumulative; rendered cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        if times <= 0:
            return
        i = bisect.bisect_left(self.bounds, value)
        if i < len(self.buckets):
            self.buckets[i] += times
        self.count += times
        self.sum += value * times


@dataclass(slots=True)
class Stream:
    """One model (and optionally one gateway route) replaying one trace."""

    replay: TraceReplay
    model_name: str = "llama"
    route: str | None = None
    ttft_s: float = 0.25  # mean of the TTFT values (they spread ±50 %)
    tpot_s: float = 0.03
    completed: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft: _Histogram = field(default_factory=lambda: _Histogram(TTFT_BUCKETS))
    tpot: _Histogram = field(default_factory=lambda: _Histogram(TPOT_BUCKETS))
    _minute: int = 0

    def labels(self) -> dict[str, str]:
        out = {"model_name": self.model_name}
        if self.route is not None:
            out["route"] = self.route
        return out

    def advance(self, t_s: float) -> None:
        """Count every request completed by `t_s`, each in the minute it completed in."""
        target = self.replay.served(t_s)
        sp = self.replay.seconds_per_minute
        while self.completed < target:
            minute_end = self.replay.start_s + (self._minute + 1) * sp
            upto = min(target, self.replay.served(minute_end))
            shape = self.replay.minute(self._minute)
            p = round(shape.input_tokens_mean or DEFAULT_INPUT_TOKENS)
            o = max(1, round(shape.output_tokens_mean or DEFAULT_OUTPUT_TOKENS))
            for j in range(self.completed, upto):
                u = ((j + 1) * GOLDEN) % 1.0
                v = ((j + 1) * SQRT2_FRAC) % 1.0
                self.ttft.observe(self.ttft_s * (0.5 + u))
                self.tpot.observe(self.tpot_s * (0.5 + v), times=o - 1)
                self.prompt_tokens += p
                self.generation_tokens += o
            self.completed = max(self.completed, upto)
            if self.completed < target:
                self._minute += 1

    def running(self, t_s: float) -> float:
        """Little's law: requests in flight = rate × mean latency of a request."""
        shape = self.replay.minute(self.replay.minute_index(t_s))
        o = shape.output_tokens_mean or DEFAULT_OUTPUT_TOKENS
        return self.replay.rate(t_s) * (self.ttft_s + o * self.tpot_s)


def _fmt_labels(labels: dict[str, str]) -> str:
    parts = []
    for k, v in labels.items():
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{v}"')
    return "{" + ",".join(parts) + "}"


def _fmt(x: float) -> str:
    return repr(float(x))


def render(streams: Sequence[Stream], t_s: float) -> str:
    """The exposition of every stream at `t_s` (advancing their counts first)."""
    for s in streams:
        s.advance(t_s)
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    def one_value(
        name: str,
        kind: str,
        help_: str,
        value: Callable[[Stream], float],
        extra_labels: dict[str, str] | None = None,
    ) -> None:
        """A family with one sample per stream."""
        family(name, kind, help_)
        for s in streams:
            lab = _fmt_labels(s.labels() | (extra_labels or {}))
            lines.append(f"{name}{lab} {_fmt(value(s))}")

    one_value(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests currently running.",
        lambda s: s.running(t_s),
    )
    one_value(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        lambda s: s.completed,
        {"finished_reason": "stop"},
    )
    one_value(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        lambda s: s.prompt_tokens,
    )
    one_value(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        lambda s: s.generation_tokens,
    )
    for name, attr, help_ in (
        ("vllm:time_to_first_token_seconds", "ttft", "Histogram of time to first token."),
        ("vllm:time_per_output_token_seconds", "tpot", "Histogram of time per output token."),
    ):
        family(name, "histogram", help_)
        for s in streams:
            h: _Histogram = getattr(s, attr)
            cumulative = 0
            for bound, n in zip(h.bounds, h.buckets, strict=True):
                cumulative += n
                lab = _fmt_labels(s.labels() | {"le": _fmt(bound)})
                lines.append(f"{name}_bucket{lab} {_fmt(cumulative)}")
            lab = _fmt_labels(s.labels() | {"le": "+Inf"})
            lines.append(f"{name}_bucket{lab} {_fmt(h.count)}")
            lines.append(f"{name}_sum{_fmt_labels(s.labels())} {_fmt(h.sum)}")
            lines.append(f"{name}_count{_fmt_labels(s.labels())} {_fmt(h.count)}")
    return "\n".join(lines) + "\n"


class VllmExporter:
    """The HTTP server (a daemon thread) serving `render(streams, clock())` on /metrics."""

    def __init__(
        self,
        streams: Sequence[Stream],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.streams = list(streams)
        self.clock = clock
        self.scrapes = 0
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body = exporter.metrics_text().encode()
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                    status = 200
                else:
                    body, ctype, status = b"see /metrics\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static target."""
        host = self._server.server_address[0]
        return f"{host if isinstance(host, str) else host.decode()}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def metrics_text(self) -> str:
        with self._lock:
            self.scrapes += 1
            return render(self.streams, self.clock())

    def start(self) -> VllmExporter:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> VllmExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.vllm_exporter",
        description="Serve vLLM-named Prometheus metrics replaying a per-minute demand trace.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--trace", default="code", help="trace in app/data/trace_profiles.json")
    p.add_argument(
        "--trace-file",
        type=Path,
        help="JSON list of per-minute counts or {requests, input_tokens_mean, output_tokens_mean}",
    )
    p.add_argument("--model-name", default="llama", help="the model_name label")
    p.add_argument("--route", help="also label the series route=ROUTE (a gateway's view)")
    p.add_argument(
        "--seconds-per-minute",
        type=float,
        default=60.0,
        help="real seconds per trace minute (time compression; default 60 = real time)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    p.add_argument("--step-at-s", type=float, help="seconds after the start of a demand step")
    p.add_argument("--step-factor", type=float, default=1.0, help="rate multiplier from the step")
    p.add_argument("--no-loop", action="store_true", help="stop counting at the trace's end")
    p.add_argument("--ttft-s", type=float, default=0.25, help="mean time to first token")
    p.add_argument("--tpot-s", type=float, default=0.03, help="mean time per output token")
    p.add_argument("--start-s", type=float, help="Unix time the replay starts (default: now)")
    p.add_argument("--duration-s", type=float, help="exit after this many seconds")
    args = p.parse_args(argv)

    if args.trace_file is not None:
        minutes = minutes_from_json(json.loads(args.trace_file.read_text("utf-8")))
    else:
        minutes = load_trace(args.trace)
    replay = TraceReplay(
        minutes,
        start_s=time.time() if args.start_s is None else args.start_s,
        seconds_per_minute=args.seconds_per_minute,
        scale=args.scale,
        step_at_s=args.step_at_s,
        step_factor=args.step_factor,
        loop=not args.no_loop,
    )
    stream = Stream(
        replay, model_name=args.model_name, route=args.route, ttft_s=args.ttft_s, tpot_s=args.tpot_s
    )
    exporter = VllmExporter([stream], host=args.host, port=args.port).start()
    print(f"serving {exporter.url}", flush=True)
    try:
        if args.duration_s is not None:
            time.sleep(args.duration_s)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
