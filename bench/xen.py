"""Figures for the Xen model: `python bench/xen.py`.

Core: entry_emt() (epte_get_entry_emt) for three paths (forced WB|IPAT, the full MTRR
combine, a superpage split), resolve_xen() with 8 PAT rows, event_answer() for an MTRR
write, and the exhaustive state walk tests/test_xen_emt.py makes. API: POST
/api/v1/resolve with kernel "xen" over ASGI (no network) against the same call for v6.7.
Kept apart from bench/run.py (other work edits its section list).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kvm.layouts import ovmf_state
from app.kvm.scenario import Event, VcpuState
from app.xen import NEWEST, Coverage, Domain, Page, entry_emt, event_answer
from app.xen.resolve import resolve_xen


def rate(fn, min_seconds: float = 1.0) -> tuple[float, float]:
    """(calls per second, microseconds per call) over at least min_seconds of CPU time."""
    n, start = 0, time.process_time()
    while True:
        fn()
        n += 1
        t = time.process_time() - start
        if t >= min_seconds:
            return n / t, t / n * 1e6


def main() -> None:
    ovmf = ovmf_state(linux=True)
    passthrough = Domain(iommu_enabled=True, pci_devices=True)
    ram = Page(0x40000, 0x80000)
    cases = {
        "plain WB|IPAT": (Domain(), ram, ovmf),
        "MTRR combine": (passthrough, ram, ovmf),
        "split (-1)": (Domain(), Page(0x40000, 0x80000, 9, mmio_ro=Coverage.PARTIAL), ovmf),
    }
    print("core (CPU time)")
    for name, (d, p, m) in cases.items():
        r, us = rate(lambda d=d, p=p, m=m: entry_emt(d, p, m, NEWEST))
        print(f"  entry_emt    {name:<14} {r:9.0f}/s  {us:6.1f} us")
    vcpu = VcpuState(mtrr=ovmf)
    r, us = rate(lambda: resolve_xen(NEWEST, passthrough, ram, vcpu))
    print(f"  resolve_xen  {'MTRR combine':<14} {r:9.0f}/s  {us:6.1f} us")
    ev = Event("mtrr_write", 0x800, 0x2FF)
    r, us = rate(lambda: event_answer(NEWEST, passthrough, ram, vcpu, ev))
    print(f"  event_answer {'MTRRdefType':<14} {r:9.0f}/s  {us:6.1f} us")

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import test_xen_emt

    start = time.process_time()
    test_xen_emt.test_every_state_matches_the_table()
    t = time.process_time() - start
    n = len(test_xen_emt.CASES)
    print(f"  exhaustive table test: {n} states in {t:.2f} s CPU ({t / n * 1e6:.1f} us/state)")

    from fastapi.testclient import TestClient

    from app.main import create_app

    logging.getLogger("memtype.access").setLevel(logging.WARNING)
    client = TestClient(create_app())
    print("api: POST /api/v1/resolve over ASGI (wall time)")
    bodies = {
        "xen": {"kernel": "xen", "gpa": "0x40000000", "vcpu": {"mtrr": {"def_type": "0xc06"}},
                "xen": {"iommu": True, "pci_devices": True}},
        "v6.7": {"kernel": "v6.7", "gpa": "0x40000000", "vcpu": {"mtrr": {"def_type": "0xc06"}}},
    }
    for name, body in bodies.items():
        assert client.post("/api/v1/resolve", json=body).status_code == 200
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            client.post("/api/v1/resolve", json=body)
            n += 1
        t = time.perf_counter() - start
        print(f"  kernel {name:<5} {n / t:7.0f} req/s  {t / n * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
