"""The API's answers, byte for byte, against tests/data/api_snapshot.json (issue 11: the
response models are built from the core's dataclasses; nothing a client sees may change).
See tests/api_snapshot.py for the requests and how to rewrite the digests."""

from __future__ import annotations

import json

from tests.api_snapshot import GOLDEN, digests, snapshot


def test_responses_are_byte_identical_to_the_snapshot():
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = digests(snapshot())
    assert sorted(got) == sorted(want), "the snapshot's requests changed: rewrite the digests"
    changed = [k for k in want if got[k] != want[k]]
    assert changed == [], f"{len(changed)} of {len(want)} responses changed: {changed[:20]}"
