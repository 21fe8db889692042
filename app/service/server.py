"""`serve()`: run the service under uvicorn (one worker; graceful shutdown).

One worker on purpose: the control plane (generation, live plan, reconciler) is
a single in-process state machine over one SQLite file. Scale reads with a
cache or replicas of the plan, not with more workers on one database.

Exit statuses (README, "Command line"): 0 after SIGINT/SIGTERM; 2 for a bad flag
or setting, like every other command's bad input; 1 when the service cannot start
(the address, the database, the lifespan). Each failure is one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import uvicorn
from pydantic import ValidationError

from app.service.app import create_app
from app.service.runtime import Runtime
from app.service.settings import Settings
from app.service.store import StoreError, check_database


class _Server(uvicorn.Server):
    """On SIGINT/SIGTERM, first release long-polling requests and flip readiness,
    so graceful shutdown does not wait out their timeouts."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's handlers for SIGINT/SIGTERM, without its re-raising of the
        signal once the graceful shutdown is done: with it the process died by
        the signal (status 143, a KeyboardInterrupt traceback for SIGINT) instead
        of exiting 0 as a stopped service does (README, "Command line")."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        app = self.config.loaded_app
        state = getattr(getattr(app, "app", app), "state", None)
        rt: Runtime | None = getattr(state, "runtime", None)
        if rt is not None:
            rt.stopping = True
            if rt.running is not None:
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().call_soon(rt.running.control_plane.close)
        super().handle_exit(sig, frame)


EXIT_CANNOT_START = 1
EXIT_BAD_SETTING = 2

# The CLI flag of each setting `serve()` takes as an argument.
_FLAGS = {"host": "--host", "port": "--port", "db_path": "--db", "token": "--token"}

log = logging.getLogger("llm_allocator.service")


def _exit(status: int, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def build_settings(
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    token: str | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from the environment, with explicit (non-None) arguments on top.
    An invalid one is a SystemExit(2) naming it as the caller gave it: the flag
    (`--port`), the keyword of another argument, or the environment variable."""
    given: dict[str, Any] = {
        k: v
        for k, v in {"host": host, "port": port, "db_path": db, "token": token, **overrides}.items()
        if v is not None
    }
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            name = "_".join(str(p) for p in e["loc"])
            shown = _FLAGS.get(name, name) if name in given else f"LLM_ALLOCATOR_{name.upper()}"
            problems.append(f"{shown}: {e['msg']}")
        _exit(EXIT_BAD_SETTING, "; ".join(problems))


def listen(host: str, port: int) -> socket.socket:
    """The listening address, bound as uvicorn binds it (IPv6 for an address with
    a colon, SO_REUSEADDR). Bound before the database is opened, so that a taken
    address stops start-up before a new database file is created and seeded.

    The protocol is named (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY only on
    connections whose socket says TCP, and without it every answer on a keep-alive
    connection waited ~40 ms for the client's delayed ACK (Nagle), so GET /healthz
    took 44 ms instead of 1.4 ms and one connection carried 22 requests/s."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        _exit(EXIT_CANNOT_START, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return sock


def serve(
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    token: str | None = None,
    **overrides: Any,
) -> None:
    """Run the service until SIGINT/SIGTERM. Arguments (the CLI's flags) left as
    None come from the environment (`LLM_ALLOCATOR_*`) or the defaults. Exits with
    one line on stderr: status 2 for an invalid setting, naming its flag or
    variable; status 1 if the address is taken (before the database is touched),
    the database cannot be used, or start-up fails."""
    settings = build_settings(host, port, db, token, **overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sock = listen(settings.host, settings.port)
    try:
        check_database(settings.db_path)
    except StoreError as exc:
        sock.close()
        _exit(EXIT_CANNOT_START, str(exc))
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,  # for the record: uvicorn serves on `sock`
        port=settings.port,
        workers=1,
        lifespan="on",
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(max(1, round(settings.shutdown_grace_s))),
    )
    server = _Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d", bound_host, bound_port)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits 3 when the lifespan fails to start (it has logged why).
        if exc.code not in (None, 0):
            _exit(EXIT_CANNOT_START, "the service failed to start (see the log above)")
        raise
    finally:
        sock.close()
    if not server.started:
        _exit(EXIT_CANNOT_START, "the service failed to start (see the log above)")


if __name__ == "__main__":  # pragma: no cover - `python -m app.service.server`
    serve()
    sys.exit(0)
