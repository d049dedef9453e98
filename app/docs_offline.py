"""Serve Swagger UI (/docs) from vendored assets instead of a CDN.

Why: FastAPI's default /docs page loads swagger-ui from cdn.jsdelivr.net and a
favicon from fastapi.tiangolo.com, so it breaks on an offline box or in a
network-restricted container.  The assets are vendored under
``static/vendor/swagger-ui/`` (version in its VERSION file).

Use with ``FastAPI(docs_url=None, redoc_url=None)`` and ``static/`` mounted at
``static_url``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
VENDOR_SUBDIR = "vendor/swagger-ui"


def install_offline_docs(app: FastAPI, static_url: str = "/static") -> None:
    """Add ``/docs`` and ``/docs/oauth2-redirect`` using local Swagger UI assets.

    URLs are prefixed with the request's ASGI ``root_path`` (as FastAPI's own
    /docs does) so the page also works behind a path-prefixing proxy.
    """
    if app.docs_url is not None:
        raise ValueError("create the app with docs_url=None to use offline docs")
    if app.openapi_url is None:
        raise ValueError("offline docs need app.openapi_url")
    assets = static_url.rstrip("/") + "/" + VENDOR_SUBDIR

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, include_in_schema=False)
