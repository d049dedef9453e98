"""Accessibility in Chromium with axe-core (issue 13, "Accessible").

axe-core comes from the PyPI package axe-playwright-python (its bundled axe.min.js, a
test dependency in the lock): read from disk and evaluated in the page by Playwright, never
fetched by the page. Every state below, in light and dark mode and at a desktop and a phone
width, must have no serious or critical violation. A second test checks the colour-blind
cue: every memory type on the map has its own texture, so WB, UC and UC- differ without
colour.
"""

from __future__ import annotations

from pathlib import Path

import pytest

axe_pkg = pytest.importorskip("axe_playwright_python")
AXE_JS = (Path(axe_pkg.__file__).parent / "axe.min.js").read_text()

STATES = {
    "seed": "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&mtrr=ovmf&gpa=0xfd000000",
    "zap": "/?v=1&kernel=v6.7&vs=v4.2&ncdma=1&mtrr=ovmf&view=zap&event=cr0_cd&event_value=0",
    "diff": "/?v=1&kernel=v6.7&vs=v4.2&view=diff",
    "mtrr-off": "/?v=1&kernel=v6.16&deftype=0x0",
}


def _serious(page) -> list[tuple[str, int, list]]:
    page.evaluate(AXE_JS)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], len(v["nodes"]), [n["target"] for n in v["nodes"][:5]])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1440, 390])
@pytest.mark.parametrize("state", list(STATES))
def test_no_serious_axe_violation(open_page, live_server, state, scheme, width):
    w = open_page(color_scheme=scheme, viewport=(width, 900))
    w.goto(live_server + STATES[state])
    assert _serious(w.page) == []


def test_map_types_have_distinct_textures(open_page, live_server):
    """The legend's swatches: one texture per memory type (WB plain), all different."""
    w = open_page()
    w.goto(live_server + STATES["seed"])
    textures = w.page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#legend .sw')]
        .filter((s) => /\\bt-/.test(s.className))
        .map((s) => [s.className, getComputedStyle(s).backgroundImage]))""")
    assert len(textures) == 6, textures
    assert len(set(textures.values())) == 6, textures
    assert textures[next(k for k in textures if k.endswith("t-WB"))] == "none"
