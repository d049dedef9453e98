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
    classes = page.eval_on_selector_all("#groups-table tbody .badge", "bs => bs.map(b => [b.dataset.classification, b.textContent])")
    assert classes, "no diff groups"
    flip = {"weaker": "stronger", "stronger": "weaker"}
    for api, shown in classes:
        assert shown == flip.get(api, api)
    assert {s for _, s in classes} <= {"weaker", "stronger", "same", "incomparable"}
    assert "stronger" in {s for _, s in classes}  # v6.7 against v4.2: 40 stronger, 0 weaker
