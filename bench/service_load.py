"""Service load benchmark: GET /v1/plan at a fixed rate during continuous re-planning.

    python3 bench/service_load.py --quick          # 15 s
    python3 bench/service_load.py                  # 60 s, 200 GET/s, 8 updates/s
    python3 bench/service_load.py --client raw     # GETs without httpx (less client CPU)

Starts the real server (`python -m app serve`) on 127.0.0.1 with a free port and a
temporary database, waits for /readyz, then for `--duration` seconds:

* GET driver (open loop): request i is *scheduled* at t0 + i / rate and sent then,
  whatever happened to earlier requests (no coordinated omission). At most
  `--connections` requests are on the wire at once (one per keep-alive connection);
  a request that must wait for a free connection waits in the client, and that wait
  counts. Two latencies per request: from its scheduled time ("corrected", what a
  client with a deadline sees: includes queueing for a connection and any lag of
  this process's event loop) and from the moment it got a connection and was
  handed to the HTTP client ("service"). Errors: non-200 answers and exceptions
  (timeouts included). The client shares the 2 cores with the server: httpx costs
  about 0.4 core at 200 GET/s, `--client raw` (plain asyncio HTTP/1.1) about 0.15.
* Validity: the achieved GET rate, and the CPU that other processes used during
  the load phase (/proc/stat minus server tree minus this process).
* Demand poster: `--update-rate` POST /v1/cluster/demand per second, mode "merge",
  every query type of the cluster (ids from GET /v1/cluster) with its arrival_rate
  scaled by a seeded random factor in [0.6, 1.4] of the base value.
* Update-to-plan: a dedicated watcher long-polls
  GET /v1/plan?wait_for_generation=N on its own connection; for every accepted
  update (202, changed) the time from sending the POST to the watcher seeing
  observed_generation >= its generation. Cross-check: the first response of the
  GET stream showing it (limited by the GET stream's resolution, 1/rate).
* Re-plans: llm_allocator_replans_total (all outcomes) from /metrics before and
  after, per accepted update (1.0 = no coalescing).
* Server RSS: every second, VmRSS summed over the server's process tree (solver
  worker and multiprocessing helpers, via /proc/<pid>/task/*/children); CPU
  seconds (utime + stime) per process of the tree.

After the load phase the driver waits (bounded) for the last update's plan, then
stops the server with SIGTERM and reports its exit code. Prints a markdown table
with PASS/MISS per target; `--json PATH` also writes all numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `app` for the scenario (the server runs from ROOT)
HOST = "127.0.0.1"
REPLANS_RE = re.compile(r'^llm_allocator_replans_total\{outcome="([a-z]+)"\}\s+([0-9.eE+-]+)$')
SOLVE_RE = re.compile(
    r'^llm_allocator_solve_seconds_(sum|count)\{kind="reconcile"\}\s+([0-9.eE+-]+)$'
)
HIST_RE = re.compile(
    r"^llm_allocator_http_request_duration_seconds_bucket\{([^}]*)\}\s+([0-9.eE+-]+)$"
)
LABEL_RE = re.compile(r'(\w+)="([^"]*)"')
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets (issue): 2-core machine, 200 GET/s during continuous re-planning.
TARGET_P99_MS = 50.0
TARGET_U2P_MARGIN_S = 0.5
TARGET_RSS_MB = 400.0


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (bounded walk over /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo and len(out) < 256:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks[:1024]:
            try:
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
            except OSError:
                continue
            todo.extend(int(k) for k in kids)
    return out


def vm_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> tuple[str, float] | None:
    """(command name, utime + stime in seconds) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return cmdline, (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of the live processes of the tree, by role."""
    out: dict[str, float] = {}
    for p in proc_tree(pid):
        c = cpu_s(p)
        if c is not None:
            rl = role(p, pid, c[0])
            out[rl] = out.get(rl, 0.0) + c[1]
    return out


def machine_busy_s() -> float:
    """CPU seconds spent by all CPUs so far, not idle (from /proc/stat)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def role(pid: int, root: int, cmdline: str) -> str:
    if pid == root:
        return "server"
    if "resource_tracker" in cmdline:
        return "mp-resource-tracker"
    if "spawn_main" in cmdline or "forkserver" in cmdline:
        return "solver-worker"
    return "other"


# --------------------------------------------------------------------------- state


@dataclass
class Stats:
    get_sched_ms: list[float] = field(default_factory=list)
    get_service_ms: list[float] = field(default_factory=list)
    get_ok: int = 0
    last_done: float = 0.0
    get_errors: dict[str, int] = field(default_factory=dict)
    get_scheduled: int = 0
    get_dropped: int = 0  # scheduled but not sent: in-flight cap reached
    dispatch_lag_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    post_errors: dict[str, int] = field(default_factory=dict)
    posts_sent: int = 0
    accepted: dict[int, float] = field(default_factory=dict)  # generation -> POST send time
    unchanged: int = 0
    seen_watch: dict[int, float] = field(default_factory=dict)  # generation -> time seen
    seen_stream: dict[int, float] = field(default_factory=dict)
    max_observed_stream: int = 0
    watcher_polls: int = 0
    rss_kb: list[int] = field(default_factory=list)
    cpu: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (role, cpu s)

    def err(self, bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1


def mark_seen(seen: dict[int, float], accepted: dict[int, float], observed: int, t: float) -> None:
    for g in accepted:
        if g <= observed and g not in seen:
            seen[g] = t


# --------------------------------------------------------------------------- server


def start_server(args: argparse.Namespace, port: int, db: Path, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "LLM_ALLOCATOR_TIME_BUDGET_S": str(args.time_budget),
        "LLM_ALLOCATOR_LOG_LEVEL": args.log_level,
        "LLM_ALLOCATOR_DEMO_ON_EMPTY": "true",
    }
    env.pop("LLM_ALLOCATOR_TOKEN", None)
    if args.server_cmd:
        cmd = shlex.split(
            args.server_cmd.format(python=sys.executable, host=HOST, port=port, db=db)
        )
    else:
        cmd = [sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(port)]
        cmd += ["--db", str(db)]
    log = log_path.open("wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen, limit_s: float) -> float:
    t0 = time.monotonic()
    for _ in range(int(limit_s / 0.1) + 1):
        if proc.poll() is not None:
            raise SystemExit(f"server exited during start-up with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            r = await client.get("/readyz", timeout=2.0)
            if r.status_code == 200:
                return time.monotonic() - t0
        await asyncio.sleep(0.1)
        if time.monotonic() - t0 > limit_s:
            break
    raise SystemExit(f"server not ready within {limit_s:.0f} s")


def stop_server(proc: subprocess.Popen, limit_s: float = 30.0) -> tuple[int | None, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        code = None
    return code, time.monotonic() - t0


async def read_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics", timeout=10.0)
    r.raise_for_status()
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        m = REPLANS_RE.match(line)
        if m:
            out[f"replans_{m.group(1)}"] = float(m.group(2))
        m = HIST_RE.match(line)
        if m:
            labels = dict(LABEL_RE.findall(m.group(1)))
            if (labels.get("method"), labels.get("route"), labels.get("status")) == (
                "GET",
                "/v1/plan",
                "200",
            ):
                out[f"get_le_{labels['le']}"] = float(m.group(2))
        m = SOLVE_RE.match(line)
        if m:
            out[f"solve_{m.group(1)}"] = float(m.group(2))
    return out


# --------------------------------------------------------------------------- load


class HttpxGetter:
    """GET /v1/plan with httpx; at most `n` requests on the wire (one per connection)."""

    def __init__(self, client: httpx.AsyncClient, n: int) -> None:
        self.client = client
        self.slots: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            self.slots.put_nowait(i)

    async def fetch(self, slot: int, timeout_s: float) -> tuple[int, bytes]:
        r = await self.client.get("/v1/plan")
        return r.status_code, r.content

    async def close(self) -> None:
        pass


class RawGetter:
    """GET /v1/plan over `n` plain keep-alive HTTP/1.1 connections (asyncio streams):
    a fraction of httpx's CPU per request, so the client takes less of the 2 cores
    from the server. Answers must carry Content-Length (the service's do)."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.request = f"GET /v1/plan HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * n
        self.slots: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            self.slots.put_nowait(i)

    async def _exchange(self, slot: int) -> tuple[int, bytes]:
        conn = self.conns[slot]
        if conn is None:
            conn = await asyncio.open_connection(HOST, self.port)
            self.conns[slot] = conn
        reader, writer = conn
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value.lower():
                close = True
        if length is None:
            raise ValueError("answer without Content-Length")
        body = await reader.readexactly(length)
        if close:
            self._drop(slot)
        return status, body

    async def fetch(self, slot: int, timeout_s: float) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(slot), timeout_s)
        except BaseException:
            self._drop(slot)  # the connection's state is unknown: open a new one
            raise

    def _drop(self, slot: int) -> None:
        conn, self.conns[slot] = self.conns[slot], None
        if conn is not None:
            conn[1].close()

    async def close(self) -> None:
        for i in range(len(self.conns)):
            self._drop(i)


Getter = HttpxGetter | RawGetter


async def get_one(getter: Getter, timeout_s: float, scheduled: float, st: Stats) -> None:
    slot = await getter.slots.get()
    try:
        sent = time.perf_counter()
        try:
            status, body = await getter.fetch(slot, timeout_s)
            done = time.perf_counter()
        except Exception as exc:  # timeouts, resets: all count as errors
            st.err(st.get_errors, type(exc).__name__)
            return
    finally:
        getter.slots.put_nowait(slot)
    st.last_done = max(st.last_done, done)
    st.get_sched_ms.append((done - scheduled) * 1000)
    st.get_service_ms.append((done - sent) * 1000)
    if status != 200:
        st.err(st.get_errors, f"HTTP {status}")
        return
    st.get_ok += 1
    try:
        og = json.loads(body).get("observed_generation") or 0
    except ValueError:
        st.err(st.get_errors, "bad JSON")
        return
    if og > st.max_observed_stream:
        st.max_observed_stream = og
        mark_seen(st.seen_stream, st.accepted, og, done)


async def get_driver(
    getter: Getter, args: argparse.Namespace, t0: float, end: float, st: Stats
) -> None:
    tasks: set[asyncio.Task[None]] = set()
    n = int(args.duration * args.get_rate)
    for i in range(n):
        scheduled = t0 + i / args.get_rate
        if scheduled >= end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        st.get_scheduled += 1
        st.dispatch_lag_ms.append((time.perf_counter() - scheduled) * 1000)
        if len(tasks) >= args.max_in_flight:
            st.get_dropped += 1
            st.err(st.get_errors, "dropped (in-flight cap)")
            continue
        t = asyncio.create_task(get_one(getter, args.request_timeout, scheduled, st))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=args.request_timeout + 5)


async def post_one(
    client: httpx.AsyncClient, body: dict[str, Any], st: Stats, watch_kick: asyncio.Event
) -> None:
    sent = time.perf_counter()
    try:
        r = await client.post("/v1/cluster/demand", json=body)
        done = time.perf_counter()
    except Exception as exc:
        st.err(st.post_errors, type(exc).__name__)
        return
    st.post_ms.append((done - sent) * 1000)
    if r.status_code != 202:
        st.err(st.post_errors, f"HTTP {r.status_code}")
        return
    doc = r.json()
    if doc.get("changed"):
        st.accepted[int(doc["generation"])] = sent
        watch_kick.set()
    else:
        st.unchanged += 1


async def update_driver(
    client: httpx.AsyncClient,
    args: argparse.Namespace,
    base: dict[str, float],
    t0: float,
    end: float,
    st: Stats,
    watch_kick: asyncio.Event,
) -> None:
    rng = random.Random(args.seed)
    tasks: set[asyncio.Task[None]] = set()
    n = int(args.duration * args.update_rate)
    for i in range(n):
        scheduled = t0 + (i + 0.5) / args.update_rate
        if scheduled >= end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        qts = [
            {"id": qid, "arrival_rate": round(rate * rng.uniform(0.6, 1.4), 3)}
            for qid, rate in base.items()
        ]
        st.posts_sent += 1
        t = asyncio.create_task(
            post_one(client, {"mode": "merge", "query_types": qts}, st, watch_kick)
        )
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=args.request_timeout + 5)


async def watcher(
    client: httpx.AsyncClient, st: Stats, stop: asyncio.Event, kick: asyncio.Event, limit: int
) -> None:
    """Long-poll for the next generation on a connection of its own."""
    observed = 0
    for _ in range(limit):
        if stop.is_set():
            return
        target = max(observed + 1, 1)
        if not any(g > observed for g in st.accepted):
            # Nothing pending: wait for the next accepted update (bounded).
            kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), 1.0)
            continue
        try:
            r = await client.get(
                "/v1/plan", params={"wait_for_generation": target, "timeout_s": 10}
            )
            t = time.perf_counter()
            st.watcher_polls += 1
            og = r.json().get("observed_generation") or 0
        except Exception:
            await asyncio.sleep(0.1)
            continue
        if og > observed:
            observed = og
            mark_seen(st.seen_watch, st.accepted, og, t)
        else:
            await asyncio.sleep(0.05)  # answered without progress (failure or time-out)


async def sampler(pid: int, st: Stats, stop: asyncio.Event, limit: int) -> None:
    for _ in range(limit):
        pids = proc_tree(pid)
        st.rss_kb.append(sum(vm_rss_kb(p) for p in pids))
        for p in pids:
            c = cpu_s(p)
            if c is not None:
                st.cpu[p] = (role(p, pid, c[0]), c[1])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if stop.is_set():
            return


# --------------------------------------------------------------------------- run


GPU_FIELDS = (
    "id",
    "memory_gb",
    "memory_bandwidth_gbps",
    "intra_node_gbps",
    "inter_node_gbps",
    "gpus_per_node",
    "price_per_hour",
)


def large_scenario(types: int) -> dict[str, Any]:
    """The demo's models and query-type shapes on every catalog GPU type (12), with
    `types` query types (the demo's six, cycled, rates jittered, ids numbered)."""
    from app.engine.api import demo_scenario_document
    from app.engine.model.catalog import catalog_gpus

    rng = random.Random(0)
    spec = demo_scenario_document()
    shapes = spec["query_types"]
    spec["query_types"] = [
        {**shapes[k % len(shapes)], "id": f"{shapes[k % len(shapes)]['id']}-{k}",
         "arrival_rate": round(shapes[k % len(shapes)]["arrival_rate"] * rng.uniform(0.1, 0.4), 3)}
        for k in range(types)
    ]  # fmt: skip
    gpus = []
    for g in catalog_gpus():
        doc = next((x for x in spec["gpus"] if x["id"] == g.id), None)
        if doc is None:
            doc = {f: getattr(g, f) for f in GPU_FIELDS} | {"tflops": dict(g.tflops)}
            doc["available"] = 16
        gpus.append(doc)
    spec["gpus"] = gpus
    return spec


async def run(args: argparse.Namespace, proc: subprocess.Popen, port: int) -> dict[str, Any]:
    base_url = f"http://{HOST}:{port}"
    timeout = httpx.Timeout(args.request_timeout)
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    st = Stats()
    ctl = httpx.AsyncClient(base_url=base_url, timeout=timeout)
    gets = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)
    posts = httpx.AsyncClient(
        base_url=base_url, timeout=timeout, limits=httpx.Limits(max_connections=4)
    )
    watch = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0))
    getter: Getter | None = None
    try:
        ready_s = await wait_ready(ctl, proc, args.ready_timeout)
        if args.types:
            # A larger fleet: PUT it and wait for its first plan before measuring.
            spec = large_scenario(args.types)
            r = await ctl.put("/v1/cluster", json={"spec": spec})
            r.raise_for_status()
            g = r.json()["generation"]
            await ctl.get("/v1/plan", params={"wait_for_generation": g, "timeout_s": 60})
        cluster = (await ctl.get("/v1/cluster")).json()
        base = {q["id"]: float(q["arrival_rate"]) for q in cluster["spec"]["query_types"]}
        plan0 = (await ctl.get("/v1/plan")).json()
        # Open the GET connections and warm the route before measuring.
        getter = (
            RawGetter(port, args.connections)
            if args.client == "raw"
            else HttpxGetter(gets, args.connections)
        )
        warm = Stats()
        await asyncio.gather(
            *(get_one(getter, 10.0, time.perf_counter(), warm) for _ in range(args.connections * 2))
        )
        if warm.get_ok != args.connections * 2:
            raise SystemExit(f"warm-up GETs failed: {warm.get_errors}")
        m0 = await read_metrics(ctl)

        stop = asyncio.Event()
        kick = asyncio.Event()
        samp = asyncio.create_task(sampler(proc.pid, st, stop, int(args.duration) + 120))
        wat = asyncio.create_task(watcher(watch, st, stop, kick, 100_000))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = tree_cpu(proc.pid)
        busy0 = machine_busy_s()
        t0 = time.perf_counter() + 0.05
        end = t0 + args.duration
        await asyncio.gather(
            get_driver(getter, args, t0, end, st),
            update_driver(posts, args, base, t0, end, st, kick),
        )
        load_s = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = tree_cpu(proc.pid)
        busy1 = machine_busy_s()
        # Let the last accepted update's plan arrive (bounded).
        drain_deadline = time.perf_counter() + 3 * args.time_budget + 30
        while time.perf_counter() < drain_deadline and any(
            g not in st.seen_watch for g in st.accepted
        ):
            await asyncio.sleep(0.05)
        m1 = await read_metrics(ctl)
        plan1 = (await ctl.get("/v1/plan")).json()
        v0 = plan0.get("version") or 0
        hist = (await ctl.get("/v1/plan/history", params={"limit": 200})).json()
        terminations: dict[str, int] = {}
        for item in hist.get("items", []):
            if (item.get("version") or 0) > v0:
                term = str(item.get("termination") or "?")
                terminations[term] = terminations.get(term, 0) + 1
        stop.set()
        await asyncio.wait([samp, wat], timeout=15)
        for t in (samp, wat):
            t.cancel()
    finally:
        if getter is not None:
            await getter.close()
        for c in (ctl, gets, posts, watch):
            await c.aclose()
    return {
        "st": st,
        "ready_s": ready_s,
        "load_s": load_s,
        "t0": t0,
        "cpu_load": {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()},
        "machine_busy_s": busy1 - busy0,
        "m0": m0,
        "m1": m1,
        "plan0": plan0,
        "plan1": plan1,
        "terminations": terminations,
        "client_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
    }


def summarize(
    args: argparse.Namespace,
    r: dict[str, Any],
    exit_code: int | None,
    stop_s: float,
    cmdline: str,
    graceful: bool,
) -> tuple[str, dict[str, Any]]:
    st: Stats = r["st"]
    m0, m1 = r["m0"], r["m1"]
    load_s = r["load_s"]
    replans = sum(v for k, v in m1.items() if k.startswith("replans_")) - sum(
        v for k, v in m0.items() if k.startswith("replans_")
    )
    failed = m1.get("replans_failed", 0.0) - m0.get("replans_failed", 0.0)
    solves = m1.get("solve_count", 0.0) - m0.get("solve_count", 0.0)
    solve_mean = (m1.get("solve_sum", 0.0) - m0.get("solve_sum", 0.0)) / solves if solves else None
    n_acc = len(st.accepted)
    u2p = [st.seen_watch[g] - t for g, t in st.accepted.items() if g in st.seen_watch]
    u2p_stream = [st.seen_stream[g] - t for g, t in st.accepted.items() if g in st.seen_stream]
    missing = n_acc - len(u2p)
    get_err = sum(st.get_errors.values())
    post_err = sum(st.post_errors.values())
    rss_max_mb = max(st.rss_kb) / 1024 if st.rss_kb else None
    cpu_by_role: dict[str, float] = {}
    for rl, c in st.cpu.values():
        cpu_by_role[rl] = cpu_by_role.get(rl, 0.0) + c
    completed = len(st.get_service_ms)
    get_span = st.last_done - r["t0"]
    achieved = completed / get_span if get_span > 0 else 0.0
    cpu_load: dict[str, float] = r["cpu_load"]
    # Server-side GET /v1/plan latency from the service's own histogram (200s only;
    # the watcher's long-polls are in it too: they are taken out of the count and
    # assumed to sit in the slowest buckets, so this is approximate).
    buckets = sorted(
        ((float(k[7:]), m1[k] - m0.get(k, 0.0)) for k in m1 if k.startswith("get_le_")),
        key=lambda b: b[0],
    )
    srv_n = buckets[-1][1] - st.watcher_polls if buckets else 0
    srv_p99 = next((le for le, c in buckets if srv_n > 0 and c >= 0.99 * srv_n), None)
    srv_under50 = next((c for le, c in buckets if le == 0.05), None)

    p99 = pct(st.get_sched_ms, 99)
    p99_srv = pct(st.get_service_ms, 99)
    u2p95 = pct(u2p, 95)
    u2p_target = args.time_budget + TARGET_U2P_MARGIN_S

    def verdict(value: float | None, limit: float, unit: str, digits: int = 1) -> str:
        if value is None:
            return "MISS (no data)"
        d = value - limit
        if d <= 0:
            return f"PASS ({fmt(-d, unit, digits)} under)"
        return f"MISS (+{fmt(d, unit, digits)}, {value / limit:.2f}x)"

    errors_total = get_err + post_err + missing
    foreign_s = r["machine_busy_s"] - sum(cpu_load.values()) - r["client_cpu_s"]
    foreign = foreign_s / load_s
    cpu_txt = ", ".join(
        f"{k} {v:.1f} s ({v / load_s * 100:.0f}%)" for k, v in sorted(cpu_load.items())
    )
    rows = [
        (
            "GET rate scheduled / achieved (completed)",
            f"{args.get_rate:.0f}/s / {achieved:.1f}/s ({completed} of {st.get_scheduled}"
            f" in {get_span:.1f} s)",
        ),
        (
            "GET latency from scheduled time p50/p90/p99/max",
            " / ".join(fmt(pct(st.get_sched_ms, q), " ms") for q in (50, 90, 99))
            + f" / {fmt(max(st.get_sched_ms, default=None), ' ms')}",
        ),
        (
            "GET latency from send (service) p50/p90/p99/max",
            " / ".join(fmt(pct(st.get_service_ms, q), " ms") for q in (50, 90, 99))
            + f" / {fmt(max(st.get_service_ms, default=None), ' ms')}",
        ),
        (
            "GET /v1/plan server-side (service histogram) p99 bucket / share <= 50 ms",
            f"<= {fmt(srv_p99 * 1000 if srv_p99 else None, ' ms', 0)} / "
            + (f"{min(1.0, srv_under50 / srv_n) * 100:.1f}%" if srv_n and srv_under50 else "n/a"),
        ),
        (
            "client dispatch lag p99/max",
            f"{fmt(pct(st.dispatch_lag_ms, 99), ' ms')} / "
            f"{fmt(max(st.dispatch_lag_ms, default=None), ' ms')}",
        ),
        ("GET errors", f"{get_err} {st.get_errors or ''}".strip()),
        (
            "POST demand sent / accepted (changed) / unchanged",
            f"{st.posts_sent} / {n_acc} / {st.unchanged} ({n_acc / args.duration:.1f}/s accepted)",
        ),
        (
            "POST latency p50/p99/max",
            f"{fmt(pct(st.post_ms, 50), ' ms')} / {fmt(pct(st.post_ms, 99), ' ms')} / "
            f"{fmt(max(st.post_ms, default=None), ' ms')}",
        ),
        ("POST errors", f"{post_err} {st.post_errors or ''}".strip()),
        (
            "update-to-plan (watcher long-poll) p50/p95/max",
            f"{fmt(pct(u2p, 50), ' s', 2)} / {fmt(u2p95, ' s', 2)} / "
            f"{fmt(max(u2p, default=None), ' s', 2)} (n={len(u2p)}, never seen: {missing})",
        ),
        (
            "update-to-plan (GET stream, stops with the load) p50/p95/max",
            f"{fmt(pct(u2p_stream, 50), ' s', 2)} / {fmt(pct(u2p_stream, 95), ' s', 2)} / "
            f"{fmt(max(u2p_stream, default=None), ' s', 2)} (n={len(u2p_stream)})",
        ),
        (
            "re-plans (all outcomes) / per accepted update",
            f"{replans:.0f} / {replans / n_acc:.3f}" if n_acc else f"{replans:.0f} / n/a",
        ),
        ("re-plans failed", f"{failed:.0f}"),
        (
            "reconcile solve wall mean (metrics) / AGH termination of new plans",
            f"{fmt(solve_mean, ' s', 2)} / "
            + (", ".join(f"{k} {v}" for k, v in sorted(r["terminations"].items())) or "n/a"),
        ),
        (
            "server tree RSS max / last",
            f"{fmt(rss_max_mb, ' MB')} / {fmt(st.rss_kb[-1] / 1024 if st.rss_kb else None, ' MB')}",
        ),
        (
            "server tree CPU s (whole run incl. start-up)",
            ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu_by_role.items())),
        ),
        ("server tree CPU during load phase (% of one core)", cpu_txt),
        (
            "other processes on the machine during load phase",
            f"{foreign_s:.1f} s = {foreign * 100:.0f}% of a core"
            + (" (CONTENDED: numbers not representative)" if foreign > 0.1 else ""),
        ),
        (
            "client CPU during load (this process)",
            f"{r['client_cpu_s']:.1f} s = {r['client_cpu_s'] / load_s * 100:.0f}% of a core",
        ),
        (
            "server ready after / SIGTERM exit code / stop time",
            f"{r['ready_s']:.1f} s / {exit_code} / {stop_s:.1f} s"
            + ("" if graceful else " (no 'Application shutdown complete' in the log)"),
        ),
    ]
    targets = [
        ("GET p99 (from scheduled) <= 50 ms", verdict(p99, TARGET_P99_MS, " ms")),
        ("GET p99 (service time) <= 50 ms [info]", verdict(p99_srv, TARGET_P99_MS, " ms")),
        (
            "zero errors (GET + POST + updates never planned)",
            "PASS" if errors_total == 0 else f"MISS ({errors_total} errors)",
        ),
        (
            f"update-to-plan p95 <= budget + 0.5 = {u2p_target:.1f} s",
            verdict(u2p95, u2p_target, " s", 2),
        ),
        ("server RSS <= 400 MB", verdict(rss_max_mb, TARGET_RSS_MB, " MB")),
        (
            "achieved GET rate >= 99% of scheduled [validity]",
            "PASS" if achieved >= 0.99 * args.get_rate else f"MISS ({achieved:.1f}/s)",
        ),
        (
            "machine otherwise idle (< 10% of a core) [validity]",
            "PASS" if foreign < 0.1 else f"MISS ({foreign * 100:.0f}% of a core used by others)",
        ),
        (
            "graceful SIGTERM stop [info]",
            f"PASS (exit {exit_code})" if graceful else f"MISS (exit {exit_code})",
        ),
    ]
    facts = (
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}; "
        f"GET client {args.client} (httpx {httpx.__version__}); time_budget_s {args.time_budget}; "
        f"{args.connections} GET connections; load phase {load_s:.1f} s"
    )
    lines = [
        f"command: `{cmdline}`",
        "",
        facts,
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "| target | result |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in targets),
    ]
    doc = {
        "command": cmdline,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "args": vars(args),
        "load_s": load_s,
        "get": {
            "scheduled": st.get_scheduled,
            "completed": completed,
            "ok": st.get_ok,
            "achieved_rate": achieved,
            "errors": st.get_errors,
            "sched_ms": {q: pct(st.get_sched_ms, q) for q in (50, 90, 99, 99.9, 100)},
            "service_ms": {q: pct(st.get_service_ms, q) for q in (50, 90, 99, 99.9, 100)},
            "dispatch_lag_ms": {q: pct(st.dispatch_lag_ms, q) for q in (50, 99, 100)},
        },
        "post": {
            "sent": st.posts_sent,
            "accepted": n_acc,
            "unchanged": st.unchanged,
            "errors": st.post_errors,
            "ms": {q: pct(st.post_ms, q) for q in (50, 99, 100)},
        },
        "update_to_plan_s": {
            "watcher": {q: pct(u2p, q) for q in (50, 95, 100)},
            "stream": {q: pct(u2p_stream, q) for q in (50, 95, 100)},
            "never_seen": missing,
        },
        "replans": replans,
        "replans_failed": failed,
        "replans_per_update": replans / n_acc if n_acc else None,
        "solve_mean_s": solve_mean,
        "terminations": r["terminations"],
        "rss_max_mb": rss_max_mb,
        "cpu_by_role_s": cpu_by_role,
        "client_cpu_s": r["client_cpu_s"],
        "foreign_cpu_s": foreign_s,
        "exit_code": exit_code,
        "targets": dict(targets),
    }
    return "\n".join(lines), doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="load phase, s (default 60)")
    p.add_argument("--quick", action="store_true", help="15 s load phase")
    p.add_argument("--get-rate", type=float, default=200.0, help="GET /v1/plan per second")
    p.add_argument("--update-rate", type=float, default=8.0, help="demand POSTs per second")
    p.add_argument("--time-budget", type=float, default=1.0, help="server time_budget_s")
    p.add_argument("--connections", type=int, default=4, help="GET keep-alive connections")
    p.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="GET driver: httpx.AsyncClient (default) or raw asyncio HTTP/1.1 (less client CPU)",
    )
    p.add_argument("--max-in-flight", type=int, default=2000, help="GETs queued in the client")
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default info, the service default: one access-log line a request)",
    )
    p.add_argument(
        "--types",
        type=int,
        default=0,
        help="plan a larger fleet: this many query types on all 12 catalog GPU types "
        "(default: the demo scenario's 6 types and 6 GPU types)",
    )
    p.add_argument("--json", help="also write all numbers to this file")
    p.add_argument(
        "--server-cmd",
        help="A/B experiments only: start the server with this command instead of "
        "`python -m app serve` ({python} {host} {port} {db} are substituted)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 15.0
    if not (
        0 < args.duration <= 3600 and 0 < args.get_rate <= 5000 and 0 < args.update_rate <= 100
    ):
        p.error("duration in (0, 3600], get-rate in (0, 5000], update-rate in (0, 100]")
    cmdline = shlex.join(["python3", *sys.argv]) if argv is None else shlex.join(argv)

    with tempfile.TemporaryDirectory(prefix="llm-alloc-load-") as tmp:
        port = free_port()
        log_path = Path(tmp) / "server.log"
        proc = start_server(args, port, Path(tmp) / "plans.db", log_path)
        try:
            result = asyncio.run(run(args, proc, port))
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        exit_code, stop_s = stop_server(proc)
        log_lines = log_path.read_text(errors="replace").splitlines()
    # `serve` exits 0 after a graceful shutdown (-15: a build before it stopped uvicorn
    # re-raising the signal, or a --server-cmd that runs uvicorn directly).
    graceful = exit_code in (0, -signal.SIGTERM) and (
        args.log_level not in ("info", "debug")
        or any("Application shutdown complete" in line for line in log_lines)
    )
    text, doc = summarize(args, result, exit_code, stop_s, cmdline, graceful)
    print(text)
    bad = [ln for ln in log_lines if "Traceback" in ln or " ERROR " in ln or "WARNING" in ln]
    if bad:
        print(f"\nserver log: {len(bad)} warning/error line(s), first ones:")
        print("\n".join(bad[:10]))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
