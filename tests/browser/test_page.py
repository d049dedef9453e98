"""The page in a real headless Chromium (Debian's, via Playwright) against a live uvicorn.

What a reviewer does: flip CR0.CD and the CD_NW quirk, edit a PAT entry and an MTRR
range, run a zap, share a permalink. The expected values come from the resolver's own
tests (v4.2 WB|IPAT 0x70, v6.7 WB 0x30, quirk off UC|IPAT 0x40; the CR0.CD 1->0 zap on
v6.7 with OVMF MTRRs leaves the UC ranges stale).
"""

from __future__ import annotations

import statistics
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import batch_answers

pytestmark = pytest.mark.browser

SEED = "/?v=1&kernel=v4.2&ncdma=1&mtrr=ovmf&gpa=0x100000"
RICH = "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&cd=1&pat=linux&mtrr=ovmf&gpa=0xfd000000&event=cr0_cd&event_value=0"

SNAPSHOT_JS = """() => {
  const out = {};
  const sel = ['#controls input', '#controls select', 'header select', '#p-map select', '#p-zap select',
               '#p-zap input'].join(', ');
  for (const e of document.querySelectorAll(sel)) {
    const key = e.id || e.getAttribute('aria-label') || e.name;
    if (!key) continue;
    out[key] = e.type === 'checkbox' ? e.checked : e.value;
  }
  out.__vars = Array.from(document.querySelectorAll('#var-rows .var-row')).map(r =>
    [r.querySelector('.v-base').value, r.querySelector('.v-mask').value]);
  return out;
}"""


def ept(page) -> str:
    return page.locator("#ept-mask").inner_text().strip()


def ept_type(page) -> str:
    return page.locator("#ept-type").inner_text().strip()


def badge(page, index: int) -> str:
    # the relation as the API names it (the badge's words are "looser than expected", ...)
    return page.locator(f'#eff-table tbody tr[data-pat-index="{index}"] .badge').get_attribute("data-relation")


