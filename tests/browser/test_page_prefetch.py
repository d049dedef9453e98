"""Issue 13 "Speed": the page's bounded prefetch of the states one click away (static/app.js
prefetchNeighbours), in headless Chromium against a live uvicorn.

When idle after a redraw the page asks POST /page/batch ahead for each visible boolean knob
control flipped (the knob rows of app/knobs.py, kind bool, with a control), then for each
preset, one batch in flight at a time, each marked with the PREFETCH_HEADER request header.
Answers are kept per part (endpoint and exact body): a click whose parts were all answered
redraws without a request, and draws what a page without the prefetch draws after the same
click; a batch asks only the parts not answered yet.
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


def wait_prefetched(w, n: int, batches_only: bool = False) -> None:
    """Until `n` prefetch requests were made (`batches_only`: n POST /page/batch bodies, not
    counting the prefetch's /page/system views) and the page is idle."""
    w.page.wait_for_timeout(100)
    for _ in range(100):
        got = sum(1 for b in w.prefetched if b.startswith('{"parts"')) if batches_only else len(w.prefetched)
        if got >= n and w.page.evaluate("document.body.dataset.busy") == "0":
            break
        w.page.wait_for_timeout(50)
    w.page.wait_for_timeout(200)  # the last answer is read


def wait_quiet(w, ms: int = 400) -> None:
    """Until the page has asked nothing ahead for `ms` (its prefetch pass is over)."""
    for _ in range(100):
        n = len(w.prefetched)
        w.page.wait_for_timeout(ms)
        if len(w.prefetched) == n and w.page.evaluate("document.body.dataset.busy") == "0":
            return


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
    assert live["most"] == 1
    # each of the first prefetched bodies is the load's with exactly one knob flipped, a
    # different one each (the presets come after them: test_every_preset_is_foreseen)
    base = knob_values(loaded[0])
    flipped = set()
    for body in w.prefetched[:len(flips)]:
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


def test_a_state_seen_before_is_redrawn_from_its_parts_without_a_request(open_page, live_server):
    """The answers are kept per part (static/app.js PARTS, keyed by endpoint and exact body):
    a preset chosen again redraws without any request, the same as a page that asks for it."""
    w = open_page(viewport=(1440, 900), prefetch=True)
    page = w.page
    w.goto(live_server + PAIR)
    pick = page.locator("#preset")
    w.after(pick.select_option, "ovmf")
    hot_first = panels(page)
    url_first = page.url
    w.after(pick.select_option, "seabios")
    assert page.url != url_first
    before = len(w.requests)
    w.after(pick.select_option, "ovmf")
    assert w.requests[before:] == []  # neither a batch nor anything else
    assert panels(page) == hot_first
    assert page.url == url_first

    cold = open_page(viewport=(1440, 900))
    cold.goto(live_server + PAIR)
    cold.after(cold.page.locator("#preset").select_option, "ovmf")
    assert panels(cold.page) == hot_first
    assert not w.console_errors and not w.page_errors


def test_a_neighbour_sharing_parts_asks_only_the_new_ones(open_page, live_server):
    """After a new address the prefetch of a knob's flip asks no map (the map's body has no
    address, and the flip's map was answered at the address before): only the parts whose
    body is new are in the batch."""
    w = open_page(viewport=(1440, 900), prefetch=True)
    page = w.page
    w.goto(live_server + PAIR)
    flips = visible_bools(page)
    names = page.eval_on_selector_all("#preset option", "os => os.map(o => o.value).filter(Boolean)")
    batches = lambda: [b for b in w.prefetched if b.startswith('{"parts"')]  # noqa: E731 (not /page/system)
    wait_prefetched(w, len(flips) + len(names), batches_only=True)
    assert all(any(p["name"] == "map" for p in json.loads(b)["parts"]) for b in batches()[:len(flips)])
    n = len(batches())
    gpa = page.locator("#gpa")
    gpa.fill("0x123400000")  # the typed address is asked as it is typed (prefetchTyped)
    w.after(gpa.press, "Enter")
    wait_prefetched(w, n + 1 + len(flips), batches_only=True)
    again = batches()[n:]
    assert len(again) == 1 + len(flips)  # the typed one, then the flips; the presets' parts are all here already
    for body in again:
        parts = json.loads(body)["parts"]
        assert [p["name"] for p in parts] == ["permalink", "resolve", "resolve"]
        assert all(p["body"]["gpa"] == "0x123400000" for p in parts)
    assert not w.console_errors and not w.page_errors


def test_every_preset_is_foreseen(open_page, live_server):
    """The idle page asks each preset's parts ahead (after the neighbours, each preset once):
    choosing any preset then makes no request at all, and draws what a page without the
    prefetch draws for it. This is what checks presetState (static/app.js), which foresees
    what loadPreset leads to: a preset foreseen wrong would ask here."""
    w = open_page(viewport=(1440, 900), prefetch=True)
    page = w.page
    w.goto(live_server + PAIR)
    names = page.eval_on_selector_all("#preset option", "os => os.map(o => o.value).filter(Boolean)")
    flips = visible_bools(page)
    wait_prefetched(w, len(flips) + len(names), batches_only=True)
    preset_batches = [json.loads(b) for b in w.prefetched if b.startswith('{"parts"')][len(flips):]
    assert len(preset_batches) == len(names)  # each once, nothing more while idle
    cold = open_page(viewport=(1440, 900))
    cold.goto(live_server + PAIR)
    for name in names:
        before = len(w.requests)
        w.after(page.locator("#preset").select_option, name)
        assert w.requests[before:] == [], name
        cold.after(cold.page.locator("#preset").select_option, name)
        assert panels(page) == panels(cold.page), name
        assert page.url == cold.page.url, name
        wait_quiet(w)  # this preset's neighbours and the rest before the next choice
    assert not w.console_errors and not w.page_errors and not cold.page_errors


def test_a_typed_address_is_asked_while_typed_and_enter_asks_nothing(open_page, live_server):
    """Each keystroke in the address box asks its state's parts ahead (one prefetch batch,
    a newer keystroke aborting the older); Enter then draws them with no request of its own,
    and draws what a page without the prefetch draws."""
    w = open_page(viewport=(1440, 900), prefetch=True)
    page = w.page
    w.goto(live_server + PAIR)
    wait_quiet(w)
    n = len(w.prefetched)
    gpa = page.locator("#gpa")
    gpa.fill("0x1234")
    gpa.press_sequentially("5000", delay=30)
    wait_quiet(w)
    typed = [json.loads(b) for b in w.prefetched[n:] if b.startswith('{"parts"')]
    gpas = [{p["body"].get("gpa") for p in b["parts"]} for b in typed]
    assert gpas and all(g <= {"0x1234", "0x12345", "0x123450", "0x1234500", "0x12345000"} for g in gpas), gpas
    assert gpas[-1] == {"0x12345000"}, gpas  # the last keystroke's state, every part of it
    own = len(w.requests)
    w.after(gpa.press, "Enter")
    page.wait_for_timeout(300)
    asked = [u for u in w.requests[own:] if u.endswith("/page/batch")]
    assert asked == [], asked  # answered from PARTS: the typed batch had asked it
    cold = open_page(viewport=(1440, 900))
    cold.goto(live_server + PAIR + "&gpa=0x12345000")
    assert panels(page) == panels(cold.page)
    assert not w.console_errors and not w.page_errors
