"""The page's register editors and MTRR lane in Chromium: everything they show or write
comes from the server (app/pages.py's /page/* helpers, the map's `mtrr` member).

These replace the tests that grepped static/app.js for copies of rules: here the page is
driven, and what it shows and sends is compared with the server's own answers. Where a
value is checked, it is the one app.x86 gives (MTRRdefType 0x806 = E | WB, PHYSMASK.V =
bit 11, PHYSMASK for 1 GiB at MAXPHYADDR 40 = 0xffc0000800, ...).
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import batch_answers

pytestmark = pytest.mark.browser

BUG = "/?v=1&kernel=v6.7&ncdma=1&deftype=0x806"  # E=1, FE=0, no fixed or variable range


def mtrr_lane(page):
    return page.locator("#map .lane").first


def posted(w, path: str) -> list[dict]:
    return [json.loads(r.post_data) for r in w.posts if r.url.endswith(path)]


@pytest.fixture
def w(watched):
    watched.posts = []
    watched.page.on("request", lambda r: watched.posts.append(r) if r.method == "POST" else None)
    return watched


def test_enabled_mtrrs_without_ranges_show_the_default_type_as_resolve_does(w, live_server):
    """Issue 11's bug: with E=1, FE=0 and no range the lane said "MTRRs disabled (E=0):
    guest expects UC" while resolve (and the runs) said WB."""
    w.goto(live_server + BUG)
    page = w.page
    lane = mtrr_lane(page)
    text = lane.inner_text()
    assert "disabled" not in text and "default WB" in text, text
    assert lane.get_attribute("data-enabled") == "1"
    assert lane.locator(".seg.t-WB").count() == 1 and lane.locator(".seg.t-UC").count() == 0
    # resolve says the same for the address under study
    assert "WB" in page.locator("#lookups dd").nth(1).inner_text()
    page.locator("#runs-details summary").click()
    rows = page.locator("#mtrr-ranges-table tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-source") == "default"
    assert rows.first.locator("td").nth(1).inner_text() == "WB"
    assert page.get_by_label("enable (E)").is_checked() and not page.get_by_label("fixed enable (FE)").is_checked()
    assert page.locator("#mtrr-deftype").input_value() == "6"
    # clearing E: the server writes MTRRdefType 0x6 and the lane says UC everywhere
    w.after(page.get_by_label("enable (E)").uncheck)
    assert page.locator("#deftype-hex").inner_text() == "0x6"
    # the value the server wrote (app.x86.mtrr.def_type_value) for every E/FE/type, in the
    # page's initial data: the click redraws without a round trip to /page/mtrr-deftype
    from app.x86.mtrr import def_type_value
    table = json.loads(page.locator("#initial-state").text_content())["registers"]["def_type_values"]
    assert table["006"] == f"{def_type_value(False, False, 6):#x}" == "0x6"
    assert not posted(w, "/page/mtrr-deftype")
    assert lane.get_attribute("data-enabled") == "0"
    assert "MTRRs disabled (E=0): guest expects UC" in lane.inner_text()
    assert rows.first.get_attribute("data-source") == "disabled"
    assert "deftype=0x6" in page.url


def test_default_type_and_fe_are_written_by_the_server(w, live_server):
    w.goto(live_server + BUG)
    page = w.page
    w.after(page.locator("#mtrr-deftype").select_option, "WC")
    assert page.locator("#deftype-hex").inner_text() == "0x801"
    assert "default WC" in mtrr_lane(page).inner_text()
    w.after(page.get_by_label("fixed enable (FE)").check)
    assert page.locator("#deftype-hex").inner_text() == "0xc01"
    # FE with all fixed MSRs 0: the first MiB is UC, drawn as a fixed range over the WC default
    assert mtrr_lane(page).locator(".seg.t-UC").count() == 1
    assert "deftype=0xc01" in page.url


