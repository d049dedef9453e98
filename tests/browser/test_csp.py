"""The page and /docs work under the service's Content-Security-Policy in a real browser:
no CSP violation reported, the page gets ready, Swagger UI draws its operations. No
bypass_csp here (the other browser tests need it for Playwright's eval-based waits)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("path", "ready"), [
    ("/?v=1&kernel=v6.7&ncdma=1", 'body[data-ready="1"]'),
    ("/docs", ".opblock"),
])
def test_works_under_csp(chromium, live_server, path, ready):
    ctx = chromium.new_context()
    try:
        page = ctx.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        resp = page.goto(live_server + path)
        assert resp is not None and "default-src 'self'" in resp.headers["content-security-policy"]
        page.wait_for_selector(ready, timeout=10_000)
        page.wait_for_timeout(300)
        violations = [c for c in console if "Content Security Policy" in c or "pageerror" in c]
        assert not violations, violations
    finally:
        ctx.close()
