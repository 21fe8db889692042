"""`serve()`: run the service under uvicorn (one worker; graceful shutdown).

One worker on purpose: the control plane (generation, live plan, reconciler) is
a single in-process state machine over one SQLite file. Scale reads with a
cache or replicas of the plan, not with more workers on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.service.app import create_app
from app.service.runtime import Runtime
from app.service.settings import Settings
from app.service.store import StoreError, check_database


class _Server(uvicorn.Server):
    """On SIGINT/SIGTERM, first release long-polling requests and flip readiness,
    so graceful shutdown does not wait out their timeouts."""

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


def build_settings(
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    token: str | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from the environment, with explicit (non-None) arguments on top."""
    given: dict[str, Any] = {
        k: v
        for k, v in {"host": host, "port": port, "db_path": db, "token": token, **overrides}.items()
        if v is not None
    }
    return Settings(**given)


def serve(
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    token: str | None = None,
    **overrides: Any,
) -> None:
    """Run the service until SIGINT/SIGTERM. Arguments left as None come from the
    environment (`LLM_ALLOCATOR_*`) or the defaults. Exits with a one-line
    message if the database cannot be used."""
    try:
        settings = build_settings(host, port, db, token, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"LLM_ALLOCATOR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise SystemExit(f"error: invalid setting: {problems}") from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        check_database(settings.db_path)
    except StoreError as exc:
        raise SystemExit(f"error: {exc}") from None
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        lifespan="on",
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(max(1, round(settings.shutdown_grace_s))),
    )
    server = _Server(config)
    server.run()
    if not server.started:
        # Lifespan start-up failed (uvicorn has logged why).
        raise SystemExit("error: the service failed to start (see the log above)")


if __name__ == "__main__":  # pragma: no cover - `python -m app.service.server`
    serve()
    sys.exit(0)
