"""Two small pure-ASGI middlewares: a request body cap (413) and a JSON access log.

Body cap: a declared Content-Length above the limit is refused before the body is read;
a chunked body is counted as it streams and refused once it passes the limit (the route
is reading it, so the 413 comes from the HTTPException handler as a problem detail).
Limits come from Settings: `max_body_bytes` for every path, `max_trace_bytes` for the
trace upload endpoint (POST /api/v1/replay).
"""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import TYPE_TOO_LARGE, problem

access_log = logging.getLogger("memtype.access")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, default: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path or {}

    def limit_for(self, path: str) -> int:
        for suffix, limit in self.per_path.items():
            if path.endswith(suffix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    resp = problem(413, TYPE_TOO_LARGE,
                                   f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                                   scope["path"])
                    await resp(scope, receive, send)
                    return
                break
        received = 0

        async def limited() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return msg

        await self.app(scope, limited, send)


class AccessLogMiddleware:
    """One JSON line per request on the `memtype.access` logger (INFO)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def capture(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, capture)
        finally:
            client = scope.get("client")
            access_log.info(json.dumps({
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status or 500,
                "ms": round((time.perf_counter() - start) * 1000, 2),
                "client": client[0] if client else None,
            }, separators=(",", ":")))
