"""Shared fixtures: the app, and an httpx client over ASGI (no server, no network).

API tests are `async def` under anyio's pytest plugin (`pytestmark = pytest.mark.anyio`).
"""

from __future__ import annotations

import logging
import os

# Links are built from MEMTYPE_PUBLIC_URL, never the Host header (app/api/common.py); the
# tests' clients talk to http://testserver, so that is the public URL here.
os.environ.setdefault("MEMTYPE_PUBLIC_URL", "http://testserver")
# Every test request is computed (some tests patch a limit and ask again); the result cache
# has its own tests (tests/test_service_cache.py).
os.environ.setdefault("MEMTYPE_RESULT_CACHE_SIZE", "0")

import httpx
import pytest

from app.main import create_app


def pytest_collection_modifyitems(items):
    """Run the real-browser tests last: Playwright's sync API leaves its event loop marked as
    running in the main thread for the rest of the session, which would break every async
    (anyio) test collected after it."""
    browser = [i for i in items if "/tests/browser/" in str(i.path).replace("\\", "/")]
    if browser:
        moved = {id(i) for i in browser}
        items[:] = [i for i in items if id(i) not in moved] + browser


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def api_app():
    app = create_app()
    logging.getLogger("memtype.access").setLevel(logging.WARNING)  # keep test output quiet
    return app


@pytest.fixture
async def client(api_app):
    transport = httpx.ASGITransport(app=api_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
