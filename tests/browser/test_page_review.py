"""Issue 13, the page a reviewer reaches for: swap, words, first screen, layout, a11y.

Real headless Chromium (Debian's, via Playwright) against the live uvicorn of conftest.py.
Screenshots of the three review widths go to /tmp/shots/ (and test-output/).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

PAIR = "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&cd=1&mtrr=ovmf&gpa=0xfd000000"


def test_swap_button_swaps_the_eras_and_the_link(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    direction = page.get_by_test_id("diff-direction")
    assert direction.inner_text().strip() == "v6.7 against v4.2: 0 weaker, 40 stronger"
    w.after(page.get_by_test_id("swap-eras").click)
    assert page.locator("#kernel").input_value() == "v4.2"
    assert page.locator("#vs").input_value() == "v6.7"
    assert direction.inner_text().strip() == "v4.2 against v6.7: 40 weaker, 0 stronger"
    q = urlsplit(page.url).query
    assert "kernel=v4.2" in q and "vs=v6.7" in q
    assert page.locator("#ept-mask").inner_text() == "0x70"  # v4.2: WB|IPAT
    # the panel's button and the keyboard swap back
    w.after(page.locator("#cmp-swap").click)
    assert page.locator("#kernel").input_value() == "v6.7" and page.locator("#vs").input_value() == "v4.2"
    page.locator("body").click(position={"x": 5, "y": 5})
    w.after(page.keyboard.press, "s")
    assert page.locator("#kernel").input_value() == "v4.2"
    # with no compare era there is nothing to swap
    w.after(page.locator("#vs").select_option, "")
    assert page.get_by_test_id("swap-eras").is_disabled()


def test_expectation_and_era_diff_use_different_words(watched, live_server):
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    # effective vs the guest's expectation: CD=1 means the guest expects UC; v6.7 gives WB x PAT
    rel = page.locator('#eff-table tbody tr[data-pat-index="0"] .badge')
    assert rel.get_attribute("data-relation") == "weaker"
    assert rel.inner_text().strip() == "looser than expected"
    same = page.locator('#eff-table tbody tr[data-pat-index="3"] .badge')  # PA3 = UC in the power-on PAT
    assert same.inner_text().strip() == "as expected"
    eff_words = page.locator("#eff-table").inner_text() + page.locator("#cmp-table").inner_text()
    assert "weaker" not in eff_words and "stronger" not in eff_words
    # era against era keeps weaker/stronger, read as the summary reads: A against B
    assert page.locator("#groups-rel").inner_text() == "v6.7 against v4.2"
    classes = page.eval_on_selector_all("#groups-table tbody .badge",
                                        "bs => bs.map(b => [b.dataset.classification, b.textContent])")
    assert classes, "no diff groups"
    flip = {"weaker": "stronger", "stronger": "weaker"}
    for api, shown in classes:
        assert shown == flip.get(api, api)
    assert {s for _, s in classes} <= {"weaker", "stronger", "same", "incomparable"}
    assert "stronger" in {s for _, s in classes}  # v6.7 against v4.2: 40 stronger, 0 weaker


def test_first_screen_is_the_review_seed_case(watched, live_server):
    """Bare `/` opens on the review's seed case and says so; abbreviations are defined inline."""
    w = watched
    w.goto(live_server + "/")
    page = w.page
    assert page.locator("#kernel").input_value() == "v6.7"
    assert page.locator("#vs").input_value() == "v4.2"
    assert page.get_by_label("non-coherent DMA").is_checked()
    assert page.get_by_label("quirk CD_NW_CLEARED").is_checked()
    assert page.get_by_label("CR0.CD", exact=True).is_checked()
    assert page.locator("#gpa").input_value() == "0xfd000000"
    q = urlsplit(page.url).query
    assert "mtrr=ovmf&" in q and "kernel=v6.7" in q and "vs=v4.2" in q and "cd=1" in q
    assert page.locator("#ept-mask").inner_text() == "0x30"  # v6.7: WB without IPAT
    active = page.get_by_test_id("preset-active")
    assert active.inner_text() == "review-seed"
    assert "Three questions" in page.locator("#preset-about").inner_text()
    assert "seed case" in page.locator("#preset-desc").inner_text()
    assert page.locator("#tour li").count() == 3
    # the zap of the third question is drawn: CD 1 -> 0 leaves entries stale
    assert page.locator("#zap-stale li").count() >= 1
    titles = dict(page.eval_on_selector_all("abbr[title]", "as => as.map(a => [a.textContent, a.title])"))
    for short in ("nc-DMA", "IPAT", "FE", "E", "UC-", "WP", "EPT", "MTRR", "PAT", "CD"):
        assert titles.get(short), (short, sorted(titles))
    assert "non-coherent DMA" in titles["nc-DMA"] and "bit 6" in titles["IPAT"]
    # an edit leaves the preset, and the page says from which one
    w.after(page.get_by_label("CR0.CD", exact=True).uncheck)
    assert active.inner_text() == "custom (edited from review-seed)"
    # choosing a preset names it
    w.after(page.locator("#preset").select_option, "ovmf")
    assert active.inner_text() == "ovmf"
    assert not w.page_errors, w.page_errors


def test_a_link_still_means_its_own_defaults(watched, live_server):
    w = watched
    w.goto(live_server + "/?v=1")
    page = w.page
    assert page.locator("#kernel").input_value() == "v6.16"
    assert page.locator("#vs").input_value() == ""
    assert page.get_by_test_id("preset-active").inner_text() == "custom"


def test_a_typed_kernel_version_answers_for_its_era(watched, live_server):
    """Issue 10: the Era list takes a typed release; the server names its era (kernel_info)
    and the list follows; choosing an era drops the typed version; links keep it."""
    w = watched
    w.goto(live_server + PAIR)
    page = w.page
    box = page.locator("#kernel-version")

    def typed(v: str) -> None:
        box.fill(v)
        box.dispatch_event("change")

    w.after(typed, "6.8.0-45-generic")  # Ubuntu's 6.8: upstream 6.8, era v6.7 (6.7-6.10)
    assert page.locator("#kernel").input_value() == "v6.7"
    assert page.locator("#res-era").inner_text() == "6.8.0-45-generic (v6.7)"
    why = page.locator("#res-kernel-why")
    assert why.is_visible() and why.inner_text().startswith("Kernel 6.8.0-45-generic:")
    assert page.locator("#ept-mask").inner_text() == "0x30"  # the seed on v6.7: WB without IPAT
    page.wait_for_function("location.search.includes('kernel=6.8.0-45-generic')")
    w.after(typed, "6.12.78")  # the IGNORE_GUEST_PAT backport: v6.16's behaviour
    assert page.locator("#kernel").input_value() == "v6.16"
    assert page.locator("#res-era").inner_text() == "6.12.78 (v6.16)"
    w.after(page.locator("#kernel").select_option, "v4.2")
    assert box.input_value() == "" and not why.is_visible()
    assert page.locator("#res-era").inner_text() == "v4.2"
    page.wait_for_function("location.search.includes('kernel=v4.2')")
    # a link with a version opens with it in the box and its era in the list
    w.goto(live_server + "/?v=1&kernel=6.12.78")
    assert box.input_value() == "6.12.78" and page.locator("#kernel").input_value() == "v6.16"
    # a version no kernel has is refused where the Era is, naming the field
    typed("6.99.1x")
    page.wait_for_function("document.querySelector('[data-err=\"kernel\"]').textContent.includes('kernel')")
