import pytest

from app.kvm.versions import resolve_kernel
from app.x86.memtype import MemTypeError


@pytest.mark.parametrize("v,era", [
    ("4.2", "v4.2"), ("5.19", "v4.2"), ("6.0", "v4.2"), ("6.6", "v4.2"), ("6.7", "v6.7"),
    ("6.10", "v6.7"), ("6.11-rc1", "v6.11-rc1"), ("6.11-rc7", "v6.11-rc1"), ("6.11", "v6.11"),
    ("6.15", "v6.11"), ("6.16", "v6.16"), ("6.19", "v6.16"), ("6.12.77", "v6.11"), ("6.12.78", "v6.16"),
    ("6.8.0-45-generic", "v6.7"), ("4.19.0-27-amd64", "v4.2"), ("5.14.0-427.el9.x86_64", "v4.2"),
    ("5.15.160", "v4.2"), ("6.11-rc3", "v6.11-rc1"),
])
def test_era(v, era):
    assert resolve_kernel(v).era == era


def test_huge_page_boundary():
    assert resolve_kernel("5.19").mtrr_huge_page_check_every_fault is True
    assert resolve_kernel("6.0").mtrr_huge_page_check_every_fault is False
    assert resolve_kernel("v4.2").mtrr_huge_page_check_every_fault is None


def test_backport_why_and_notes():
    k = resolve_kernel("6.12.78")
    assert "c9c1e20b4c7d" in k.why and k.as_dict()["asked"] == "6.12.78"
    assert any("cannot be turned off" in n for n in resolve_kernel("6.12.77").notes)
    assert any("suffix" in n for n in resolve_kernel("6.8.0-45-generic").notes)


def test_era_ids_unchanged():
    for e in ("v4.2", "series-v3", "v6.7", "v6.11-rc1", "v6.11", "v6.16"):
        assert resolve_kernel(e).era == e


@pytest.mark.parametrize("v", ["4.1", "3.10.0", "6.20", "7.0", "abc", "6", "6.11-rc0", "6.11.2-rc1", ""])
def test_refused(v):
    with pytest.raises(MemTypeError) as ei:
        resolve_kernel(v, "a")
    assert ei.value.field == "a"


def test_get_era_accepts_versions_for_cli_and_permalink():
    from app.kvm.eras import get_era
    assert get_era("6.12.78").id == "v6.16" and get_era("v6.7").id == "v6.7"
    with pytest.raises(MemTypeError) as ei:
        get_era("nope", "vs")
    assert ei.value.field == "vs"
