"""Issue 13, links and history, honest panels: real headless Chromium (Debian's, via
Playwright) against a live uvicorn.

Each edit is a history entry (Back/Forward undo and redo); a link with a bad parameter keeps
every readable one and lists the dropped one once; links come from MEMTYPE_PUBLIC_URL and
have a short form under 72 columns; a memslot hole has no EPT entry; the page size is the
leaf's; a compare era that refuses the VM says so; an unaligned variable range is refused
by the server; panels waiting on an invalid state say "stale"; Copy link never copies an
older state.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import _free_port

pytestmark = pytest.mark.browser

PAIR = "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&cd=1&mtrr=ovmf&gpa=0xfd000000"
PUBLIC = "https://memtype.example.org"


def query(page) -> str:
    return urlsplit(page.url).query


def back(w, forward: bool = False) -> None:
    w.after(w.page.evaluate, "history.forward()" if forward else "history.back()")


def settle(w) -> None:
    """Let the history's debounce window (HISTORY_MS, 400 ms) close: the next edit is its own entry."""
    w.page.wait_for_timeout(450)


def test_each_edit_is_a_history_entry(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    q0 = query(page)
    n0 = page.evaluate("history.length")
    settle(w)
    w.after(page.get_by_label("CR0.CD", exact=True).uncheck)
    q1 = query(page)
    assert "cd=1" not in q1
    settle(w)
    w.after(page.locator("#kernel").select_option, "v6.11")
    q2 = query(page)
    assert "kernel=v6.11" in q2
    assert page.evaluate("history.length") == n0 + 2
    back(w)  # undo the era change
    assert query(page) == q1 and page.locator("#kernel").input_value() == "v6.7"
    assert not page.get_by_label("CR0.CD", exact=True).is_checked()
    assert page.locator("#ept-mask").inner_text() == "0x00"  # CD=0: OVMF's UC range, IPAT clear
    back(w)  # undo CD=0
    assert query(page) == q0 and page.get_by_label("CR0.CD", exact=True).is_checked()
    back(w, forward=True)  # redo
    assert query(page) == q1 and not page.get_by_label("CR0.CD", exact=True).is_checked()
    # restoring writes no new entry
    assert page.evaluate("history.length") == n0 + 2
    assert not w.page_errors, w.page_errors


def test_a_burst_of_edits_is_one_entry(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    n0 = page.evaluate("history.length")
    settle(w)
    # three toggles in one task: one redraw answers them, one history entry holds them
    w.after(page.evaluate, """() => { for (const id of ['cr0_cd', 'ncdma', 'selfsnoop']) {
        const c = document.getElementById(id); c.checked = !c.checked; c.dispatchEvent(new Event('change')); } }""")
    assert page.evaluate("history.length") == n0 + 1
    assert all(p not in query(page) for p in ("cd=1", "ncdma=1")) and "selfsnoop=0" in query(page)


def test_bad_parameter_is_dropped_and_the_rest_kept(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v9.9&vs=v4.2&ncdma=1&cd=1&mtrr=ovmf&gpa=0xfd000000")
    page = w.page
    notice = page.get_by_test_id("link-notice")
    assert notice.is_visible()
    items = notice.locator("li")
    assert items.count() == 1 and items.first.get_attribute("data-param") == "kernel"
    assert "kernel=v9.9" in items.first.inner_text() and "unknown kernel era" in items.first.inner_text()
    # every other parameter is as linked; the kernel is the links' default
    assert page.locator("#kernel").input_value() == "v6.16" and page.locator("#vs").input_value() == "v4.2"
    assert page.get_by_label("non-coherent DMA").is_checked() and page.get_by_label("CR0.CD", exact=True).is_checked()
    assert page.locator("#gpa").input_value() == "0xfd000000"
    assert query(page) == "v=1&vs=v4.2&ncdma=1&cd=1&mtrr=ovmf&gpa=0xfd000000"
    # said once: not in the status line, not again after an edit
    assert "v9.9" not in page.locator("#status").inner_text()
    w.after(page.get_by_label("self-snoop").uncheck)
    assert items.count() == 1 and "v9.9" not in page.locator("#status").inner_text()
    assert page.locator("body").inner_text().count("kernel=v9.9") == 1
    page.locator("#notice-close").click()
    assert not notice.is_visible()


def test_two_bad_parameters_and_an_eventless_value(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&gpa=0xzz&maxphyaddr=%C2%B2&cd=1&event=cr0_cd&event_value=7")
    page = w.page
    params = page.eval_on_selector_all("#notice-list li", "ls => ls.map(l => l.dataset.param)")
    assert params == ["maxphyaddr", "gpa", "event_value", "event"]
    assert page.locator("#kernel").input_value() == "v6.7" and page.get_by_label("CR0.CD", exact=True).is_checked()
    assert query(page) == "v=1&kernel=v6.7&cd=1"


@pytest.fixture(scope="module")
def public_server():
    """The app with MEMTYPE_PUBLIC_URL set, on its own loopback port."""
    uvicorn = pytest.importorskip("uvicorn")
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(public_url=PUBLIC))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn-public")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def test_copy_link_is_public_and_has_a_short_form(watched, public_server):
    w = watched
    w.goto(public_server + "/")
    page = w.page
    page.locator("#copy-link").click()
    page.wait_for_function("document.querySelector('#export-text').textContent.includes('/l/')")
    short, long = page.locator("#export-text").inner_text().strip().split("\n")
    assert long == f"{PUBLIC}/?{query(page)}"
    assert short.startswith(f"{PUBLIC}/l/1~") and len(short) <= 72, short
    assert "127.0.0.1" not in short + long
    page.keyboard.press("Escape")
    # the short form opens the same state (a redirect to the long query)
    seen = page.evaluate("document.querySelector('#ept-mask').textContent")
    w.goto(public_server + urlsplit(short).path)
    assert query(page) == urlsplit(long).query
    assert page.locator("#ept-mask").inner_text() == seen


def test_gap_has_no_ept_entry(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf&gpa=0xfd000000")
    page = w.page
    assert page.get_by_test_id("ept-mask").inner_text() == "0x00"
    hole = page.locator('#map .lane.main .seg.unmapped[data-start="0x80000000"]')
    w.after(hole.click)
    gpa = int(page.locator("#gpa").input_value(), 16)
    assert 0x80000000 <= gpa < 0xFD000000
    none = page.get_by_test_id("ept-none")
    assert none.is_visible() and "No EPT entry" in none.inner_text() and "no memslot" in none.inner_text()
    assert not page.locator(".ept-head").is_visible()
    assert page.locator("#bitfield .bit").count() == 0
    assert page.get_by_test_id("path-hypothetical").is_visible()  # the path is what would be, not what is
    assert "no EPT entry" in page.locator("#eff-table tbody").inner_text()
    # back in a memslot: the entry is shown again
    w.after(page.locator('#map .lane.main .seg[data-start="0xfd000000"]').click)
    assert not none.is_visible() and page.get_by_test_id("ept-mask").inner_text() == "0x00"
    assert page.get_by_test_id("path-hypothetical").count() == 0


@pytest.mark.parametrize("gpa", ["0xfd000000", "0x100000", "0x40000000", "0x100000000", "0x9f000"])
def test_leaf_and_page_size_agree(watched, live_server, gpa):
    w = watched
    w.goto(live_server + f"{PAIR.replace('gpa=0xfd000000', 'gpa=' + gpa)}")
    page = w.page
    shown = page.get_by_test_id("ept-page").inner_text()
    leaf = page.evaluate("""async () => {
      const st = JSON.parse(document.getElementById('initial-state').textContent).initial;
      const r = await fetch('/api/v1/resolve', {method: 'POST', headers: {'content-type': 'application/json'},
        body: JSON.stringify(st.scenario)});
      return (await r.json()).ept.leaf.page_size; }""")
    assert shown == leaf
    # the map's run under the address says the same
    page.locator("#runs-details summary").click()
    assert page.locator("#runs-table tbody tr.here td").last.inner_text() == shown
    cmp_row = page.locator("#cmp-table tbody tr", has_text="page size")
    assert cmp_row.locator('td[data-side="a"]').inner_text() == shown


def test_quirk_off_preset_says_the_compare_era_refuses(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    page = w.page
    w.after(page.locator("#preset").select_option, "v6.16-quirk-off")
    refused = page.get_by_test_id("cmp-refused")
    assert refused.is_visible()
    text = refused.inner_text()
    assert text.startswith("v6.11-rc1 cannot run this VM") and "IGNORE_GUEST_PAT" in text
    assert page.locator('[data-err="compare"]').inner_text() == ""  # not an error
    assert page.eval_on_selector_all("[data-err]", "es => es.map(e => e.textContent).filter(Boolean)") == []
    assert "refuses this VM" in page.locator('#cmp-table td[data-side="b"]').first.inner_text()
    assert page.get_by_test_id("diff-direction").is_visible()  # the era diff still answers
    assert page.locator(".stale-tag:not([hidden])").count() == 0


def test_every_preset_loads_without_error(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    page = w.page
    names = page.eval_on_selector_all("#preset option", "os => os.map(o => o.value).filter(Boolean)")
    for name in names:
        w.after(page.locator("#preset").select_option, name)
        errors = page.eval_on_selector_all("[data-err]", "es => es.map(e => e.textContent).filter(Boolean)")
        assert errors == [], (name, errors)
        assert page.locator("#status").inner_text() == "", name
        assert page.locator(".stale-tag:not([hidden])").count() == 0, name
    assert not w.page_errors, w.page_errors


def test_unaligned_variable_start_is_refused_once(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    base = page.get_by_label("PHYSBASE0 raw").input_value()
    start = page.get_by_label("variable range 0 start")
    start.fill("0x80100000")
    w.after(start.press, "Enter")
    err = page.locator('[data-err="vcpu.mtrr.variable[0]"]')
    assert "0x80100000" in err.inner_text() and "naturally aligned" in err.inner_text()
    assert page.locator("body").inner_text().count("naturally aligned") == 1  # once
    assert page.get_by_label("PHYSBASE0 raw").input_value() == base  # nothing rounded silently
    assert page.get_by_test_id("stale").filter(has_text="stale").count() == 5
    assert page.locator("#copy-link").is_disabled()
    # fixed: the server writes the pair, everything answers again
    size = page.get_by_label("variable range 0 size")
    size.fill("0x100000")  # 1 MiB at 0x80100000: aligned, one pair covers it
    w.after(size.press, "Enter")
    assert err.inner_text() == ""
    assert page.get_by_label("PHYSBASE0 raw").input_value() == "0x80100000"
    assert page.get_by_label("PHYSMASK0 raw").input_value() == "0x3ffffff00800"
    w.wait_ready()
    assert page.locator(".stale-tag:not([hidden])").count() == 0 and not page.locator("#copy-link").is_disabled()


def test_invalid_state_stale_error_once_and_no_old_link(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    good = page.url
    w.after(page.get_by_label("CR0.CD", exact=True).uncheck)
    settle(w)
    w.after(page.get_by_label("CR0.NW", exact=True).check)  # NW=1 with CD=0 is invalid
    msg = "CR0.NW=1 with CR0.CD=0"
    assert page.locator("body").inner_text().count(msg) == 1  # in its field only, not again in Compare
    stale = page.eval_on_selector_all(".stale-tag:not([hidden])", "ts => ts.map(t => t.closest('section').id)")
    assert set(stale) >= {"p-result", "p-eff", "p-map", "p-compare"}
    assert all(t.startswith("stale") for t in page.eval_on_selector_all(".stale-tag:not([hidden])",
                                                                        "ts => ts.map(t => t.textContent)"))
    link = page.locator("#copy-link")
    assert link.is_disabled() and "invalid" in link.get_attribute("title")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("l")  # the shortcut says why instead of copying the last good link
    assert "no link to copy" in page.locator("#status").inner_text()
    assert not page.locator("#export").is_visible()
    assert page.url != good  # the address bar holds the last valid edit (CD=0), not an older one
    w.after(page.get_by_label("CR0.NW", exact=True).uncheck)
    assert not link.is_disabled() and page.locator(".stale-tag:not([hidden])").count() == 0


def test_compare_era_map_and_zap_side_by_side(watched, live_server):
    """The seed case with its CD 1->0 event: v6.7 leaves 4192 pages stale, v4.2 1052672
    (the zap audits of both eras, from the server), and both maps on one address scale."""
    w = watched
    w.goto(live_server + "/")
    page = w.page
    side = page.get_by_test_id("cmp-side")
    assert not side.is_visible()  # closed by default: its two requests stay off the redraw path
    assert sum("/api/v1/map" in u for u in w.asked) == 1
    w.after(page.locator("#cmp-side-details summary").click)
    assert side.is_visible()
    assert page.locator("#cmp-map-a-name").inner_text() == "v6.7"
    assert page.locator("#cmp-map-b-name").inner_text() == "v4.2"
    assert page.locator("#cmp-map-a .lane.main .seg").count() > 0
    assert page.locator("#cmp-map-b .lane.main .seg").count() > 0
    stale = page.locator('#cmp-zap tr[data-count="stale pages"]')
    main_stale = page.locator('#zap-counts [data-count="stale pages"] b').inner_text()
    assert stale.locator('td[data-side="a"]').inner_text() == main_stale == "4192"
    assert stale.locator('td[data-side="b"]').inner_text() == "1052672"
    assert "differs" in stale.locator('td[data-side="b"]').get_attribute("class")
    # one scale: the VRAM run starts at the same x in both maps
    xa = page.locator('#cmp-map-a .lane.main .seg[data-start="0xfd000000"]').bounding_box()["x"]
    xb = page.locator('#cmp-map-b .lane.main .seg[data-start="0xfd000000"]').bounding_box()["x"]
    assert xa == xb
    w.after(page.locator("#vs").select_option, "")
    assert not side.is_visible() and not page.locator("#cmp-side-details").is_visible()


def test_copy_as_text_is_the_whole_view_in_72_columns(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    page = w.page
    page.locator("#copy-text").click()
    page.wait_for_function("document.querySelector('#export-text').textContent.length > 1000")
    text = page.locator("#export-text").inner_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 72, max(lines, key=len)
    assert text.count("EPT memory type for guest-physical 0xfd000000") == 2  # both eras' results
    assert "Era v6.7:" in text and "Era v4.2:" in text
    assert "c9f65a3f2d92" in text  # the commit the v6.7 path cites
    assert "stale" in text and "v6.7" in text and "v4.2" in text  # the zap audits and the diff
    assert "is dropped" not in text and "cannot run" not in text