def test_variable_range_views_come_from_the_server(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&maxphyaddr=40&deftype=0x806")
    page = w.page
    w.after(page.locator("#var-add").click)
    base, mask = page.get_by_label("PHYSBASE0 raw"), page.get_by_label("PHYSMASK0 raw")
    assert (base.input_value(), mask.input_value()) == ("0xc0000000", "0xffc0000800")  # 1 GiB UC at 3 GiB
    row = page.locator("#var-rows .var-row").first
    assert row.locator(".v-note").inner_text() == "1G"
    # type and V: the server sets PHYSBASE bits 7:0 and PHYSMASK bit 11, nothing else
    w.after(page.get_by_label("variable range 0 type").select_option, "WT")
    assert base.input_value() == "0xc0000004"
    w.after(page.get_by_label("variable range 0 valid").uncheck)
    assert mask.input_value() == "0xffc0000000"
    assert posted(w, "/page/mtrr-pair-fields")[-1] == {"index": 0, "base": "0xc0000004", "mask": "0xffc0000800",
                                                        "type": 4, "valid": False}
    # a raw mask with a hole: no size, the server says why
    mask.fill("0xffa0000800")
    w.after(mask.press, "Enter")
    assert page.get_by_label("variable range 0 size").input_value() == ""
    assert row.locator(".v-note").inner_text() == "mask has holes"
    assert page.get_by_label("variable range 0 valid").is_checked()
    # a malformed raw base: marked, and resolve names the field
    base.fill("0xzz")
    w.after(base.press, "Enter")
    assert base.get_attribute("aria-invalid") == "true"


def test_maxphyaddr_change_rewrites_contiguous_masks(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf")
    page = w.page
    assert page.get_by_label("PHYSMASK0 raw").input_value() == "0x3fff80000800"  # written for MAXPHYADDR 46
    page.locator("#maxphyaddr").fill("40")
    w.after(page.locator("#maxphyaddr").press, "Enter")
    assert page.get_by_label("PHYSMASK0 raw").input_value() == "0xff80000800"
    assert page.get_by_label("PHYSBASE0 raw").input_value() == "0x80000000"
    assert all(b["maxphyaddr"] == 40 for b in posted(w, "/page/mtrr-pair"))
    assert not page.locator("[data-testid=stale]:visible").count()


def test_pat_entries_come_from_the_server(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&mtrr=ovmf")
    page = w.page
    w.after(page.get_by_label("PAT entry 7").select_option, "WC")
    assert page.locator("#pat-raw").input_value() == "0x0107040600070406"
    assert posted(w, "/page/pat-value")[-1] == {"entries": [6, 4, 7, 0, 6, 4, 7, 1]}
    # a reserved byte in the raw value: that entry is marked, the others still follow it
    page.locator("#pat-raw").fill("0x0207040600070405")
    w.after(page.locator("#pat-raw").press, "Enter")
    assert page.locator("#pat7").get_attribute("aria-invalid") == "true"
    assert page.locator("#pat0").input_value() == "5" and page.locator("#pat0").get_attribute("aria-invalid") == "false"
    assert "vcpu.pat" in page.locator('[data-err="vcpu.pat"]').inner_text()


def test_fixed_range_chips_are_the_servers_reading(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&mtrr=ovmf")
    page = w.page
    page.locator("#fixed-details summary").click()
    chips = page.locator("#fixed-chips2 .chip")  # MTRRfix16K_A0000: OVMF's UC VGA window
    assert chips.count() == 8 and chips.all_inner_texts() == ["UC"] * 8
    assert chips.first.get_attribute("title") == "0xa0000-0xa4000: UC"
    page.locator("#fixed0").fill("0x0706060606060601")
    w.after(page.locator("#fixed0").press, "Enter")
    texts = page.locator("#fixed-chips0 .chip").all_inner_texts()
    assert texts == ["WC", "WB", "WB", "WB", "WB", "WB", "WB", "r7"]  # 7 (UC-) is no MTRR type


def test_msr_list_and_current_value_come_from_the_server(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&ncdma=1&mtrr=ovmf")
    page = w.page
    w.after(page.locator("#event-kind").select_option, "mtrr_write")
    opts = page.locator("#event-msr option").all_inner_texts()
    assert len(opts) == 1 + 11 + 16
    assert opts[0] == "0x2ff MTRRdefType" and opts[1] == "0x250 MTRRfix64K_00000"
    assert opts[-1] == "0x20f MTRRphysMask7"
    assert page.locator("#event-value").input_value() == "0xc06"  # MTRRdefType now
    w.after(page.locator("#event-msr").select_option, "0x201")
    assert page.locator("#event-value").input_value() == "0x3fff80000800"
    w.after(page.locator("#event-msr").select_option, "0x20f")
    assert page.locator("#event-value").input_value() == "0x0"  # pair 7 is not programmed
    assert posted(w, "/page/msr-value")[-1]["msr"] == "0x20f"


def test_diff_group_is_opened_by_the_server(w, live_server):
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2&pat=linux&mtrr=ovmf&gpa=0xfd000000")
    page = w.page
    rows = page.locator("#groups-table tbody tr")
    assert rows.count() > 0
    w.after(rows.first.click)
    sent = posted(w, "/page/diff-state")[-1]
    pattern = sent["pattern"]
    assert sent["scenario"]["gpa"] == "0xfd000000"
    if pattern["guest_mtrr"] != "*":  # state_scenario: E, no ranges, the state's type as default
        code = {"UC": 0, "WC": 1, "WT": 4, "WP": 5, "WB": 6}[pattern["guest_mtrr"]]
        assert page.locator("#deftype-hex").inner_text() == hex(0x800 | code)
        assert page.locator("#var-rows .var-row").count() == 0
    if pattern["cr0_cd"] != "*":
        assert page.get_by_label("CR0.CD", exact=True).is_checked() == pattern["cr0_cd"]
    if pattern["pat"] == "*":
        assert page.locator("#pat-raw").input_value() == "0x0407050600070106"  # kept
    assert page.locator("#gpa").input_value() == "0xfd000000"  # every other input kept
    assert not w.console_errors and not w.page_errors


def test_the_address_bar_is_the_servers_permalink(w, live_server):
    """What the old source grep asked (no second encoder in the script): every address bar
    the page writes is the query POST /api/v1/permalink answered."""
    w.goto(live_server + BUG)
    page = w.page
    answers = []
    page.on("response", lambda r: answers.extend(batch_answers(r, "permalink")) if r.url.endswith("/page/batch")
            else None)
    w.after(page.get_by_label("CR0.CD", exact=True).check)
    w.wait_ready()
    assert answers
    assert page.url.split("?", 1)[1] == answers[-1]["query"]
    assert "cd=1" in page.url


def test_pat_grid_and_ept_bits_follow_the_servers_layouts(w, live_server):
    """The PTE bits under each PAT entry (app.x86.pat.pte_flags_text) and the MT/IPAT
    highlight of the EPT leaf (the leaf's field list) come from the server."""
    w.goto(live_server + "/?v=1&kernel=v4.2&ncdma=1&mtrr=ovmf&gpa=0x100000")
    page = w.page
    label = page.locator("#pat-grid label").nth(5)
    assert label.get_attribute("title") == "PAT=1 PCD=0 PWT=1" and "(101)" in label.inner_text()
    assert page.locator("#bitfield .bit.mt").count() == 3 and page.locator("#bitfield .bit.ipat").count() == 1
    legend = page.locator("#bitfield .bit-legend").inner_text()
    assert page.locator("#ept-mask").inner_text() == "0x30"  # nc-DMA: the guest's WB, IPAT clear
    assert "MT (bits 5:3) = 110b = 6" in legend and "IPAT (bit 6) = 0" in legend
