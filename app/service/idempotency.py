"""`Idempotency-Key` on POST requests (draft-ietf-httpapi-idempotency-key-header).

The first successful (2xx) response to a key is stored in SQLite with an expiry
(`idempotency_ttl_s`) and replayed for a retry with the same key and the same
body (the replay carries `Idempotent-Replayed: true`). The same key with a
different body is a 422 problem; a retry while the first request is still being
processed is a 409 problem. Error responses are not stored: a client may fix the
cause and retry with the same key. Keys are scoped per credential, method and
path, so a key cannot replay another client's response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.http import replay_body
from app.service.problems import problem_response
from app.service.runtime import Runtime
from app.service.store import Store, StoredResponse

log = logging.getLogger("llm_allocator.service")

HEADER = b"idempotency-key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}
_KEEP_HEADERS = {"content-type", "location", "etag", "retry-after"}
_PURGE_EVERY_S = 600.0


def body_fingerprint(body: bytes) -> str:
    """Hash of the body's JSON meaning (key order and whitespace do not matter);
    raw bytes if it is not JSON."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
        data = canonical.encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = body
    return hashlib.sha256(data).hexdigest()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._in_flight: set[str] = set()
        self._last_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        raw_key = headers.get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        key = raw_key.decode("latin-1")
        if not _KEY.match(key):
            await problem_response(
                400,
                "validation",
                "Invalid input",
                "Idempotency-Key must be 1-255 visible ASCII characters",
                errors=[("Idempotency-Key", "must be 1-255 visible ASCII characters")],
                instance=path,
            )(scope, receive, send)
            return
        rt: Runtime = scope["app"].state.runtime
        store: Store | None = rt.running.store if rt.running is not None else None
        if store is None:  # not started (no lifespan): nothing to remember with
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        fingerprint = body_fingerprint(body)
        principal = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()[:16]
        slot = f"{principal}|POST|{path}|{key}"
        stored = await store.call(store.get_response, slot)
        if stored is not None:
            await _replay(stored, fingerprint, path, scope, receive, send)
            return
        if slot in self._in_flight:
            await problem_response(
                409,
                "idempotency-key-in-use",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
                errors=[("Idempotency-Key", "a request with this key is still being processed")],
                instance=path,
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return
        self._in_flight.add(slot)
        try:
            await self._first(scope, receive, send, body, store, slot, fingerprint, rt)
        finally:
            self._in_flight.discard(slot)

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        store: Store,
        slot: str,
        fingerprint: str,
        rt: Runtime,
    ) -> None:
        """The first request with this key: run it, store a 2xx answer, then send it."""
        start: Message | None = None
        out_body: list[bytes] = []

        async def capture(message: Message) -> None:
            # Hold the response back: the key is stored before the client sees the
            # answer, so an acknowledged request is never executed twice.
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                out_body.append(message.get("body", b""))

        await self.app(scope, replay_body(body, receive), capture)
        if start is None:
            return
        status = int(start["status"])
        if 200 <= status < 300:
            kept = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.decode("latin-1").lower() in _KEEP_HEADERS
            }
            try:
                await store.call(
                    store.put_response,
                    slot,
                    StoredResponse(fingerprint, status, kept, b"".join(out_body)),
                    rt.settings.idempotency_ttl_s,
                )
            except Exception:  # the change itself is done; losing the key is minor
                log.exception("could not store the idempotency key")
            await self._maybe_purge(store)
        await send(start)
        await send({"type": "http.response.body", "body": b"".join(out_body)})

    async def _maybe_purge(self, store: Store) -> None:
        now = time.monotonic()
        if now - self._last_purge > _PURGE_EVERY_S:
            self._last_purge = now
            await store.call(store.purge_expired_responses)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (None if the client disconnected). The body limit
    middleware has already read it once; this reads what it passes on."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _replay(
    stored: StoredResponse,
    fingerprint: str,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """A retry: the stored answer again, or 422 if the body differs."""
    if stored.body_hash != fingerprint:
        await problem_response(
            422,
            "idempotency-key-reused",
            "Idempotency key reused",
            "this Idempotency-Key was used with a different request body",
            errors=[("Idempotency-Key", "already used with a different body")],
            instance=path,
        )(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": stored.status,
            "headers": [(k.encode(), v.encode()) for k, v in stored.headers.items()]
            + [(b"idempotent-replayed", b"true")],
        }
    )
    await send({"type": "http.response.body", "body": stored.body})


def document_idempotency(schema: dict[str, Any]) -> dict[str, Any]:
    """Post-process the generated OpenAPI document: every POST (this middleware
    serves them all) takes the optional `Idempotency-Key` header and may answer
    400 (a malformed key), 409 (a request with the key is in progress) and 422
    (the key was used with another body). Run before `document_problems`, which
    gives these answers their problem content."""
    parameter = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "optional: a retry with the same key and body replays the first "
        "2xx answer (Idempotent-Replayed: true) instead of applying the request again",
        "schema": _KEY_SCHEMA,
    }
    for item in schema.get("paths", {}).values():
        op = item.get("post")
        if op is None:
            continue
        op.setdefault("parameters", []).append(parameter)
        responses = op.setdefault("responses", {})
        responses.setdefault("400", {"description": "Bad Request (malformed Idempotency-Key)"})
        responses.setdefault(
            "409", {"description": "Conflict (a request with this Idempotency-Key is in progress)"}
        )
        responses.setdefault("422", {"description": "Unprocessable Content"})
    return schema
