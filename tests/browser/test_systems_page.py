"""The page with the other systems (issue 14): KVM on AMD (SVM with NPT), TDX VMs and Xen.

Each system's answer is drawn in the same panels: the decision path, the entry (the NPT
entry's bit field with PWT/PCD/PAT instead of the EPT leaf's MT/IPAT), the per-PAT-entry
table; the zap view; the controls a system fixes disabled with the server's reason
(POST /page/system, which asks resolve); a setting a system refuses shown as a 422 at its
control; the permalink carries vendor, type and the Xen kernel. Expected values are the
API's answers for the same state (checked with curl while writing: AMD raw NPT leaf
0x...1027 at gpa 0x1000, gPAT = the guest's power-on PAT, quirk off + CD=1 -> CPU CD=1
and every entry UC; Xen with no passthrough WB|IPAT, p2m_mmio_direct UC).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.xen.versions import SYSTEM_ID, XEN_VERSIONS

pytestmark = pytest.mark.browser

AMD = "/?v=1&vendor=amd&gpa=0x1000"
TDX = "/?v=1&vmtype=tdx&gpa=0x1000"
TDX_FIXED = "/?v=1&pat_quirk=0&vmtype=tdx&deftype=0x806&gpa=0x1000"


def system(page) -> str:
    return page.evaluate("document.body.dataset.system")


def err(page, field: str) -> str:
    return page.locator(f'[data-err="{field}"]').first.inner_text().strip()


def pat_cells(page, col: str) -> list[str]:
    return [t.strip() for t in page.locator(f"#eff-table tbody td.{col} .t").all_inner_texts()]


def choose_xen(w, kernel: str = SYSTEM_ID) -> None:
    w.after(w.page.locator("#kernel").select_option, kernel)
    w.page.wait_for_function("document.body.dataset.system === 'xen'")


def test_era_list_offers_the_xen_releases_from_the_server(watched, live_server):
    w = watched
    w.goto(live_server + "/")
    values = w.page.locator('#kernel optgroup[label="Xen"] option').evaluate_all("os => os.map(o => o.value)")
    assert values == [SYSTEM_ID, *XEN_VERSIONS]
    assert w.page.locator("#fs-xen").is_hidden()
    assert system(w.page) == "kvm-intel"


def test_amd_draws_the_npt_entry_host_side_gpat_and_cr0(watched, live_server):
    w = watched
    w.goto(live_server + AMD)
    page = w.page
    assert page.locator("#vendor").input_value() == "amd"
    assert system(page) == "kvm-amd"
    assert "NPT leaf entry" in page.locator("#entry-title").inner_text()
    assert page.locator("#path-title").inner_text() == "make_spte(), svm_set_cr0(), g_pat"
    assert page.locator("#ept-raw").inner_text() == "0x0000000000001027"
    assert page.locator("#ept-page").inner_text() == "4K"
    # the NPT bit field: PWT, PCD and PAT are the highlighted fields (no MT, no IPAT)
    hl = page.locator("#bitfield .fields span.hl").evaluate_all("es => es.map(e => e.title.split(' ')[0])")
    assert sorted(hl) == ["PAT", "PCD", "PWT"]
    assert "MT" not in page.locator("#bitfield .fields").first.inner_text().split()
    assert page.locator("[data-testid=gpat]").inner_text() == "0x0007040600070406"
    assert page.locator("[data-testid=hw-cr0]").inner_text() == "guest CD=0 NW=0 \u2192 CPU CD=0 NW=0"
    assert page.locator("#path li").evaluate_all("ls => ls.map(l => l.dataset.step)") == [
        "npt", "host", "cr0", "gpat", "combine"]
    assert page.locator("#eff-table tbody tr").count() == 8
    assert pat_cells(page, "effective") == ["WB", "WT", "UC", "UC", "WB", "WT", "UC", "UC"]
    assert "vm.self_snoop has no effect on AMD" in page.locator("[data-testid=sys-notes]").inner_text()
    # the quirk off and CR0.CD=1: the CPU's CR0.CD is the guest's, every entry is UC
    w.after(page.get_by_label("quirk CD_NW_CLEARED").uncheck)
    w.after(page.get_by_label("CR0.CD", exact=True).check)
    assert page.locator("[data-testid=hw-cr0]").inner_text() == "guest CD=1 NW=0 \u2192 CPU CD=1 NW=0"
    assert pat_cells(page, "effective") == ["UC"] * 8
    # the map draws AMD's runs with the NPT entry in the EPT column
    assert page.locator("#map .lane.main .seg").count() >= 5
    assert "NPT host PAT entry 0" in page.locator("#runs-table tbody").text_content()
    assert not w.page_errors, w.page_errors


def test_amd_fixes_the_vm_type_and_an_old_kernel_fixes_the_pat_quirk(watched, live_server):
    w = watched
    w.goto(live_server + AMD)
    page = w.page
    vt = page.locator("#vmtype")
    assert vt.is_disabled()
    assert "KVM_X86_TDX_VM is offered by kvm_intel only" in vt.get_attribute("title")
    assert page.locator("#pat_quirk").is_enabled()  # 6.16: accepted (a note says it has no effect)
    w.after(page.locator("#kernel").select_option, "v6.11")
    page.wait_for_function("document.querySelector('#pat_quirk').disabled")
    assert "cannot be turned off under v6.11" in page.locator("#pat_quirk").get_attribute("title")
    assert "quirk IGNORE_GUEST_PAT" in page.locator("#sys-fixed").inner_text()
    w.after(page.locator("#vendor").select_option, "intel")
    page.wait_for_function("!document.querySelector('#pat_quirk').disabled"
                           " && !document.querySelector('#vmtype').disabled")
    assert system(page) == "kvm-intel"
    assert "EPT" in page.locator("#entry-title").inner_text()
    assert page.locator("#sys-out").is_hidden()


def test_amd_zap_shows_no_needed_pages_and_the_reason(watched, live_server):
    w = watched
    w.goto(live_server + AMD + "&ncdma=1&cdnw_quirk=0&kernel=6.5&view=zap&event=cr0_cd&event_value=1")
    page = w.page
    assert page.locator("#zap-out").is_visible()
    counts = dict(zip(page.locator("#zap-counts .count").evaluate_all("cs => cs.map(c => c.dataset.count)"),
                      page.locator("#zap-counts .count b").all_inner_texts(), strict=True))
    assert counts["needed pages"] == "0" and counts["stale pages"] == "0"
    assert counts["zap calls"] == "1"  # 6.5 zaps everything with nc-DMA and the quirk off
    assert counts["zapped pages"] == counts["excess pages"] == "1118208"
    assert "no NPT entry holds a memory type" in page.locator("[data-testid=zap-notes]").inner_text()


def test_tdx_refusals_at_their_controls_then_the_fixed_values(watched, live_server):
    w = watched
    w.goto(live_server + TDX)
    page = w.page
    assert system(page) == "kvm-tdx"
    # the defaults a TD cannot have: the first named at its own control, the panels stale;
    # both listed as to be set, with the rule
    assert "always disabled for a TDX VM" in err(page, "vm.quirk_ignore_guest_pat")
    assert page.locator("#p-result .stale-tag").is_visible()
    todo = page.locator("#sys-fixed li.off").all_inner_texts()
    assert len(todo) == 2 and "quirk IGNORE_GUEST_PAT" in todo[0] and "default type" in todo[1], todo
    assert "not enabled with default type WB" in todo[1]
    apply = page.locator("[data-testid=sys-apply]")
    assert apply.inner_text() == "Set the 2 fixed values"
    w.after(apply.click)
    page.wait_for_function("document.querySelector('#pat_quirk').disabled")
    assert err(page, "vm.quirk_ignore_guest_pat") == "" and err(page, "vcpu.mtrr.def_type") == ""
    assert apply.is_hidden()
    for cid, words in (("cr0_cd", "the TDX module fixes CR0.CD to 0"), ("pat_quirk", "tdx_vm_init()"),
                       ("mtrr-e", "enforces MTRRs enabled, default WB"), ("mtrr-deftype", "default WB"),
                       ("vendor", "a TDX VM needs an Intel CPU")):
        c = page.locator(f"#{cid}")
        assert c.is_disabled(), cid
        assert words in c.get_attribute("title"), cid
    assert page.locator("#mtrr-e").is_checked()
    assert page.locator("#mtrr-deftype option:checked").inner_text() == "WB"
    assert page.locator("#deftype-hex").inner_text() == "0x806"
    assert page.locator("[data-testid=tdx-gpa]").inner_text() == "shared"
    assert page.locator("#ept-type").get_attribute("data-notation") == "WB"
    assert "IPAT clear" in page.locator("#ept-type").inner_text()
    assert page.locator("#path li.taken").get_attribute("data-step") == "honor-pat"
    assert pat_cells(page, "effective") == ["WB", "WT", "UC", "UC", "WB", "WT", "UC", "UC"]
    assert "vmtype=tdx" in page.url and "pat_quirk=0" in page.url and "deftype=0x806" in page.url
    # a private GPA: the Secure EPT, the TDX module's (unverified) choice
    assert page.locator("#private").is_visible()
    w.after(page.locator("#private").check)
    assert page.locator("[data-testid=tdx-gpa]").inner_text() == "private"
    assert "not verified" in page.locator("[data-testid=sys-notes]").inner_text()
    assert not w.page_errors, w.page_errors


def test_tdx_under_an_old_kernel_is_refused_at_the_vm_type(watched, live_server):
    w = watched
    w.goto(live_server + TDX_FIXED)
    page = w.page
    w.after(page.locator("#kernel").select_option, "v6.7")
    assert "no TDX VMs under 'v6.7'" in err(page, "vm.type")
    assert "KVM_X86_TDX_VM first in 6.16" in err(page, "vm.type")
    assert page.locator("#p-result .stale-tag").is_visible()
    w.after(page.locator("#kernel").select_option, "v6.16")
    assert err(page, "vm.type") == ""
    assert system(page) == "kvm-tdx"


def test_tdx_zap_cd_toggle_is_refused_at_the_event(watched, live_server):
    w = watched
    w.goto(live_server + TDX_FIXED + "&view=zap&event=noncoherent_dma&event_value=1")
    page = w.page
    assert page.locator("#zap-out").is_visible()
    assert page.locator('#zap-counts [data-count="zapped pages"] b').inner_text() == "0"
    w.after(page.locator("#event-kind").select_option, "cr0_cd")
    w.after(page.locator("#event-bool").select_option, "1")
    assert "CR0.CD := 1 in a TD" in err(page, "event")


def test_xen_panels_facts_and_fixed_controls(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&gpa=0x1000")
    page = w.page
    choose_xen(w)
    assert page.locator("#fs-xen").is_visible()
    assert page.locator("#path-title").inner_text() == "epte_get_entry_emt()"
    assert page.locator("#res-era").inner_text().startswith("xen-4.21")
    assert page.locator("#ept-type").get_attribute("data-notation") == "WB!"
    assert page.locator("#ept-mask").inner_text() == "0x70"
    assert page.locator("#path li.taken").get_attribute("data-step") == "no_passthrough"
    assert page.locator("#xen-cd-path li").count() == 2
    # KVM's VM settings and is_mmio: disabled, with Xen's reason
    for cid in ("ncdma", "cdnw_quirk", "pat_quirk", "selfsnoop", "guest_mtrr"):
        assert page.locator(f"#{cid}").is_disabled(), cid
        assert "Xen reads only MAXPHYADDR and the memory map" in page.locator(f"#{cid}").get_attribute("title"), cid
    assert page.locator("#mmio").is_disabled()
    assert page.locator("#maxphyaddr").is_enabled() and page.locator("#cr0_cd").is_enabled()
    # the p2m entry's type: p2m_mmio_direct is UC
    w.after(page.locator("#xen-p2m_type").select_option, "mmio_direct")
    assert page.locator("#path li.taken").get_attribute("data-step") == "mmio_direct"
    assert page.locator("#ept-type").get_attribute("data-notation").startswith("UC")
    # a domain with an IOMMU: the guest x host MTRR combine decides (MTRRs off: UC)
    w.after(page.locator("#xen-p2m_type").select_option, "ram")
    w.after(page.locator("#xen-iommu").check)
    assert page.locator("#path li.taken").get_attribute("data-step") == "combine"
    assert pat_cells(page, "effective") == ["UC"] * 8
    assert page.locator("#map .lane.main .seg").count() >= 5  # the map takes the domain facts
    assert err(page, "pat_index") == ""
    # back to KVM: the Xen inputs go, the controls come back
    w.after(page.locator("#kernel").select_option, "v6.16")
    assert page.locator("#fs-xen").is_hidden()
    assert page.locator("#ncdma").is_enabled() and page.locator("#mmio").is_enabled()
    assert not w.page_errors, w.page_errors


def test_xen_zap_is_an_invalidation_recomputed_on_next_access(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&view=zap&kernel=xen&event=mtrr_write&event_msr=0x2ff&event_value=0xc06"
           "&xen_iommu=1&xen_io=1&gpa=0x1000")
    page = w.page
    assert system(page) == "xen"
    assert page.locator("#xen-iommu").is_checked() and page.locator("#xen-io_resources").is_checked()
    assert page.locator("[data-testid=xen-ept-text]").inner_text() == "invalidated, recomputed on next access"
    counts = dict(zip(page.locator("#zap-counts .count[data-count]").evaluate_all("cs => cs.map(c => c.dataset.count)"),
                      page.locator("#zap-counts .count[data-count] b").all_inner_texts(), strict=True))
    assert counts == {"invalidated pages": "1118208", "needed pages": "1052416", "stale pages": "0",
                      "excess pages": "65792"}
    assert page.locator("#zap-zapped-h").inner_text() == "invalidated"
    assert page.locator("#zap-zapped li").all_inner_texts()[0] == "0x0-0x80000000 (524288 p)"
    assert "ept_invalidate_emt_subtree" in page.locator("[data-testid=zap-notes]").inner_text()
    assert page.locator('#map .lane.zap[data-zap-lane="zapped"] .seg').count() == page.locator("#zap-zapped li").count()
    assert not w.page_errors, w.page_errors


def test_xen_refuses_a_kvm_setting_given_in_the_link(watched, live_server):
    """A link's KVM setting is not dropped silently under Xen: the 422 names it, the control
    stays editable until it holds the value Xen takes."""
    w = watched
    w.goto(live_server + "/?v=1&ncdma=1&gpa=0x1000")
    page = w.page
    choose_xen(w)
    assert "KVM settings given with a Xen kernel" in err(page, "vm")
    assert page.locator("#ncdma").is_enabled() and page.locator("#ncdma").is_checked()
    w.after(page.locator("#ncdma").uncheck)
    assert err(page, "vm") == ""
    assert page.locator("#ncdma").is_disabled()


@pytest.mark.parametrize(("query", "controls"), [
    (AMD + "&kernel=v6.11", {"vendor": "amd", "vmtype": "default", "kernel": "v6.11"}),
    (TDX_FIXED, {"vendor": "intel", "vmtype": "tdx"}),
])
def test_permalink_round_trip_of_vendor_and_type(open_page, live_server, query, controls):
    w = open_page()
    w.goto(live_server + query)
    link = w.page.url
    assert all(f"{k}=" in link for k in ("vendor", "vmtype") if controls.get(k) not in ("intel", "default"))
    w2 = open_page()
    w2.goto(link)
    for cid, value in controls.items():
        assert w2.page.locator(f"#{cid}").input_value() == value, cid
    assert system(w2.page) == system(w.page)
    assert w2.page.url == link


def test_permalink_round_trip_of_xen(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1&gpa=0x1000")
    choose_xen(w, "xen-4.19")
    w.after(w.page.locator("#xen-iommu").check)
    w.after(w.page.locator("#xen-p2m_type").select_option, "grant_map_rw")
    w.page.wait_for_function("document.querySelector('#copy-link').dataset.valid === '1'")
    link = w.page.url
    assert "kernel=xen-4.19" in link and "xen_p2m=grant_map_rw" in link and "xen_iommu=1" in link
    assert "xen_host_mtrr" not in link  # defaults left out
    w2 = open_page()
    w2.goto(link)
    assert w2.page.locator("#kernel").input_value() == "xen-4.19"
    assert system(w2.page) == "xen"
    assert w2.page.locator("#xen-p2m_type").input_value() == "grant_map_rw"
    assert w2.page.locator("#xen-iommu").is_checked()
    assert w2.page.locator("#path li.taken").get_attribute("data-step") == "grant_foreign"


@pytest.mark.parametrize("width", [1440, 1024, 390])
def test_screenshots(open_page, live_server, output_dir: Path, width):
    for name, query in (("amd", AMD), ("tdx", TDX_FIXED)):
        w = open_page(viewport=(width, 900))
        w.goto(live_server + query)
        w.page.screenshot(path=str(output_dir / f"systems-{name}-{width}.png"), full_page=True)
    w = open_page(viewport=(width, 900))
    w.goto(live_server + "/?v=1&gpa=0x1000")
    choose_xen(w)
    w.page.screenshot(path=str(output_dir / f"systems-xen-{width}.png"), full_page=True)
    assert not w.page_errors


axe_pkg = pytest.importorskip("axe_playwright_python")
AXE_JS = (Path(axe_pkg.__file__).parent / "axe.min.js").read_text()


def _serious(page) -> list[tuple[str, int, list]]:
    page.evaluate(AXE_JS)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], len(v["nodes"]), [n["target"] for n in v["nodes"][:5]])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1440, 390])
@pytest.mark.parametrize("state", ["amd", "tdx-refused", "tdx", "xen"])
def test_no_serious_axe_violation(open_page, live_server, state, scheme, width):
    w = open_page(color_scheme=scheme, viewport=(width, 900))
    w.goto(live_server + {"amd": AMD + "&view=zap&event=cr0_cd&event_value=1", "tdx-refused": TDX,
                          "tdx": TDX_FIXED, "xen": "/?v=1&gpa=0x1000"}[state])
    if state == "xen":
        choose_xen(w)
    assert _serious(w.page) == []


# -- Compare: another system as the second side (issue 14) ------------------------------------

def api_diff(live_server, **body) -> dict:
    """POST /api/v1/diff on the live server: what the compare panel must show."""
    import httpx

    r = httpx.post(live_server + "/api/v1/diff", json={"limit": 0, **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def cmp_cells(page, row: str) -> tuple[str, str]:
    tr = page.locator(f'#cmp-table tbody tr[data-row="{row}"]')
    return tr.locator('td[data-side="a"]').inner_text().strip(), tr.locator('td[data-side="b"]').inner_text().strip()


def settle(w) -> None:
    """Let the history's debounce window (HISTORY_MS, 400 ms) close: the next edit is its own entry."""
    w.page.wait_for_timeout(450)


