"""The ASGI app: `app.main:app` (uvicorn), built by `create_app()`.

    /               the page (templates/index.html; app/pages.py)
    /api/v1/...     the JSON API (app/api/)
    /healthz        container health check
    /docs           Swagger UI from vendored assets (no network); /openapi.json
    /assets/<hash>/...  static files under content-hashed URLs (immutable; app/assets.py)
    /static/...     the same files under plain URLs (no-cache)

Every response carries the security headers of app/hardening.py (CSP without inline
script, nosniff, Referrer-Policy, Permissions-Policy, frame-ancestors 'none'); text
responses of 500 bytes or more are gzipped when the client accepts it; HEAD is answered
wherever GET is.

Limits: request bodies above Settings.max_body_bytes (MEMTYPE_MAX_BODY_BYTES, 256 KiB)
get 413, the replay endpoint allows Settings.max_trace_bytes (4 MiB) and at most
Settings.max_trace_events events. Errors are RFC 9457 problem details (app/api/errors.py).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.middleware.gzip import GZipMiddleware

from .api import API_PREFIX, build_router, errors
from .api.cache import ResultCacheMiddleware
from .api.middleware import AccessLogMiddleware, BodyLimitMiddleware
from .api.pool import TYPE_BUSY, PoolRefused, WorkPool, refused_handler
from .api.schemas import Health, Problem
from .assets import ASSETS_PREFIX, AssetHasher, HashedStaticFiles, RevalidatedStaticFiles
from .docs_offline import install_offline_docs
from .hardening import HeadMiddleware, SecurityHeadersMiddleware
from .render import version
from .settings import Settings, get_settings

DESCRIPTION = """\
Which EPT memory type KVM on Intel VT-x gives guest memory, per kernel era, why
(the path through `vmx_get_mt_mask()`), and what an event must zap.

* Memory types are named `UC`, `WC`, `WT`, `WP`, `WB`, `UC-`; `WB!` = WB with IPAT.
* Every 64-bit register or address is an integer or a `"0x..."` string.
* Errors are `application/problem+json` (RFC 9457) naming the field and the rule.
* `Accept: text/plain` (or `?format=text`) on resolve, zap and diff returns a
  72-column ASCII rendering for mail replies.
* Limits: request body {body} bytes (`MEMTYPE_MAX_BODY_BYTES`; 413 beyond), replay
  body {trace} bytes (`MEMTYPE_MAX_TRACE_BYTES`) and {events} events
  (`MEMTYPE_MAX_TRACE_EVENTS`; 422 beyond).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: the process-wide MEMTYPE_* settings)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="memtype-explorer",
        version=version(),
        description=DESCRIPTION.format(body=settings.max_body_bytes, trace=settings.max_trace_bytes,
                                       events=settings.max_trace_events),
        docs_url=None,  # served from vendored assets below: no CDN
        redoc_url=None,
    )  # root_path (MEMTYPE_ROOT_PATH) is the server's business: app/serve.py passes it to uvicorn
    app.state.settings = settings
    _access_logger(settings)

    errors.install(app)
    app.state.pool = WorkPool(settings.pool_size, settings.pool_queue, settings.max_request_seconds)
    app.add_exception_handler(PoolRefused, refused_handler)
    app.include_router(build_router())

    @app.get("/healthz", response_model=Health, tags=["meta"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        """200 whenever the event loop runs, however busy the worker pool is (CPU-bound
        work never runs on the loop: app/api/pool.py)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["meta"], summary="Readiness: the worker pool has room",
             responses={503: {"model": Problem, "description": "The pool is full: route new work elsewhere"}})
    async def readyz() -> Response:
        """200 while the worker pool admits work (fewer than MEMTYPE_POOL_SIZE +
        MEMTYPE_POOL_QUEUE requests in it), else 503; a load balancer or Kubernetes
        readiness probe stops sending traffic here until it drains."""
        pool: WorkPool = app.state.pool
        if pool.has_room():
            return JSONResponse({"status": "ok"})
        return errors.problem(503, TYPE_BUSY, f"the worker pool is full ({pool.capacity} requests)", "/readyz",
                              headers={"retry-after": str(pool.retry_after)})

    hasher = AssetHasher(settings.static_dir)
    app.state.assets = hasher
    if settings.static_dir.is_dir():
        app.mount(ASSETS_PREFIX, HashedStaticFiles(hasher), name="assets")
        app.mount("/static", RevalidatedStaticFiles(directory=str(settings.static_dir)), name="static")
    install_offline_docs(app, hasher.url)

    from .pages import build_router as pages_router

    app.include_router(pages_router(settings.templates_dir, hasher))

    app.add_middleware(ResultCacheMiddleware, size=settings.result_cache_size)
    app.add_middleware(BodyLimitMiddleware, default=settings.max_body_bytes,
                       per_path={f"{API_PREFIX}/replay": settings.max_trace_bytes})
    # outermost last: access log > HEAD-as-GET > security headers > gzip > body cap > result cache > app
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(AccessLogMiddleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                                 description=app.description, routes=app.routes, servers=app.servers)
            app.openapi_schema = errors.problem_openapi(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _access_logger(settings: Settings) -> None:
    """JSON lines on stderr at INFO (unless MEMTYPE_LOG_LEVEL is warning or above), set up
    once per process and only if nobody configured the `memtype.access` logger already."""
    log = logging.getLogger("memtype.access")
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False
    level = settings.log_level.upper()
    log.setLevel(logging.INFO if level in ("INFO", "DEBUG", "TRACE") else logging.WARNING)


app = create_app()
