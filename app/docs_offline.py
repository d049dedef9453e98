"""Serve Swagger UI (/docs) from vendored assets instead of a CDN, without inline script.

Why: FastAPI's default /docs page loads swagger-ui from cdn.jsdelivr.net and a
favicon from fastapi.tiangolo.com, so it breaks on an offline box or in a
network-restricted container.  The assets are vendored under
``static/vendor/swagger-ui/`` (version in its VERSION file).  FastAPI's page also
starts Swagger UI from an inline ``<script>``, which the service's
Content-Security-Policy forbids (app/hardening.py); here the start-up is the static
file ``static/swagger-init.js`` and its settings are a JSON data block.  There is no
OAuth2 redirect page: the API has no authentication of its own.

Use with ``FastAPI(docs_url=None, redoc_url=None)`` and ``static/`` served by `asset_url`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

DOCS_URL = "/docs"
VENDOR_SUBDIR = "vendor/swagger-ui"


def _json_block(data: object) -> str:
    # "<" escaped so no string in the data can close the <script> element
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def install_offline_docs(app: FastAPI, asset_url: Callable[[str, str], str]) -> None:
    """Add ``/docs`` using local Swagger UI assets; `asset_url(path, root_path)` names
    a file under static/ (content-hashed, app/assets.py).

    URLs are prefixed with the request's ASGI ``root_path`` (as FastAPI's own
    /docs does) so the page also works behind a path-prefixing proxy.
    """
    if app.docs_url is not None:
        raise ValueError("create the app with docs_url=None to use offline docs")
    if app.openapi_url is None:
        raise ValueError("offline docs need app.openapi_url")

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        config = {"url": root + app.openapi_url, "layout": "BaseLayout", "deepLinking": True,
                  "showExtensions": True, "showCommonExtensions": True, **(app.swagger_ui_parameters or {})}
        css = asset_url(f"{VENDOR_SUBDIR}/swagger-ui.css", root)
        icon = asset_url(f"{VENDOR_SUBDIR}/favicon-32x32.png", root)
        js = asset_url(f"{VENDOR_SUBDIR}/swagger-ui-bundle.js", root)
        init = asset_url("swagger-init.js", root)
        html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{escape(css)}">
<link rel="icon" href="{escape(icon)}">
<title>{escape(app.title)} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui"></div>
<script type="application/json" id="swagger-config">{_json_block(config)}</script>
<script src="{escape(js)}"></script>
<script src="{escape(init)}"></script>
</body>
</html>
"""
        return HTMLResponse(html, headers={"cache-control": "no-cache"})

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
