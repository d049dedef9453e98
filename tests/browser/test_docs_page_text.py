"""docs/walkthrough.md quotes the page's Compare sentence for the seed case word for word;
this keeps the quote true (issue 15: the front door tells the truth)."""

from __future__ import annotations

import re
from pathlib import Path

WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "walkthrough.md"


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_walkthrough_quotes_the_seed_pages_diff_sentence(watched, live_server):
    watched.goto(live_server + "/")
    sentence = _squash(watched.page.locator("#diff-summary").inner_text())
    assert sentence.startswith("Over the whole state space: 60 of 960 states differ")
    assert f'"{sentence}"' in _squash(WALKTHROUGH.read_text(encoding="utf-8")), sentence
