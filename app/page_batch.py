"""POST /page/batch: the answers one update of the page needs, in one round trip.

Why: a toggle on the page asks for up to nine answers (the permalink, the register views,
resolve for both eras, the maps, the zaps, the diff). Each its own fetch cost the browser
about 2 ms of main thread to start and ~10 ms of round trip on a loaded 2-core machine
(bench/run.py --only page), which alone was above issue 13's 30 ms toggle-to-redraw
target. One request carrying all of them costs one of each.

Nothing is computed here. Each part names one of the endpoints the page already uses
(BATCH_PATHS) and carries that endpoint's JSON body; the part is served by the app itself,
through its whole middleware stack (body cap, result cache, worker pool, error handlers),
so each answer is byte for byte what the endpoint alone returns, status and problem
details included. The parts run concurrently and are answered in order:

    {"parts": [{"name": "resolve", "body": {...}}, ...]}
 -> {"parts": [{"status": 200, "body": {...}}, {"status": 422, "body": {problem}}, ...]}

A batch the page asks ahead (header X-Memtype-Prefetch: 1) yields to the others: its parts
run one at a time, each once no batch a person asked is in flight (build_router).

Limits: at most MAX_BATCH_PARTS parts (422 at `parts` beyond, before any part runs), names
outside BATCH_PATHS are refused (422 at `parts[i].name`), and the request as a whole is
under the body cap of every other path (MEMTYPE_MAX_BODY_BYTES).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Message

from .api import API_PREFIX

log = logging.getLogger("memtype.api")

BATCH_PATH = "/page/batch"
BATCH_PATHS = {
    "resolve": f"{API_PREFIX}/resolve",
    "map": f"{API_PREFIX}/map",
    "zap": f"{API_PREFIX}/zap",
    "diff": f"{API_PREFIX}/diff",
    "permalink": f"{API_PREFIX}/permalink",
    "registers": "/page/registers",
}
"""The endpoints a part may name: the POST endpoints of the page's update cycle."""
MAX_BATCH_PARTS = 12
"""Most parts in one batch (the page's update asks for at most nine)."""


class BatchPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["resolve", "map", "zap", "diff", "permalink", "registers"]
    body: dict[str, Any]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[BatchPart] = Field(min_length=1, max_length=MAX_BATCH_PARTS)


async def _serve(request: Request, path: str, body: bytes) -> tuple[int, bytes]:
    """(status, JSON body) of POST `path` with `body`, served by this app in-process."""
    outer = request.scope
    prefix = outer["path"][: -len(BATCH_PATH)] if outer["path"].endswith(BATCH_PATH) else ""
    full = prefix + path
    scope = {
        "type": "http", "asgi": outer.get("asgi", {"version": "3.0"}), "http_version": "1.1", "method": "POST",
        "scheme": outer.get("scheme", "http"), "server": outer.get("server"), "client": outer.get("client"),
        "root_path": outer.get("root_path", ""), "path": full, "raw_path": full.encode(), "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"accept", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "state": dict(outer.get("state", {})),
    }
    sent = False
    done = anyio.Event()
    status = 500
    content_type = b""
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(msg: Message) -> None:
        nonlocal status, content_type
        if msg["type"] == "http.response.start":
            status = msg["status"]
            content_type = next((v for k, v in msg.get("headers", ()) if k.lower() == b"content-type"), b"")
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                done.set()

    try:
        await request.app(scope, receive, send)
    except Exception:  # the app's error handler has answered (500) and re-raised: keep the batch
        log.exception("batch part %s failed", path)
        if not done.is_set():
            return 500, json.dumps({"status": 500, "detail": "internal error"}).encode()
    finally:
        done.set()
    content = b"".join(chunks)
    if b"json" not in content_type.lower():
        content = json.dumps({"status": status, "detail": content.decode("utf-8", "replace")}).encode()
    return status, content


PREFETCH_HEADER = "x-memtype-prefetch"
"""The request header that marks a batch the page asks ahead (static/app.js prefetchNeighbours)."""
PREFETCH_POLL_S = 0.002
"""How often a prefetch part waiting behind a user's batch looks again (seconds)."""


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # batches a person's input asked, in flight: a prefetch part waits until there are none,
    # so the page's prefetch never takes the server from a click (issue 13 "Speed", max)
    user_inflight = [0]

    @router.post(BATCH_PATH)
    async def batch(req: BatchIn, request: Request) -> Response:
        """Every part answered by its endpoint (module docstring), in order; the time spent
        answering is in a Server-Timing header (`batch;dur=<ms>`: bench/run.py's page
        section reads it from the browser's Resource Timing). A prefetch batch (header
        X-Memtype-Prefetch) runs its parts one after another, each only while no other
        batch is in flight, and stops when the page has gone (it aborts a prefetch it no
        longer needs): what it answers is the same, only later."""
        t0 = time.perf_counter()
        out: list[tuple[int, bytes] | None] = [None] * len(req.parts)
        prefetch = request.headers.get(PREFETCH_HEADER) == "1"

        async def one(i: int, part: BatchPart) -> None:
            out[i] = await _serve(request, BATCH_PATHS[part.name], json.dumps(part.body).encode())

        if prefetch:
            for i, part in enumerate(req.parts):
                while user_inflight[0]:
                    await anyio.sleep(PREFETCH_POLL_S)
                if await request.is_disconnected():
                    return Response(status_code=204)  # nobody is waiting for this answer
                await one(i, part)
        else:
            user_inflight[0] += 1
            try:
                async with anyio.create_task_group() as tg:
                    for i, part in enumerate(req.parts):
                        tg.start_soon(one, i, part)
            finally:
                user_inflight[0] -= 1
        body = b",".join(b'{"status":%d,"body":%s}' % r for r in out if r is not None)
        took = (time.perf_counter() - t0) * 1000
        return Response(b'{"parts":[' + body + b"]}", media_type="application/json",
                        headers={"Server-Timing": f"batch;dur={took:.1f}"})

    return router
