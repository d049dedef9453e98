"""Fixtures for the real-browser tests: a live uvicorn on loopback and Debian's chromium.

The app (app.main:app) runs in a uvicorn.Server on 127.0.0.1:<free port> in a daemon
thread. Playwright's sync API drives /usr/bin/chromium (never a downloaded browser):
`executable_path` is given explicitly, and Playwright adds --headless and --no-sandbox
itself. Screenshots go to test-output/ at the repository root.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MEMTYPE_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"



def _is_browser(item) -> bool:
    return "tests/browser/" in str(item.fspath).replace(os.sep, "/")


def pytest_collection_modifyitems(items):
    """Mark the browser tests and run them last: Playwright's sync API drives its own event
    loop, which must be gone before anyio's async API tests start one (and a quick API
    failure should not wait for a browser)."""
    for item in items:
        if _is_browser(item):
            item.add_marker(pytest.mark.browser)
    items.sort(key=_is_browser)  # stable: keeps the order within each group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server():
    uvicorn = pytest.importorskip("uvicorn")
    import logging

    from app.main import app

    logging.getLogger("memtype.access").setLevel(logging.WARNING)  # keep the test log readable

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn-live")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium); "
                    "these tests never download a browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        print(f"\nchromium {b.version} via playwright (pinned build differs; Debian's is used)")
        yield b
        b.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


class PageWatch:
    """A page plus what it did: every request URL and every console error."""

    def __init__(self, page):
        self.page = page
        self.requests: list[str] = []
        self.asked: list[str] = []  # endpoint URLs asked, a POST /page/batch's parts one by one
        self.prefetched: list[str] = []  # the prefetch's batches (PREFETCH_HEADER), kept out of the two above
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def _request(self, r) -> None:
        if is_prefetch(r):
            self.prefetched.append(r.post_data or "")
            return
        self.requests.append(r.url)
        self.asked.extend(batch_urls(r) or [r.url])

    def goto(self, url: str) -> None:
        self.page.goto(url)
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.wait_for_function("document.body.dataset.ready === '1' && document.body.dataset.busy === '0'")

    def redraws(self) -> int:
        return self.page.evaluate("window.__redrawCount || 0")

    def after(self, action, *args) -> None:
        """Run an action that changes an input and wait for the redraw it causes."""
        before = self.redraws()
        action(*args)
        self.page.wait_for_function(f"(window.__redrawCount || 0) > {before} && document.body.dataset.busy === '0'")


def batch_urls(request) -> list[str]:
    """The endpoint URLs a POST /page/batch request asks for (app/page_batch.py), in order;
    [] for any other request."""
    from app.page_batch import BATCH_PATH, BATCH_PATHS

    root, sep, _ = request.url.partition(BATCH_PATH)
    if not sep or request.method != "POST":
        return []
    origin = root.split("/", 3)
    base = "/".join(origin[:3])
    prefix = "/" + origin[3] if len(origin) > 3 else ""
    return [base + prefix + BATCH_PATHS[p["name"]] for p in json.loads(request.post_data or "{}").get("parts", [])]


PREFETCH_HEADER = "x-memtype-prefetch"
"""The request header marking the page's speculative batches (static/app.js PREFETCH_HEADER)."""


def is_prefetch(request) -> bool:
    """A POST /page/batch the page sent ahead for a state one click away (no input asked it)."""
    return request.headers.get(PREFETCH_HEADER) == "1"


def batch_answers(response, name: str) -> list:
    """The bodies of the parts named `name` ("resolve", "permalink", ...) of a POST
    /page/batch response (each part its endpoint's own answer), in order."""
    parts = json.loads(response.request.post_data or "{}").get("parts", [])
    return [a["body"] for p, a in zip(parts, response.json()["parts"], strict=True) if p["name"] == name]


@pytest.fixture
def open_page(chromium):
    """open_page(color_scheme="light", viewport=(1280, 720), prefetch=False) -> PageWatch on a
    fresh context. The page's prefetch (and its reuse of answers) is off unless asked, so a
    click's own requests are what the tests count (tests/browser/test_page_prefetch.py has it on)."""
    contexts = []

    def make(color_scheme: str = "light", viewport: tuple[int, int] = (1280, 720), prefetch: bool = False) -> PageWatch:
        # bypass_csp: Playwright's wait_for_function evaluates its predicate with eval() in the
        # page, which the service's CSP forbids; tests/browser/test_csp.py checks the page under it
        ctx = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, color_scheme=color_scheme,
                                   bypass_csp=True)
        contexts.append(ctx)
        if not prefetch:
            ctx.add_init_script("window.__memtypePrefetch = false;")
        return PageWatch(ctx.new_page())

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def watched(open_page) -> PageWatch:
    return open_page()
