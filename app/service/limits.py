"""Request body size limit, enforced before anything parses the body.

A declared Content-Length over the limit is refused at once; a chunked body is
counted as it arrives and refused as soon as it passes the limit. Either way the
answer is a 413 problem and the body is never buffered beyond the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.service.http import replay_body
from app.service.problems import problem_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "body-too-large",
            "Content Too Large",
            f"the request body exceeds the limit of {self.max_body_bytes} bytes",
            instance=scope.get("path"),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body_bytes:
                    await self._too_large(scope, receive, send)
                    return
        # Read the body now (bounded), then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay_body(b"".join(chunks), receive), send)
