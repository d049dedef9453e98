"""HTTP hardening as pure-ASGI middlewares: security headers, HEAD for every GET.

Security headers (on every response that does not set its own):

* ``Content-Security-Policy``: ``default-src 'self'`` with no inline script anywhere
  (the page's script and the Swagger UI start-up are static files; the page's initial
  state is a ``<script type="application/json">`` block, which is data and never run),
  ``frame-ancestors 'none'`` (no framing, so no click-jacking), ``object-src 'none'``,
  ``base-uri 'none'``. ``/docs`` gets its own policy that also allows inline *styles*:
  Swagger UI's bundle writes ``style`` attributes into the markup it generates.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (permalinks
  carry the whole scenario in the query), ``Permissions-Policy`` denying the powerful
  features the page never uses, ``X-Frame-Options: DENY`` for browsers without CSP 2.

HEAD: FastAPI's ``@get`` routes answer GET only (Starlette adds HEAD for its own
``Route``, FastAPI's ``APIRoute`` does not), so HEAD would be a 405 on /healthz and the
API's GET endpoints. ``HeadMiddleware`` runs a HEAD as the GET of the same URL and sends
the GET's status and headers (``Content-Length`` included, as RFC 9110 section 9.3.2
allows) without the body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP_PAGE = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
CSP_DOCS = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PERMISSIONS = ("accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
               "microphone=(), payment=(), usb=(), interest-cohort=()")

COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", PERMISSIONS.encode()),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_prefix: str = "/docs") -> None:
        self.app = app
        self.docs_prefix = docs_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (CSP_DOCS if scope["path"].startswith(self.docs_prefix) else CSP_PAGE).encode()

        async def add(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                for k, v in COMMON + ((b"content-security-policy", csp),):
                    if k not in present:
                        headers.append((k, v))
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, add)


class HeadMiddleware:
    """HEAD is the GET without its body (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def headless(msg: Message) -> None:
            nonlocal done
            if msg["type"] == "http.response.start":
                await send(msg)
            elif msg["type"] == "http.response.body":
                if not done:
                    done = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send(msg)

        await self.app({**scope, "method": "GET"}, receive, headless)
