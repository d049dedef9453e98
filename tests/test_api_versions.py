"""Kernel version strings accepted where the API takes an era id (issue 10, part 1).

The era a version resolves to comes from app/kvm/versions.py; these tests pin that the web
layer passes versions through to it and turns a refused version into a 422 naming the field.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import app

client = TestClient(app)


@pytest.mark.parametrize(("asked", "era"), [
    ("6.12.78", "v6.16"),          # stable backport of c9c1e20b4c7d
    ("6.12.77", "v6.11"),
    ("6.8.0-45-generic", "v6.7"),  # distribution suffix: upstream base version
    ("6.11-rc3", "v6.11-rc1"),
    ("5.15.160", "v4.2"),
    ("v6.7", "v6.7"),              # era ids unchanged
])
def test_resolve_takes_a_version(asked, era):
    r = client.post("/api/v1/resolve", json={"kernel": asked, "gpa": "0x1000"})
    assert r.status_code == 200, r.text
    assert r.json()["kernel"] == era


@pytest.mark.parametrize("asked", ["4.1", "9.1", "6.x", "6.11-rc0"])
def test_refused_version_is_a_422_naming_the_field(asked):
    r = client.post("/api/v1/resolve", json={"kernel": asked, "gpa": "0x1000"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "kernel"]


def test_diff_sides_take_versions():
    by_version = client.post("/api/v1/diff", json={"a": "6.6", "b": "6.7.1"}).json()
    by_era = client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7"}).json()
    assert by_version["counts"] == by_era["counts"]
    assert (by_version["a"]["id"], by_version["b"]["id"]) == ("v4.2", "v6.7")


def test_diff_names_the_kernels_asked():
    r = client.post("/api/v1/diff", json={"a": "6.6", "b": "6.12.78", "limit": 0})
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["a"]["id"], j["b"]["id"]) == ("v4.2", "v6.16")
    assert j["kernel_a"]["version"] == "6.6" and j["kernel_b"]["asked"] == "6.12.78"
    assert "c9c1e20b4c7d" in j["kernel_b"]["why"]
    r = client.post("/api/v1/diff", json={"a": "v4.2", "b": "v6.7", "limit": 0})
    assert r.json()["kernel_a"]["version"] is None
    r = client.post("/api/v1/diff?format=text", json={"a": "6.6", "b": "6.12.78"})
    assert "Kernel 6.12.78: 6.12.78 carries the stable backport" in r.text