def test_loads_offline_without_console_errors(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    page = w.page
    assert page.title().startswith("memtype-explorer")
    assert page.locator("#path li").count() >= 3
    assert page.locator("#eff-table tbody tr").count() == 8
    assert page.locator("#map .lane.main .seg").count() >= 5
    # every request stayed on loopback (data: URLs never leave the page)
    hosts = {urlsplit(u).hostname for u in w.requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, w.requests
    # the page asks the API (through POST /page/batch, one round trip per update)
    assert any("/api/v1/resolve" in u for u in w.asked)
    assert any("/api/v1/map" in u for u in w.asked)
    assert sum("/page/batch" in u for u in w.requests) == 1
    assert not w.console_errors, w.console_errors
    assert not w.page_errors, w.page_errors


def test_cd_and_quirk_flip_the_ept_entry(watched, live_server):
    w = watched
    w.goto(live_server + SEED)
    page = w.page
    assert page.get_by_label("non-coherent DMA").is_checked()
    assert ept(page) == "0x30"  # OVMF: RAM at 1 MiB is WB from the guest MTRRs, IPAT clear
    w.after(page.get_by_label("CR0.CD", exact=True).check)
    assert ept(page) == "0x70"
    assert "WB" in ept_type(page) and "IPAT" in ept_type(page)
    assert page.locator('#path li.taken').get_attribute("data-step") == "cd"
    assert page.locator('#path li.notreached').count() >= 1
    w.after(page.locator("#kernel").select_option, "v6.7")
    assert ept(page) == "0x30"
    assert "IPAT clear" in ept_type(page)
    w.after(page.get_by_label("quirk CD_NW_CLEARED").uncheck)
    assert ept(page) == "0x40"
    assert "UC" in ept_type(page) and "IPAT" in ept_type(page)
    # the bit field highlights MT (bits 5:3) and IPAT (bit 6): UC|IPAT = 000 and 1
    bits = page.locator("#bitfield .bits").nth(1).locator(".bit")
    assert [bits.nth(31 - b).inner_text() for b in (6, 5, 4, 3)] == ["1", "0", "0", "0"]
    assert "IPAT (bit 6) = 1" in page.locator("#bitfield .bit-legend").inner_text()
    assert not w.console_errors, w.console_errors


def test_keyboard_shortcut_toggles_cd(watched, live_server):
    w = watched
    w.goto(live_server + SEED)
    page = w.page
    page.locator("body").click(position={"x": 5, "y": 300})
    w.after(page.keyboard.press, "c")
    assert page.get_by_label("CR0.CD", exact=True).is_checked()
    assert ept(page) == "0x70"
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()


def test_pat_entry_change_updates_badges(watched, live_server):
    w = watched
    # stock VM, OVMF MTRRs: RAM is WB|IPAT; guest PA3 = UC expects UC -> "weaker"
    w.goto(live_server + "/?v=1&kernel=v6.7&mtrr=ovmf&gpa=0x100000")
    page = w.page
    assert badge(page, 3) == "weaker"
    assert badge(page, 0) == "same"
    w.after(page.get_by_label("PAT entry 3").select_option, "WB")
    assert page.locator("#pat-raw").input_value() == "0x0007040606070406"
    assert badge(page, 3) == "same"
    # and back through the raw value: PA1 := WC (0x01)
    page.locator("#pat-raw").fill("0x0007040606070106")
    w.after(page.locator("#pat-raw").press, "Enter")
    assert page.locator("#pat1").input_value() == "1"
    row = page.locator('#eff-table tbody tr[data-pat-index="1"]')
    assert "WC" in row.locator("td").nth(2).inner_text()
    assert badge(page, 1) == "incomparable"  # WB|IPAT where the guest asked for WC: neither is a subset
    assert "pat=0x0007040606070106" in page.url


def test_mtrr_variable_range_changes_map_and_zap(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf&gpa=0xfd000000")
    page = w.page
    page.locator("#runs-details summary").click()  # the runs table, collapsed by default
    vram = page.locator('#runs-table tbody tr[data-start="0xfd000000"]')
    assert "UC" in vram.locator("td").nth(2).inner_text()
    w.after(page.get_by_label("variable range 0 type").select_option, "WC")
    assert page.get_by_label("PHYSBASE0 raw").input_value() == "0x80000001"
    assert "WC" in vram.locator("td").nth(2).inner_text()
    assert page.locator("#map .lane").first.locator(".seg.t-WC").count() == 1
    assert "var=0x80000001:0x3fff80000800" in page.url
    # now the guest writes PHYSBASE0 back to UC: update_mtrr() zaps the pair's new range
    w.after(page.locator("#event-kind").select_option, "mtrr_write")
    w.after(page.locator("#event-msr").select_option, "0x200")
    assert page.locator("#event-value").input_value() == "0x80000001"
    page.locator("#event-value").fill("0x80000000")
    w.after(page.locator("#event-value").press, "Enter")
    w.wait_ready()
    page.wait_for_function("document.querySelector('#zap-zapped li') !== null")
    assert page.locator("#zap-zapped li").first.get_attribute("data-start") == "0x80000000"
    assert page.locator("#zap-zapped li").first.get_attribute("data-end") == "0x100000000"
    assert page.locator("#zap-needed li").first.get_attribute("data-start") == "0xfd000000"
    assert page.locator("#zap-stale li").count() == 0
    assert page.locator('#map .lane[data-zap-lane="zapped"] .seg').count() == 1


def test_zap_cd_toggle_lists_stale_ranges(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&cd=1&mtrr=ovmf")
    page = w.page
    w.after(page.locator("#event-kind").select_option, "cr0_cd")
    assert page.locator("#event-bool").input_value() == "0"  # the toggle: CD 1 -> 0
    stale = page.locator("#zap-stale li")
    assert [stale.nth(i).get_attribute("data-start") for i in range(stale.count())] == ["0xa0000", "0xfd000000"]
    assert page.locator('[data-count="stale pages"] b').inner_text() == "4192"
    assert page.locator('[data-count="zap calls"] b').inner_text() == "0"
    assert page.locator('#map .lane[data-zap-lane="stale"] .seg').count() == 2
    assert "event=cr0_cd&event_value=0" in page.url


def test_permalink_restores_the_page(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1")  # the link defaults (bare `/` opens on the review-seed preset)
    page = w.page
    w.after(page.locator("#kernel").select_option, "v6.7")
    w.after(page.get_by_label("non-coherent DMA").check)
    w.after(page.get_by_role("button", name="OVMF+Linux").click)
    w.after(page.get_by_label("PAT entry 5").select_option, "WC")
    w.after(page.get_by_label("CR0.CD", exact=True).check)
    page.locator("#gpa").fill("0x800000000")
    w.after(page.locator("#gpa").press, "Enter")
    w.after(page.locator("#vs").select_option, "v6.11")
    w.after(page.locator("#pati").select_option, "5")
    w.after(page.locator("#event-kind").select_option, "noncoherent_dma")
    link = page.url
    assert "mtrr=ovmf-linux" in link and "kernel=v6.7" in link and "vs=v6.11" in link
    before = page.evaluate(SNAPSHOT_JS)
    out_before = (ept(page), ept_type(page), page.locator("#eff-table tbody").inner_text(),
                  page.locator("#zap-counts").inner_text(), page.locator("#diff-summary").inner_text())

    w2 = open_page()
    w2.goto(link)
    p2 = w2.page
    assert p2.evaluate(SNAPSHOT_JS) == before
    assert (ept(p2), ept_type(p2), p2.locator("#eff-table tbody").inner_text(),
            p2.locator("#zap-counts").inner_text(), p2.locator("#diff-summary").inner_text()) == out_before
    assert p2.url == link  # the page rewrites nothing: the link is already canonical
    assert not w2.console_errors, w2.console_errors


def test_api_error_is_shown_inline_and_page_recovers(watched, live_server):
    w = watched
    w.goto(live_server + SEED)
    page = w.page
    w.after(page.get_by_label("CR0.NW", exact=True).check)  # NW=1 with CD=0: MOV to CR0 #GPs
    err = page.locator('[data-err="vcpu.cr0_nw"]')
    assert "CR0.NW=1 with CR0.CD=0 is invalid" in err.inner_text()
    assert page.locator("#p-result").get_attribute("class").count("stale-out") == 1
    w.after(page.get_by_label("CR0.CD", exact=True).check)
    assert err.inner_text() == ""
    assert ept(page) == "0x70"
    page.locator("#pat-raw").fill("0x0007040600070402")  # reserved type 2 in PA0
    w.after(page.locator("#pat-raw").press, "Enter")
    assert "reserved" in page.locator('[data-err="vcpu.pat"]').inner_text()
    page.locator("#pat-raw").fill("0x0007040600070406")
    w.after(page.locator("#pat-raw").press, "Enter")
    assert page.locator('[data-err="vcpu.pat"]').inner_text() == ""
    # an event the guest cannot perform: MTRRdefType with reserved type 3
    w.after(page.locator("#event-kind").select_option, "mtrr_write")
    page.locator("#event-value").fill("0xc03")
    w.after(page.locator("#event-value").press, "Enter")
    assert "event" in page.locator('[data-err="event"]').inner_text()
    assert ept(page) == "0x70"  # the rest of the page still answers
    assert not w.page_errors, w.page_errors
    # the only console errors are the browser's own notes about the 422 responses
    assert all("422" in m for m in w.console_errors), w.console_errors


def test_diff_row_loads_that_state(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2")
    page = w.page
    summary = page.locator("#diff-summary").inner_text()
    assert "states differ" in summary and "weaker" in summary
    rows = page.locator("#groups-table tbody tr")
    assert rows.count() > 0
    first = rows.first
    pattern = first.locator("td.pattern").inner_text()
    w.after(first.click)
    if "CD=1" in pattern:
        assert page.get_by_label("CR0.CD", exact=True).is_checked()
    if "ncDMA=1" in pattern:
        assert page.get_by_label("non-coherent DMA").is_checked()
    ea, eb = first.locator("td").nth(2).inner_text().split(" \u2192 ")
    # the loaded state reproduces the row: era A's entry on the left, B's on the right
    cmp = page.locator("#cmp-table tbody tr").first
    assert ea.strip() in cmp.locator('td[data-side="a"]').inner_text()
    assert eb.strip() in cmp.locator('td[data-side="b"]').inner_text()


@pytest.mark.parametrize(("era", "vs", "words"), [
    ("v6.7", "v4.2", "v6.7 against v4.2: 0 weaker, 40 stronger"),
    ("v4.2", "v6.7", "v4.2 against v6.7: 40 weaker, 0 stronger"),
])
def test_diff_direction_in_words(watched, live_server, era, vs, words):
    """Issue 13's fixed wording: the main era is judged against the compare era (CLI/API
    `diff v4.2 v6.7` gives 0 weaker, 40 stronger for v6.7 relative to v4.2)."""
    w = watched
    w.goto(live_server + f"/?v=1&kernel={era}&vs={vs}")
    assert w.page.get_by_test_id("diff-direction").inner_text().strip() == words


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots(open_page, live_server, output_dir, scheme):
    w = open_page(scheme)
    w.goto(live_server + RICH)
    page = w.page
    assert {urlsplit(u).hostname for u in w.requests if not u.startswith("data:")} == {"127.0.0.1"}, w.requests
    page.screenshot(path=str(output_dir / f"page-{scheme}.png"))
    # the full-page shot unpins the (sticky, scrolling) controls column so all of it shows
    page.add_style_tag(content=".controls { position: static; max-height: none; }")
    page.screenshot(path=str(output_dir / f"page-{scheme}-full.png"), full_page=True)
    page.locator("#p-map").scroll_into_view_if_needed()
    page.locator("#p-map").screenshot(path=str(output_dir / f"map-{scheme}.png"))
    page.locator("#fs-mtrr").screenshot(path=str(output_dir / f"mtrr-editor-{scheme}.png"))
    assert not w.console_errors, w.console_errors
    # the text export: the API's 72-column rendering, shown and copied
    page.get_by_role("button", name="Copy as text").click()
    page.wait_for_function("document.querySelector('#export-text').textContent.length > 0")
    text = page.locator("#export-text").inner_text()
    assert max(len(line) for line in text.splitlines()) <= 72
    assert "v6.7" in text


def test_toggle_to_redraw_time(watched, live_server, output_dir):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf&vs=v4.2&event=cr0_cd&event_value=1")
    page = w.page
    cd = page.get_by_label("CR0.CD", exact=True)
    times = []
    for _ in range(11):
        w.after(cd.click)
        times.append(page.evaluate("window.__lastRedrawMs"))
    times = times[1:]  # the first toggle warms caches
    med = statistics.median(times)
    line = (f"toggle->redraw (CR0.CD, resolve x2 + map + zap + cached diff): median {med:.1f} ms, "
            f"min {min(times):.1f}, max {max(times):.1f} over {len(times)} toggles")
    print("\n" + line)
    (output_dir / "redraw.txt").write_text(line + "\n")
    assert all(t is not None and t > 0 for t in times)
    assert med < 1000


def test_map_click_and_keyboard_set_the_address(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf")
    page = w.page
    seg = page.locator('#map .lane.main .seg[data-start="0x100000000"]')
    w.after(seg.click)  # the middle of the 4-6 GiB run
    gpa = int(page.locator("#gpa").input_value(), 16)
    assert 0x100000000 < gpa < 0x180000000 and gpa % 0x1000 == 0
    assert page.locator("#res-gpa").inner_text() == hex(gpa)
    assert f"gpa={hex(gpa)}" in page.url
    # keyboard: the runs are buttons; Enter picks the run's start
    vram = page.locator('#map .lane.main .seg[data-start="0xfd000000"]')
    vram.focus()
    w.after(page.keyboard.press, "Enter")
    assert page.locator("#gpa").input_value() == "0xfd000000"
    assert ept(page) == "0x00"  # inside OVMF's UC variable range: UC, IPAT clear


def test_every_preset_loads(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    page = w.page
    names = page.eval_on_selector_all("#preset option", "os => os.map(o => o.value).filter(Boolean)")
    assert len(names) >= 10
    for name in names:
        w.after(page.locator("#preset").select_option, name)
        errors = page.eval_on_selector_all('[data-err]:not([data-err="compare"])',
                                           "es => es.map(e => e.textContent).filter(Boolean)")
        assert errors == [], (name, errors)
        # an EPT entry, or (mtrr-overlap's 0xe0000000 lies in the 32-bit PCI hole of the
        # default memory map) the plain statement that no memslot means no entry
        assert ept(page).startswith("0x") or page.get_by_test_id("ept-none").is_visible(), name
        assert page.locator("#p-result").get_attribute("class").count("stale-out") == 0, name
    assert not w.page_errors, w.page_errors


def test_page_url_matches_the_api_permalink(watched, live_server):
    """The address bar is what app.permalink writes (POST /api/v1/permalink) for the page's state."""
    from app.permalink import decode, encode

    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.11&ncdma=1&selfsnoop=0&maxphyaddr=40&cd=1&nw=1&pat=linux-legacy&mtrr=ovmf")
    page = w.page
    assert sum("/api/v1/permalink" in u for u in w.asked) == 1  # one per update
    page.locator("#gpa").fill("0xc0000")
    w.after(page.locator("#gpa").press, "Enter")
    w.after(page.locator("#event-kind").select_option, "mtrr_write")
    w.after(page.locator("#event-msr").select_option, "0x201")
    w.after(page.locator("#pati").select_option, "7")
    query = urlsplit(page.url).query
    assert encode(decode(query)) == query
    assert "maxphyaddr=40" in query and "mtrr=ovmf&" in query and "pat=linux-legacy" in query
    assert "event=mtrr_write&event_msr=0x201&event_value=0xff80000800&pati=7" in query
    assert decode(query).pati == 7 and decode(query).view == "zap"
    with page.expect_response("**/page/batch") as resp:
        w.after(page.get_by_label("CR0.PG").uncheck)
    # resolve's own permalink is the same state without the zap view and event
    page_query = (urlsplit(page.url).query.replace("view=zap&", "")
                  .replace("&event=mtrr_write&event_msr=0x201&event_value=0xff80000800", "").replace("&pati=7", ""))
    assert urlsplit(batch_answers(resp.value, "resolve")[0]["permalink"]).query == page_query
    # an invalid state (CR0.NW without CD) gets no link: the address bar keeps the last good one
    good = page.url
    w.after(page.get_by_label("CR0.CD", exact=True).uncheck)
    assert page.url == good
    assert "CR0.NW=1 with CR0.CD=0" in page.locator('[data-err="vcpu.cr0_nw"]').inner_text()


@pytest.mark.parametrize("query, field, word, kept", [
    ("v=1&kernel=v9.9&cd=1", "kernel", "v9.9", "v=1&cd=1"),
    ("v=1&maxphyaddr=%C2%B2&ncdma=1", "maxphyaddr", "\u00b2", "v=1&ncdma=1"),  # '²': isdigit() yes, int() no
    ("v=1&fixed=UC*%C2%B2&kernel=v6.7", "fixed", "\u00b2", "v=1&kernel=v6.7"),
])
def test_bad_permalink_parameter_is_dropped_and_named(watched, live_server, query, field, word, kept):
    """One bad parameter: the page keeps every other one and names the dropped one (with its
    value and the rule) in the notice, once; the address bar is the link of what is shown."""
    w = watched
    w.goto(live_server + "/?" + query)
    page = w.page
    item = page.locator(f'#notice-list li[data-param="{field}"]')
    assert item.count() == 1 and word in item.inner_text() and f"{field}=" in item.inner_text()
    assert page.locator("#status").inner_text() == ""
    assert ept(page).startswith("0x")
    assert urlsplit(page.url).query == kept
    assert not w.page_errors, w.page_errors
