"""Issue 13 "Speed": the page's bounded prefetch of the states one click away (static/app.js
prefetchNeighbours), in headless Chromium against a live uvicorn.

When idle after a redraw the page asks POST /page/batch ahead for each visible boolean knob
control flipped (the knob rows of app/knobs.py, kind bool, with a control), one batch in
flight at a time, each marked with the PREFETCH_HEADER request header; a click whose exact
batch body was answered redraws from that answer without a request, and draws what a page
without the prefetch draws after the same click.
"""

from __future__ import annotations

import json

import pytest

from app.knobs import KNOBS
from tests.browser.conftest import is_prefetch

pytestmark = pytest.mark.browser

PAIR = "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&mtrr=ovmf"
BOOL_CONTROLS = [k.control for k in KNOBS if k.owner in ("vm", "vcpu") and k.kind == "bool" and k.control]
PANELS = ["#p-result", "#p-eff", "#p-map", "#p-compare"]


def visible_bools(page) -> list[str]:
    return page.evaluate("""(ids) => ids.filter((id) => { const c = document.getElementById(id);
        return c && !c.disabled && !c.closest('[hidden]'); })""", BOOL_CONTROLS)


def knob_values(body: str) -> list[dict]:
    """The vm and vcpu members of each resolve part of a batch body."""
    parts = json.loads(body)["parts"]
    return [{**p["body"]["vm"], **p["body"]["vcpu"]} for p in parts if p["name"] == "resolve"]


def wait_prefetched(w, n: int) -> None:
    w.page.wait_for_timeout(100)
    for _ in range(100):
        if len(w.prefetched) >= n and w.page.evaluate("document.body.dataset.busy") == "0":
            break
        w.page.wait_for_timeout(50)
    w.page.wait_for_timeout(200)  # the last answer is read


def panels(page) -> dict[str, str]:
    return {p: page.locator(p).inner_text() for p in PANELS}


def test_prefetch_asks_each_neighbour_once_one_at_a_time_then_a_click_asks_nothing(open_page, live_server):
    w = open_page(viewport=(1440, 900), prefetch=True)
    page = w.page
    live = {"now": 0, "most": 0}

    def started(r) -> None:
        if is_prefetch(r):
            live["now"] += 1
            live["most"] = max(live["most"], live["now"])

    def ended(r) -> None:
        if is_prefetch(r):
            live["now"] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    loaded = []
    page.on("request", lambda r: loaded.append(r.post_data) if r.url.endswith("/page/batch") and not is_prefetch(r)
            else None)
    w.goto(live_server + PAIR)
    flips = visible_bools(page)
    assert len(flips) >= 8  # CD, NW, PG, nc-DMA, the quirks, self-snoop, guest MTRRs...
    wait_prefetched(w, len(flips))
    assert len(w.prefetched) == len(flips)  # each neighbour once, nothing more while idle
    assert live["most"] == 1
    # each prefetched body is the load's with exactly one knob flipped, a different one each
    base = knob_values(loaded[0])
    flipped = set()
    for body in w.prefetched:
        got = knob_values(body)
        assert len(got) == len(base) == 2  # both eras (compare on)
        diff = {k for k in base[0] if got[0][k] != base[0][k]}
        assert len(diff) == 1 and got[1] == {**base[1], **{k: got[0][k] for k in diff}}
        flipped |= diff
    assert len(flipped) == len(flips)

    # a click on a prefetched neighbour makes no request and draws the server's answers
    before = len(w.requests)
    w.after(page.locator("#cr0_cd").click)
    assert len(w.requests) == before
    assert "cd=1" in page.url
    hot = panels(page)

    cold = open_page(viewport=(1440, 900))
    cold.goto(live_server + PAIR)
    n = len(cold.requests)
    cold.after(cold.page.locator("#cr0_cd").click)
    assert sum("/page/batch" in u for u in cold.requests[n:]) == 1 and not cold.prefetched
    assert panels(cold.page) == hot
    assert cold.page.url.split("?", 1)[1] == page.url.split("?", 1)[1]
    assert not w.console_errors and not w.page_errors


def test_the_cold_flag_turns_off_prefetch_and_reuse(open_page, live_server):
    """window.__memtypePrefetch = false (the bench's cold case): every update asks the server,
    a state seen before included, and nothing is asked ahead."""
    w = open_page()
    w.goto(live_server + PAIR)
    n = len(w.requests)
    for _ in range(4):  # CD on, off, on, off: the last three states were answered before
        w.after(w.page.locator("#cr0_cd").click)
    w.page.wait_for_timeout(400)
    assert sum("/page/batch" in u for u in w.requests[n:]) == 4
    assert not w.prefetched
    assert not w.console_errors and not w.page_errors
