"""Shared bits of the routers: declared error responses, text negotiation, JSON output."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from .schemas import Problem

PROBLEM_DESC = "application/problem+json (RFC 9457) naming the field and the rule"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read (e.g. not UTF-8). " + PROBLEM_DESC},
    413: {"model": Problem, "description": "Body larger than MEMTYPE_MAX_BODY_BYTES (256 KiB by default; "
          "MEMTYPE_MAX_TRACE_BYTES for /api/v1/replay). " + PROBLEM_DESC},
    422: {"model": Problem, "description": "Invalid input: schema, malformed hex, or an architectural rule "
          "(reserved PAT/MTRR type, MAXPHYADDR, CR0.NW without CD, VCNT, unknown era, quirk). " + PROBLEM_DESC},
}
BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "Busy: the worker pool is full (MEMTYPE_POOL_SIZE + MEMTYPE_POOL_QUEUE) "
          "or the request ran past MEMTYPE_MAX_REQUEST_SECONDS; Retry-After says when to retry. " + PROBLEM_DESC},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such item. " + PROBLEM_DESC}}


def text_response(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description,
                  "content": {"text/plain": {"schema": {"type": "string"}}}}}


FormatParam = Annotated[
    Literal["json", "text"] | None,
    Query(alias="format", description="text: the plain-text rendering (72 columns, ASCII), as with "
          "'Accept: text/plain'"),
]


def wants_text(request: Request, fmt: str | None) -> bool:
    """`?format=text`, or an Accept header preferring text/plain over JSON."""
    if fmt is not None:
        return fmt == "text"
    accept = request.headers.get("accept", "")
    if "text/plain" not in accept:
        return False
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(q, best.get(media.lower(), 0.0))
    return best.get("text/plain", 0.0) > max(best.get("application/json", 0.0), best.get("application/*", 0.0)) \
        or (best.get("text/plain", 0.0) > 0 and "application/json" not in best and "application/*" not in best)


def base_url(request: Request) -> str:
    """scheme://host[:port][/root_path] for permalinks, from settings only.

    MEMTYPE_PUBLIC_URL when set; else http://MEMTYPE_HOST:MEMTYPE_PORT plus
    MEMTYPE_ROOT_PATH. Never the request's Host header: a client (or anyone who can get a
    link shown to someone) could put any name there and have it echoed into the links.
    """
    settings = request.app.state.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"http://{host}:{settings.port}{settings.root_path.rstrip('/')}"


def json_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def text(body: str) -> PlainTextResponse:
    return PlainTextResponse(body, media_type="text/plain; charset=utf-8")
