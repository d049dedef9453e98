"""Regenerate the README's and docs/walkthrough.md's screenshots: scripts/screenshot.

Why a script: a screenshot nobody can regenerate drifts away from the page and the
commands beside it. Every shot here starts from the documented seed state, the
preset app.presets.START (the page's first screen at `/`) and its permalink, so
the images show what the README's link, curl and CLI lines give.

How: the app runs in this process under uvicorn on a free loopback port; Playwright
for Python drives Debian's /usr/bin/chromium (executable_path, --no-sandbox; no
browser is ever downloaded); the viewport is 1440 px wide, light colour scheme.
`bypass_csp`: Playwright's wait_for_function evaluates with eval(), which the
service's CSP forbids (tests/browser/test_csp.py checks the page under the CSP).

Usage: scripts/screenshot [--out DIR]   (default: docs/img)
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1440, 900


def seed_query() -> str:
    """The seed permalink's query: the START preset with its compare era and zap event,
    exactly what the page shows at `/` (app/pages.py)."""
    from app.permalink import encode
    from app.presets import PRESETS, START

    p = PRESETS[START]
    return encode(replace(p.state, vs=p.compare))


def shots() -> list[tuple[str, str, str | None]]:
    """(file name, page path, element to capture or None for the viewport)."""
    from app.permalink import encode
    from app.presets import PRESETS

    seed = "/?" + seed_query()
    v42 = PRESETS["seed-v4.2"]
    seed_v42 = "/?" + encode(replace(v42.state, vs=v42.compare))
    return [
        ("seed.png", "/", None),                  # README: the first screen
        ("q1-compare.png", seed, "#p-compare"),   # does it make any type weaker?
        ("q2-effective.png", seed, "#p-eff"),     # which guests benefit?
        ("q3-zap-v6.7.png", seed, "#p-zap"),      # what must be zapped when CD 1 -> 0?
        ("q3-zap-v4.2.png", seed_v42, "#p-zap"),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve() -> tuple[str, object]:
    import uvicorn

    from app.main import app

    logging.getLogger("memtype.access").setLevel(logging.WARNING)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("screenshot: uvicorn did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/screenshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="directory for the PNG files")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshot: {CHROMIUM} is absent (apt-get install chromium); no browser is downloaded",
              file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, server = serve()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, color_scheme="light",
                                      device_scale_factor=1, bypass_csp=True)
            page = ctx.new_page()
            for name, path, selector in shots():
                page.goto(base + path)
                page.wait_for_function("document.body.dataset.ready === '1' && document.body.dataset.busy === '0'")
                page.evaluate("document.fonts.ready")
                target = out / name
                if selector is None:
                    page.screenshot(path=str(target))
                else:
                    el = page.locator(selector)
                    el.scroll_into_view_if_needed()
                    el.screenshot(path=str(target))
                print(f"screenshot: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}  <- {path}")
            browser.close()
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
