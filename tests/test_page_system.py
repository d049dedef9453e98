"""POST /page/system (app/pages.py system_view): which system the page's kernel, vendor and
type name, and which controls it fixes, found by asking resolve. The expected lists are the
refusals of app.kvm.tdx, app.kvm.svm and app/api/xen.py, read there, not derived here."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import app
from app.xen.versions import SYSTEM_ID, XEN_VERSIONS

client = TestClient(app)


def view(**body) -> dict:
    r = client.post("/page/system", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def fixed(v: dict) -> dict:
    return {f["param"]: f["value"] for f in v["fixed"]}


def test_intel_fixes_nothing():
    v = view(kernel="v6.16")
    assert (v["system"], v["fixed"], v["xen"], v["private"]) == ("kvm-intel", [], False, False)
    assert v["panels"]["path"] == "vmx_get_mt_mask()"


def test_amd():
    v = view(kernel="v6.16", vendor="amd")
    assert v["system"] == "kvm-amd" and fixed(v) == {"vmtype": "default"}
    assert "KVM_X86_TDX_VM is offered by kvm_intel only" in v["fixed"][0]["reason"]
    old = view(kernel="v6.11", vendor="amd")  # the IGNORE_GUEST_PAT quirk only exists from 6.16
    assert fixed(old) == {"pat_quirk": True, "vmtype": "default"}
    assert "cannot be turned off under v6.11" in old["fixed"][0]["reason"]


def test_tdx():
    v = view(kernel="v6.16", type="tdx")
    assert v["system"] == "kvm-tdx" and v["private"] is True and v["xen"] is False
    assert fixed(v) == {"pat_quirk": False, "vendor": "intel", "cd": False, "deftype": "0x806"}
    dt = next(f for f in v["fixed"] if f["param"] == "deftype")
    assert dt["controls"] == {"mtrr-e": True, "mtrr-deftype": "6"}
    assert "the TDX module enforces MTRRs enabled, default WB" in dt["reason"]


def test_tdx_under_an_old_kernel_is_refused():
    v = view(kernel="v6.7", type="tdx")
    assert v["system"] is None and v["error"]["field"] == "vm.type"
    assert v["error"]["message"] == "no TDX VMs under 'v6.7'"


@pytest.mark.parametrize("kernel", [SYSTEM_ID, *XEN_VERSIONS])
def test_xen(kernel):
    v = view(kernel=kernel)
    assert v["system"] == "xen" and v["xen"] is True and v["private"] is False
    assert fixed(v) == {"ncdma": False, "cdnw_quirk": True, "pat_quirk": True, "selfsnoop": True,
                        "guest_mtrr": True, "vendor": "intel", "vmtype": "default", "mmio": None}
    assert v["panels"]["path"] == "epte_get_entry_emt()"


def test_page_lists_the_xen_releases_and_facts():
    r = client.get("/")
    assert all(f'<option value="{k}"' in r.text for k in (SYSTEM_ID, *XEN_VERSIONS))
    for name in ("iommu", "p2m_type", "order", "mmio_ro", "special", "host_mtrr"):
        assert f'id="xen-{name}"' in r.text
