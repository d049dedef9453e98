"""RFC 9457 problem details for every error the API returns.

    application/problem+json
    {"type": "urn:memtype-explorer:problem:rule-violation", "title": "Unprocessable Content",
     "status": 422, "detail": "vcpu.pat: PAT entry 3 has reserved type 2 (...)",
     "instance": "/api/v1/resolve",
     "errors": [{"loc": ["body", "vcpu", "pat"], "msg": "...", "type": "...", "rule": "..."}]}

Sources: RequestValidationError (pydantic: types, strictness, malformed hex) and the core's
MemTypeError (reserved types, MAXPHYADDR, CR0, VCNT, quirks, unknown era) -> 422; an
oversized body -> 413; other HTTP errors keep their status; anything unexpected is logged
and becomes a 500 problem (a last resort: the tests assert it never happens).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..x86.memtype import MemTypeError
from ..x86.memtype import dotted as core_dotted

log = logging.getLogger("memtype.api")

PROBLEM_JSON = "application/problem+json"
TYPE_VALIDATION = "urn:memtype-explorer:problem:request-validation"
TYPE_RULE = "urn:memtype-explorer:problem:rule-violation"
TYPE_TOO_LARGE = "urn:memtype-explorer:problem:body-too-large"
TYPE_INTERNAL = "urn:memtype-explorer:problem:internal-error"

_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}  # RFC 9110 names


class RuleViolation(Exception):
    """A core MemTypeError with its JSON location resolved by the endpoint."""

    def __init__(self, err: MemTypeError, loc: Sequence[str | int]) -> None:
        super().__init__(str(err))
        self.err = err
        self.loc = list(loc)


def dotted(loc: Iterable[str | int]) -> str:
    """['body', 'vcpu', 'mtrr', 'fixed', 0] -> 'vcpu.mtrr.fixed[0]' (the body prefix dropped)."""
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[1:]
    out = core_dotted(p if isinstance(p, int) else str(p) for p in parts)
    return ("body" + out if out.startswith("[") else out) or "body"


def problem(status: int, type_: str, detail: str, instance: str, errors: list[dict] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    try:
        title = _TITLES.get(status) or HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": instance,
            "errors": errors or []}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def rule_problem(err: MemTypeError, loc: list[str | int], instance: str) -> JSONResponse:
    where = dotted(loc)
    if err.field and not where.endswith(err.field):
        where += f" ({err.field})"  # e.g. "trace (line 7)": the core's own name adds detail
    detail = f"{where}: {err.message}" + (f" ({err.rule})" if err.rule else "")
    item = {"loc": loc, "msg": err.message, "type": "rule_violation", "rule": err.rule or None}
    return problem(422, TYPE_RULE, detail, instance, [item])


def _clean_errors(errors: Sequence[Any]) -> list[dict]:
    out = []
    for e in errors:
        loc = [p if isinstance(p, (str, int)) else str(p) for p in e.get("loc", ())]
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _clean_errors(exc.errors())
    shown = "; ".join(f"{dotted(e['loc'])}: {e['msg']}" for e in errors[:3])
    if len(errors) > 3:
        shown += f"; and {len(errors) - 3} more"
    return problem(422, TYPE_VALIDATION, shown or "invalid request", request.url.path, errors)


async def memtype_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RuleViolation):
        return rule_problem(exc.err, exc.loc, request.url.path)
    assert isinstance(exc, MemTypeError)
    return rule_problem(exc, ["body", *exc.loc], request.url.path)


async def http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    type_ = TYPE_TOO_LARGE if status == 413 else "about:blank"
    return problem(status, type_, detail, request.url.path, headers=getattr(exc, "headers", None))


async def internal_handler(request: Request, _exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, TYPE_INTERNAL, "internal error; it has been logged", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(MemTypeError, memtype_handler)
    app.add_exception_handler(RuleViolation, memtype_handler)
    app.add_exception_handler(StarletteHTTPException, http_handler)
    app.add_exception_handler(Exception, internal_handler)


ERROR_STATUSES = ("400", "404", "413", "422", "500", "503")


def problem_openapi(schema: dict) -> dict:
    """Every error response is application/problem+json with the Problem schema (FastAPI puts
    `responses={...: {"model": Problem}}` under application/json and adds its own
    HTTPValidationError 422 to routes with parameters)."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for op in path.values():
            for code, resp in op.get("responses", {}).items():
                if code in ERROR_STATUSES:
                    resp["content"] = {PROBLEM_JSON: {"schema": dict(ref)}}
    comps = schema.get("components", {}).get("schemas", {})
    if "Problem" not in comps:
        from .schemas import Problem

        defs = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        comps.update(defs.pop("$defs", {}))
        comps["Problem"] = defs
    for name in ("HTTPValidationError", "ValidationError"):
        comps.pop(name, None)
    return schema
