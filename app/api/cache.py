"""A result cache for the pure POST endpoints, keyed by the canonical request.

Why: resolve, zap, map and diff are pure functions of their JSON body (plus ``?format`` and
the Accept header, which pick JSON or text): the same scenario always gives the same bytes,
and the page and scripts ask the same few scenarios again and again. A hit skips request
validation, the worker pool and serialisation, which is most of a resolve's cost. The
permalink (written from the body and settings only: app/api/common.py base_url) and the
page's register views (/page/registers: app/pages.py register_views) are pure the same way
and ride in every batch of the page's update cycle (app/page_batch.py), so they are kept too.

Key: the path, ``format``, Accept, and the body parsed and re-serialised with sorted keys
and no spaces (so key order and whitespace do not matter). Only 200 answers are kept, at
most ``MEMTYPE_RESULT_CACHE_SIZE`` entries (least recently used dropped; 0 turns it off),
and none larger than 64 KiB. A body that is not JSON is passed through uncached (the
endpoint gives its 400/422). Responses are the same for every client: links come from
settings, never from request headers (app/api/common.py), so nothing client-specific can
leak through the cache. Runs inside the body cap, so an oversized body never reaches it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..lru import Lru

MAX_ENTRY_BYTES = 64 * 1024
CACHED_SUFFIXES = ("/api/v1/resolve", "/api/v1/zap", "/api/v1/map", "/api/v1/diff", "/api/v1/permalink",
                   "/page/registers")


class ResultCacheMiddleware:
    def __init__(self, app: ASGIApp, size: int) -> None:
        self.app = app
        self.size = size
        self._lru: Lru[tuple[int, list[tuple[bytes, bytes]], bytes]] = Lru(size)

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def misses(self) -> int:
        return self._lru.misses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.size <= 0 or scope["type"] != "http" or scope.get("method") != "POST"
                or not scope["path"].endswith(CACHED_SUFFIXES)
                or not any(k == b"content-length" for k, _ in scope.get("headers", ()))):
            # chunked bodies pass through: the body cap counts them as the route reads
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # disconnect before the body was in
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
        except (ValueError, RecursionError):
            await self.app(scope, replay, send)
            return
        accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"")
        key = (scope["path"], scope.get("query_string", b""), accept, canonical)
        hit = self._lru.get(key)
        if hit is not None:
            status, headers, content = hit
            # a fresh list each time: outer middlewares (gzip's Vary) edit headers in place
            await send({"type": "http.response.start", "status": status, "headers": list(headers)})
            await send({"type": "http.response.body", "body": content, "more_body": False})
            return
        start: Message | None = None
        parts: list[bytes] = []
        size = 0

        async def capture(msg: Message) -> None:
            nonlocal start, size
            if msg["type"] == "http.response.start":
                start = msg
            elif msg["type"] == "http.response.body" and start is not None and start["status"] == 200:
                parts.append(msg.get("body", b""))
                size += len(parts[-1])
                if not msg.get("more_body") and size <= MAX_ENTRY_BYTES:
                    self._lru.put(key, (200, list(start.get("headers", ())), b"".join(parts)))
            await send(msg)

        await self.app(scope, replay, capture)