def test_compare_list_offers_the_other_systems_from_the_server(watched, live_server):
    from app.pages import COMPARE_SIDES

    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2")
    opts = w.page.locator("#vs option").evaluate_all(
        "os => os.map(o => [o.parentElement.label || '', o.value, o.dataset.vs, o.dataset.vendor, o.dataset.system])")
    assert opts[0] == ["", "", "", "intel", ""]
    assert opts[1:] == [[o["group"], o["value"], o["vs"], o["vendor"], o["system"]] for o in COMPARE_SIDES]
    groups = w.page.locator("#vs optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert groups[:2] == ["KVM on Intel (EPT)", "KVM on AMD (NPT)"] and groups[-1] == "Xen (EPT)"


def test_compare_with_amd_side_by_side_and_the_cross_system_diff(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2&gpa=0x1000")
    page = w.page
    assert page.get_by_test_id("diff-direction").inner_text() == "v6.7 against v4.2: 0 weaker, 40 stronger"
    assert page.locator("#cmp-sys").is_hidden()
    w.after(page.locator("#vs").select_option, "amd:v6.16")
    page.wait_for_function("document.querySelector('#cmp-sys') && !document.querySelector('#cmp-sys').hidden")
    d = api_diff(live_server, a="v6.7", b="v6.16", b_vendor="amd")
    c = d["counts"]
    assert (c["weaker"], c["stronger"]) == (28, 208)
    assert page.get_by_test_id("diff-direction").inner_text() == "v6.7 against kvm-amd v6.16: 208 weaker, 28 stronger"
    assert page.get_by_test_id("diff-differ").inner_text() == str(c["differ"]) == "270"
    # the second side's own answer: the NPT entry, its path, the CPU's CR0
    assert cmp_cells(page, "entry") == ("WB! 0x70", "NPT: host PAT entry 0 (WB)")
    assert page.locator('#cmp-table tbody tr[data-row="path"] td[data-side="b"] li').evaluate_all(
        "ls => ls.map(l => l.dataset.step)") == ["npt", "host", "cr0", "gpat", "combine"]
    assert cmp_cells(page, "cr0") == ("-", "CPU CD=0 NW=0")
    assert "KVM on AMD SVM (NPT)" in page.locator('#cmp-table thead th[data-side="b"]').inner_text()
    # the groups table: the answer's dimensions (no Xen ones here), its entries and relation
    rows = page.locator("#groups-table tbody tr")
    assert rows.count() == len(d["groups"])
    from app.pages import DIM_SHORT

    g0 = d["groups"][0]
    want = " ".join(f"{DIM_SHORT[k]}={'1' if v is True else '0' if v is False else v}"
                    for k, v in g0["pattern"].items() if v != "*")
    assert rows.first.locator("td.pattern").inner_text() == want
    assert "xen_iommu" not in g0["pattern"] and "iommu=" not in page.locator("#groups-table tbody").inner_text()
    assert rows.first.locator("td.mono").inner_text() == f"{g0['entry_a']} \u2192 {g0['entry_b']}"
    assert page.locator("#groups-entry").inner_text() == "entry A \u2192 B"
    # each dimension's status per side, from the answer
    got = page.locator("#dims-table tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.dim, r.querySelector('[data-side=a] [data-status]').dataset.status,"
        " r.querySelector('[data-side=b] [data-status]').dataset.status])")
    assert got == [[x["name"], x["a"], x["b"]] for x in d["dimensions"]]
    assert page.locator("#dims-b").inner_text() == "kvm-amd v6.16"
    assert "entries not compared" in page.locator("#diff-summary").inner_text()
    assert page.locator("#cmp-not-compared li").all_inner_texts() == d["not_compared"]
    assert page.locator("#cmp-mapping li").all_text_contents() == d["mapping"]
    # the link carries the second side's vendor; a fresh page reads it back
    page.wait_for_function("document.querySelector('#copy-link').dataset.valid === '1'")
    assert "vs=v6.16" in page.url and "vs_vendor=amd" in page.url
    assert not w.page_errors, w.page_errors


def test_compare_choice_round_trips_through_link_and_history(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2&gpa=0x1000")
    page = w.page
    settle(w)
    w.after(page.locator("#vs").select_option, "amd:v6.16")
    page.wait_for_function("location.search.includes('vs_vendor=amd')")
    amd_link = page.url
    settle(w)
    w.after(page.locator("#vs").select_option, "xen-4.19")
    page.wait_for_function("location.search.includes('vs=xen-4.19')")
    assert "vs_vendor" not in page.url
    assert page.get_by_test_id("diff-direction").inner_text().startswith("v6.7 against xen-4.19: ")
    w.after(page.evaluate, "history.back()")
    assert page.locator("#vs").input_value() == "amd:v6.16" and page.url == amd_link
    assert page.get_by_test_id("diff-direction").inner_text() == "v6.7 against kvm-amd v6.16: 208 weaker, 28 stronger"
    w.after(page.evaluate, "history.back()")
    assert page.locator("#vs").input_value() == "v4.2"
    assert page.get_by_test_id("diff-direction").inner_text() == "v6.7 against v4.2: 0 weaker, 40 stronger"
    w2 = open_page()
    w2.goto(amd_link)
    assert w2.page.locator("#vs").input_value() == "amd:v6.16"
    assert w2.page.url == amd_link
    assert w2.page.get_by_test_id("diff-direction").inner_text() == \
        "v6.7 against kvm-amd v6.16: 208 weaker, 28 stronger"
    assert not w.page_errors and not w2.page_errors


def test_compare_with_xen_shows_its_emt_path_and_what_it_fixes(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&vs=xen&ncdma=1&gpa=0x1000")
    page = w.page
    d = api_diff(live_server, a="v6.16", b="xen")
    c = d["counts"]
    want = f"v6.16 against xen: {c['stronger']} weaker, {c['weaker']} stronger"
    assert page.get_by_test_id("diff-direction").inner_text() == want == "v6.16 against xen: 1780 weaker, 208 stronger"
    assert "Xen HVM (EPT)" in page.locator('#cmp-table thead th[data-side="b"]').inner_text()
    assert page.locator('#cmp-table tbody tr[data-row="path"] td[data-side="b"] li').evaluate_all(
        "ls => ls.map(l => [l.dataset.step, l.className])") == [["mmio_ro", "notheld"], ["no_passthrough", "taken"]]
    assert cmp_cells(page, "cr0")[1] == "CPU CD=0, vmx_handle_cd off (normal)"
    # the seed's nc-DMA is KVM's: Xen is asked with the value it fixes, and says so
    applied = page.get_by_test_id("cmp-applied").inner_text()
    assert applied.startswith("vm.noncoherent_dma=false: fixed (KVM settings given with a Xen kernel")
    assert page.locator("#cmp-refused").is_hidden()
    assert cmp_cells(page, "entry")[1] == "WB! 0x70"
    only = page.get_by_test_id("cmp-only").inner_text()
    assert "only v6.16\nnoncoherent_dma, quirk_cd_nw_cleared, quirk_ignore_guest_pat" in only
    assert "only xen\nxen_iommu, xen_io" in only
    # a group fixing Xen's domain facts: the page's KVM controls cannot hold them: said
    g = next(i for i, x in enumerate(d["groups"]) if x["pattern"]["xen_iommu"] is False)
    w.after(page.locator("#groups-table tbody tr").nth(g).click)
    note = page.get_by_test_id("cmp-unapplied")
    assert note.is_visible()
    assert "xen_iommu=0: v6.16 lacks it" in note.inner_text()
    w.after(page.get_by_label("CR0.CD", exact=True).click)  # any edit: the note goes
    assert note.is_hidden()
    assert not w.page_errors, w.page_errors


def test_swap_with_another_system(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&vs=xen&gpa=0x1000")
    page = w.page
    w.after(page.locator("#swap-eras").click)
    page.wait_for_function("document.body.dataset.system === 'xen'")
    assert page.locator("#kernel").input_value() == "xen" and page.locator("#vs").input_value() == "v6.16"
    assert page.get_by_test_id("diff-direction").inner_text() == "xen against v6.16: 208 weaker, 1780 stronger"
    assert page.locator('#cmp-table thead th[data-side="a"]').inner_text().startswith("xen-4.21")
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v6.16&vs_vendor=amd&gpa=0x1000")
    w.after(page.locator("#swap-eras").click)
    page.wait_for_function("document.body.dataset.system === 'kvm-amd'")
    assert page.locator("#vendor").input_value() == "amd" and page.locator("#vs").input_value() == "v6.7"
    assert page.get_by_test_id("diff-direction").inner_text() == "kvm-amd v6.16 against v6.7: 28 weaker, 208 stronger"
    assert not w.page_errors, w.page_errors


def test_amd_side_before_4_14_is_refused_with_the_rule(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v6.16&vs_vendor=amd&gpa=0x1000")
    page = w.page
    w.after(page.locator("#vs").select_option, "amd:v4.2")
    msg = err(page, "compare")
    assert msg == ("compare: AMD v4.2 (as 4.2) ignores guest PAT writes (no g_pat update before 4.14) (the diff's "
                   "PAT dimension is the guest's PAT type: AMD from 4.14 (15038e147247))")
    assert page.locator("#diff-summary").inner_text() == ""
    assert page.locator("#groups-table tbody tr").count() == 0 and page.locator("#cmp-sys").is_hidden()
    # AMD v4.2 still answers this one address (resolve takes it): beside v6.7
    assert cmp_cells(page, "entry") == ("WB! 0x70", "NPT: host PAT entry 0 (WB)")
    w.after(page.locator("#vs").select_option, "v4.2")
    assert err(page, "compare") == ""
    assert page.get_by_test_id("diff-direction").inner_text() == "v6.7 against v4.2: 0 weaker, 40 stronger"
    assert not w.page_errors, w.page_errors


COMPARE_STATES = {"cmp-amd": "/?v=1&kernel=v6.7&vs=v6.16&vs_vendor=amd&gpa=0x1000",
                  "cmp-xen": "/?v=1&vs=xen&ncdma=1&gpa=0x1000", "cmp-tdx": "/?v=1&vs=v6.16&vs_type=tdx&gpa=0x1000",
                  "xen-pinned": "/?v=1&kernel=xen&gpa=0x1000&xen_iommu=1&xen_pinned=0x1-0x2:WT,0x10-0x1f:WB",
                  "td-private": "/?v=1&pat_quirk=0&vmtype=tdx&deftype=0x806&gpa=0x1000&private=1"
                                "&private_ranges=0x0-0x2000&vs=v6.16",
                  "xen-frames": "/?v=1&kernel=xen&gpa=0x100000&xen_frames=0x100000-0x200000:grant_map_rw:special"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1440, 390])
@pytest.mark.parametrize("state", list(COMPARE_STATES))
def test_compare_no_serious_axe_violation(open_page, live_server, state, scheme, width):
    w = open_page(color_scheme=scheme, viewport=(width, 900))
    w.goto(live_server + COMPARE_STATES[state])
    w.page.locator("#cmp-mapping-details").evaluate("d => { d.open = true; }")
    assert _serious(w.page) == []


@pytest.mark.parametrize("width", [1440, 1024, 390])
def test_compare_screenshots_fit_the_width(open_page, live_server, output_dir: Path, width):
    for name, query in COMPARE_STATES.items():
        w = open_page(viewport=(width, 900))
        w.goto(live_server + query)
        assert w.page.evaluate("document.documentElement.scrollWidth") == width, name
        w.page.screenshot(path=str(output_dir / f"systems-{name}-{width}.png"), full_page=True)
        assert not w.page_errors


def test_compare_with_a_tdx_vm_and_its_fixed_values(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1&kernel=v6.7&vs=v4.2&gpa=0x1000")
    page = w.page
    w.after(page.locator("#kernel").select_option, "v6.16")
    w.after(page.locator("#vs").select_option, "tdx:v6.16")
    page.wait_for_function("location.search.includes('vs_type=tdx')")
    d = api_diff(live_server, a="v6.16", b="v6.16", b_type="tdx")
    c = d["counts"]
    assert page.get_by_test_id("diff-direction").inner_text() == \
        f"v6.16 against kvm-tdx v6.16: {c['stronger']} weaker, {c['weaker']} stronger" == \
        "v6.16 against kvm-tdx v6.16: 80 weaker, 0 stronger"
    assert "KVM TDX VM (TD)" in page.locator('#cmp-table thead th[data-side="b"]').inner_text()
    assert cmp_cells(page, "entry") == ("WB! 0x70", "WB")
    # the TD is asked with what the TDX module and tdx_vm_init() fix, each with its reason
    applied = page.get_by_test_id("cmp-applied").inner_text()
    assert applied.startswith("vm.quirk_ignore_guest_pat=false: fixed (KVM_X86_QUIRK_IGNORE_GUEST_PAT is always "
                              "disabled for a TDX VM")
    assert "vcpu.mtrr.def_type=0x806: fixed (" in applied
    assert page.locator('#dims-table tr[data-dim="cr0_cd"] td[data-side="b"]').inner_text() == "fixed: 0"
    link = page.url
    w2 = open_page()
    w2.goto(link)
    assert w2.page.locator("#vs").input_value() == "tdx:v6.16" and w2.page.url == link
    assert w2.page.get_by_test_id("diff-direction").inner_text() == "v6.16 against kvm-tdx v6.16: 80 weaker, 0 stronger"
    assert not w.page_errors and not w2.page_errors


PINNED = "/?v=1&kernel=xen&gpa=0x1000&xen_iommu=1&xen_pinned=0x1-0x2:WT"


def pin(page, n: int, field: str):
    return page.locator("#xen-pinned-rows .pin-row").nth(n).locator(f".pin-{field}")


def edit(w, loc, value: str) -> None:
    """Type into a text field and commit it (change), then wait for the redraw."""
    loc.fill(value)
    w.after(loc.dispatch_event, "change")


def test_xen_pinned_editor_round_trip_and_refusals(open_page, live_server):
    w = open_page()
    w.goto(live_server + PINNED)
    page = w.page
    assert page.locator("#xen-pinned-rows .pin-row").count() == 1
    assert (pin(page, 0, "start").input_value(), pin(page, 0, "end").input_value(),
            pin(page, 0, "type").input_value()) == ("0x1", "0x2", "WT")
    # gfn 1 is pinned WT: hvm_get_mem_pinned_cacheattr() decides, IPAT set
    assert page.locator("#path li.taken").get_attribute("data-step") == "pinned"
    assert page.locator("#ept-type").get_attribute("data-notation") == "WT!"
    types = pin(page, 0, "type").locator("option").evaluate_all("os => os.map(o => o.value)")
    assert types == ["UC", "WC", "WT", "WP", "WB", "UC-"]
    # an empty range: the 422's field and rule at the row, the panels stale
    edit(w, pin(page, 0, "end"), "0x0")
    assert err(page, "xen.pinned[0]") == \
        "xen.pinned[0]: gfn range 0x1..0x0 is empty or negative (gfn_end < gfn_start is -EINVAL)"
    assert page.locator("#p-result .stale-tag").is_visible()
    # not a number: named at the field, not read as 0
    edit(w, pin(page, 0, "end"), "0xzz")
    assert err(page, "xen.pinned[0]") == "xen.pinned[0].end: Input should be a valid integer"
    edit(w, pin(page, 0, "end"), "0x3")
    assert err(page, "xen.pinned[0]") == ""
    page.wait_for_function("location.search.includes('xen_pinned=0x1-0x3:WT')")
    # a second range over the first: -EBUSY at the new row
    w.after(page.get_by_test_id("xen-pinned-add").click)
    assert page.locator("#xen-pinned-rows .pin-row").count() == 2
    assert pin(page, 1, "start").input_value() == "0x1"  # the gfn under study (the answer's)
    assert err(page, "xen.pinned[1]") == ("xen.pinned[1]: overlaps range 0 (0x1..0x3) (overlapping pinned ranges "
                                          "are refused (-EBUSY))")
    edit(w, pin(page, 1, "start"), "0x100")
    edit(w, pin(page, 1, "end"), "0x1ff")
    w.after(pin(page, 1, "type").select_option, "UC")
    page.wait_for_function("location.search.includes('xen_pinned=0x1-0x3:WT,0x100-0x1ff:UC')")
    link = page.url
    # UC pins need an IOMMU or I/O resources in 4.21: the rule at the row's type
    w.after(page.locator("#xen-iommu").uncheck)
    assert err(page, "xen.pinned[1]") == ("xen.pinned[1].type: UC pinned for a domain with neither an IOMMU nor I/O "
                                          "resources (xen-4.21: UC, UC- and WC pins need either (-EPERM, d63b2c60f7))")
    w2 = open_page()
    w2.goto(link)
    assert w2.page.url == link
    assert [pin(w2.page, n, "start").input_value() for n in (0, 1)] == ["0x1", "0x100"]
    assert pin(w2.page, 1, "type").input_value() == "UC"
    w2.after(w2.page.locator("#xen-pinned-rows .pin-rm").first.click)
    w2.page.wait_for_function("location.search.includes('xen_pinned=0x100-0x1ff:UC')")
    assert w2.page.locator("#xen-pinned-rows .pin-row .idx").all_inner_texts() == ["#0"]
    assert not w.page_errors and not w2.page_errors


def test_amd_host_pat_and_mtrr_inputs(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1&gpa=0x1000&vs=v6.7")
    page = w.page
    assert page.locator("#fs-amd").is_hidden()  # KVM on Intel has no host side to give
    w.after(page.locator("#vendor").select_option, "amd")
    page.wait_for_function("!document.querySelector('#fs-amd').hidden")
    assert page.locator("#amd-host_pat").get_attribute("placeholder") == "0x0407050600070106"  # Linux's PAT
    assert page.locator("#amd-host_mtrr option").evaluate_all("os => os.map(o => o.value)") == [
        "", "UC", "WC", "WT", "WP", "WB"]
    assert pat_cells(page, "effective") == ["WB", "WT", "UC", "UC", "WB", "WT", "UC", "UC"]
    # a UC host MTRR: every entry UC, the host side says why; the link and the diff carry it
    w.after(page.locator("#amd-host_mtrr").select_option, "UC")
    assert pat_cells(page, "effective") == ["UC"] * 8
    assert "host PAT entry 0 WB x host MTRR UC = UC" in page.locator("#lookups").inner_text()
    page.wait_for_function("location.search.includes('amd_host_mtrr=UC')")
    d = api_diff(live_server, a="v6.16", a_vendor="amd", b="v6.7", amd={"host_mtrr": "UC"})
    c = d["counts"]
    assert page.get_by_test_id("diff-direction").inner_text() == \
        f"kvm-amd v6.16 against v6.7: {c['stronger']} weaker, {c['weaker']} stronger"
    # a reserved PAT type: the 422's field and rule at the input
    edit(w, page.locator("#amd-host_pat"), "0x8")
    assert err(page, "amd.host_pat").startswith("amd.host_pat: PAT entry 0 has reserved type 8 (")
    assert page.locator("#p-result .stale-tag").is_visible()
    edit(w, page.locator("#amd-host_pat"), "0x1")  # entry 0 WC
    assert err(page, "amd.host_pat") == ""
    page.wait_for_function("location.search.includes('amd_host_pat=0x1')")
    link = page.url
    w2 = open_page()
    w2.goto(link)
    assert w2.page.locator("#amd-host_pat").input_value() == "0x0000000000000001"
    assert w2.page.locator("#amd-host_mtrr").input_value() == "UC"
    assert w2.page.url == link
    # back to Intel: the host side goes (and leaves the link)
    w2.after(w2.page.locator("#vendor").select_option, "intel")
    w2.page.wait_for_function("document.querySelector('#fs-amd').hidden && !location.search.includes('amd_')")
    assert not w.page_errors and not w2.page_errors


TD_PRIVATE = "/?v=1&pat_quirk=0&vmtype=tdx&deftype=0x806&gpa=0x1000&private=1&vs=v6.16"


def test_a_td_beside_an_intel_era_sends_no_private_gpa_to_the_intel_side(open_page, live_server):
    """A TD's private GPA is the TD's alone: the Intel side (its POST /page/system view says it
    takes no `private`) is asked with the shared GPA, so it answers instead of refusing."""
    w = open_page()
    bodies: list[dict] = []
    w.page.on("request", lambda r: bodies.extend(
        p["body"] for p in json.loads(r.post_data or "{}").get("parts", []) if p["name"] == "resolve")
        if r.url.endswith("/page/batch") else None)
    w.goto(live_server + TD_PRIVATE)
    page = w.page
    assert system(page) == "kvm-tdx" and page.locator("#private").is_checked()
    assert page.locator("#cmp-refused").is_hidden()
    assert cmp_cells(page, "entry") == ("WB", "WB 0x30")  # the quirk off on both sides: no IPAT
    td = [b for b in bodies if b.get("vm", {}).get("type") == "tdx"]
    intel = [b for b in bodies if b.get("vm", {}).get("type") != "tdx"]
    assert td and intel
    assert all(b.get("private") is True for b in td) and all("private" not in b for b in intel)
    assert not w.page_errors, w.page_errors


def test_a_td_group_applies_what_the_td_does_not_read_and_says_what_it_fixes(open_page, live_server):
    """Opening a group of a TD against v6.16: nc-DMA (the TD has it, does not read it) is
    set in the controls (it was left as it was); IGNORE_GUEST_PAT on (the TD fixes it off)
    is left and said, with the reason; the legend explains `fixed` (the TD's cr0_cd)."""
    w = open_page()
    w.goto(live_server + "/?v=1&pat_quirk=0&vmtype=tdx&deftype=0x806&gpa=0x1000&vs=v6.16&ncdma=1")
    page = w.page
    d = api_diff(live_server, a="v6.16", a_type="tdx", b="v6.16")
    assert page.locator('#dims-table tr[data-dim="cr0_cd"] td[data-side="a"]').inner_text() == "fixed: 0"
    assert "fixed: the system allows one value, states with another are skipped." in \
        page.get_by_test_id("dims-legend").inner_text()
    g = next(i for i, x in enumerate(d["groups"])
             if x["pattern"]["noncoherent_dma"] is False and x["pattern"]["quirk_ignore_guest_pat"] is True)
    assert page.locator("#ncdma").is_checked()
    w.after(page.locator("#groups-table tbody tr").nth(g).click)
    assert not page.locator("#ncdma").is_checked()
    assert not page.locator("#pat_quirk").is_checked()
    note = page.get_by_test_id("cmp-unapplied").inner_text()
    assert "quirk_ignore_guest_pat=1: KVM TDX VM (TD) fixes vm.quirk_ignore_guest_pat=false (" in note
    assert "noncoherent_dma" not in note
    assert page.locator("#p-result .stale-tag").is_hidden() and err(page, "vm.quirk_ignore_guest_pat") == ""
    assert not w.page_errors, w.page_errors


def test_a_group_opened_keeps_the_maps_own_inputs(open_page, live_server):
    w = open_page()
    w.goto(live_server + TD_PRIVATE + "&private_ranges=0x0-0x2000")
    page = w.page
    w.after(page.locator("#groups-table tbody tr").first.click)
    rows = page.get_by_test_id("private-ranges").locator(".map-row")
    assert rows.count() == 1 and rows.locator(".mr-end").input_value() == "0x2000"
    page.wait_for_function("location.search.includes('private_ranges=0x0-0x2000')")
    assert run_facts(page, "0x0") == "private (Secure EPT)"
    assert not w.page_errors, w.page_errors


def test_a_compare_side_the_list_lacks_is_listed_as_dropped(open_page, live_server):
    w = open_page()
    w.goto(live_server + "/?v=1&gpa=0x1000&vs=v4.2&vs_type=tdx")
    page = w.page
    assert page.locator("#notice").is_visible()
    item = page.locator('#notice-list li[data-param="vs_type"]')
    assert item.inner_text().startswith("vs_type=tdx: no TDX VMs under 'v4.2' (KVM_X86_TDX_VM first in 6.16")
    assert page.locator("#vs").input_value() == "v4.2"  # the readable part of the choice is kept
    page.wait_for_function("location.search.includes('vs=v4.2') && !location.search.includes('vs_type')")
    assert not w.page_errors, w.page_errors


def map_bodies(w) -> list[dict]:
    return [p["body"] for r in w.posts for p in json.loads(r.post_data or "{}").get("parts", []) if p["name"] == "map"]


def watch_posts(w):
    w.posts = []
    w.page.on("request", lambda r: w.posts.append(r) if r.method == "POST" and r.url.endswith("/page/batch") else None)
    return w


def run_facts(page, start: str) -> str:
    return page.locator(f'#runs-table tbody tr[data-start="{start}"] [data-testid=run-facts]').text_content()


def test_a_td_private_range_reaches_the_map(open_page, live_server):
    """The TD's private GPA ranges (the map's private_ranges): a row from the run under study,
    sent with the map only (resolve and zap do not take them), the run drawn private; a bad
    range is the map's 422 at its row."""
    w = watch_posts(open_page())
    w.goto(live_server + TDX_FIXED + "&vs=v6.16")
    page = w.page
    box = page.get_by_test_id("private-ranges")
    assert box.is_visible()
    w.after(page.get_by_test_id("private-ranges-add").click)
    row = box.locator(".map-row").first
    assert (row.locator(".mr-start").input_value(), row.locator(".mr-end").input_value()) == ("0x0", "0xa0000")
    assert run_facts(page, "0x0") == "private (Secure EPT)"
    assert page.locator('#runs-table tbody tr[data-start="0xa0000"] [data-testid=run-facts]').count() == 0
    sent = map_bodies(w)[-1]
    assert sent["private_ranges"] == [{"start": "0x0", "end": "0xa0000"}] and sent["vm"]["type"] == "tdx"
    # the Intel side's map (side by side) is asked without them
    w.after(page.locator("#cmp-side-details summary").click)
    assert all("private_ranges" not in b for b in map_bodies(w) if b.get("vm", {}).get("type") != "tdx")
    assert page.locator("#p-compare .stale-tag").is_hidden()
    edit(w, row.locator(".mr-end"), "0xa0001")
    assert err(page, "private_ranges[0]") == (
        "private_ranges[0]: 0x0-0xa0001 is not 4K aligned (KVM_SET_MEMORY_ATTRIBUTES takes page-aligned address "
        "and size (kvm_vm_ioctl_set_mem_attributes: -EINVAL))")
    edit(w, row.locator(".mr-end"), "0x2000")
    assert err(page, "private_ranges[0]") == ""
    assert run_facts(page, "0x0") == "private (Secure EPT)"
    assert page.locator('#runs-table tbody tr[data-start="0x2000"]').count() == 1
    # the link keeps the range (app.permalink private_ranges), checked as the map checks it
    page.wait_for_function("location.search.includes('private_ranges=0x0-0x2000')")
    link = page.url
    w2 = open_page()
    w2.goto(link)
    row2 = w2.page.get_by_test_id("private-ranges").locator(".map-row")
    assert row2.count() == 1 and row2.locator(".mr-end").input_value() == "0x2000"
    assert run_facts(w2.page, "0x0") == "private (Secure EPT)" and w2.page.url == link
    w.after(row.locator(".mr-rm").click)
    assert box.locator(".map-row").count() == 0 and "private_ranges" not in map_bodies(w)[-1]
    assert not w.page_errors and not w2.page_errors


def test_a_xen_frame_range_reaches_the_map(open_page, live_server):
    w = watch_posts(open_page())
    w.goto(live_server + "/?v=1&kernel=xen&gpa=0x100000")
    page = w.page
    assert page.get_by_test_id("private-ranges").is_hidden()
    box = page.get_by_test_id("xen-frames")
    assert box.is_visible()
    assert run_facts(page, "0x100000") == "p2m_ram_rw"
    w.after(page.get_by_test_id("xen-frames-add").click)
    row = box.locator(".map-row").first
    start, end = row.locator(".mr-start").input_value(), row.locator(".mr-end").input_value()
    assert start == "0x100000"
    assert row.locator(".mr-p2m option").evaluate_all("os => os.map(o => o.value)") == [
        "", "ram", "mmio_direct", "grant_map_rw", "grant_map_ro", "map_foreign"]
    w.after(row.locator(".mr-p2m").select_option, "grant_map_rw")
    w.after(row.locator(".mr-special").check)
    assert run_facts(page, "0x100000") == "p2m_grant_map_rw, special page"
    assert map_bodies(w)[-1]["xen"]["frames"] == [{"start": start, "end": end, "p2m_type": "grant_map_rw",
                                                   "special": True}]
    assert all("frames" not in p["body"].get("xen", {}) for r in w.posts
               for p in json.loads(r.post_data).get("parts", []) if p["name"] in ("resolve",))
    page.wait_for_function(f"location.search.includes('xen_frames={start}-{end}:grant_map_rw:special')")
    link = page.url
    w2 = open_page()
    w2.goto(link)
    row2 = w2.page.get_by_test_id("xen-frames").locator(".map-row")
    assert row2.count() == 1 and row2.locator(".mr-p2m").input_value() == "grant_map_rw"
    assert row2.locator(".mr-special").is_checked() and not row2.locator(".mr-mmio_ro").is_checked()
    assert run_facts(w2.page, "0x100000") == "p2m_grant_map_rw, special page" and w2.page.url == link
    # an unaligned start: the map's 422 at the row, and no link while it stands
    edit(w, row.locator(".mr-start"), "0x100001")
    assert err(page, "xen.frames[0]") == (f"xen.frames[0]: 0x100001-{end} is not 4K aligned (p2m entries map 4K "
                                          "frames)")
    assert page.locator("#copy-link").get_attribute("data-valid") == "0"
    assert not w.page_errors and not w2.page_errors
