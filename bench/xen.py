"""Figures for the Xen model: `python bench/xen.py`.

Core: entry_emt() (epte_get_entry_emt) for three paths (forced WB|IPAT, the full MTRR
combine, a superpage split), resolve_xen() with 8 PAT rows, event_answer() for an MTRR
write, xen_map() and xen_zap() over the default memory map, the cross-system diffs
(uncached), and the exhaustive state walk tests/test_xen_emt.py makes. API: also map
(Xen, AMD, v6.7), Xen zap and a cross-system diff (cached after the first call). API: POST
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
from app.kvm.scenario import MtrrWrite, VcpuState
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
    ev = MtrrWrite(msr=0x2FF, value=0x800)
    r, us = rate(lambda: event_answer(NEWEST, passthrough, ram, vcpu, ev))
    print(f"  event_answer {'MTRRdefType':<14} {r:9.0f}/s  {us:6.1f} us")

    from app.kvm.scenario import VmConfig
    from app.system_diff import diff_systems, side
    from app.xen.map import xen_map
    from app.xen.zap import xen_zap

    vm = VmConfig()
    r, us = rate(lambda: xen_map(NEWEST, passthrough, vm, vcpu, 1))
    n_runs = len(xen_map(NEWEST, passthrough, vm, vcpu, 1))
    print(f"  xen_map      {'OVMF, default':<14} {r:9.0f}/s  {us:6.1f} us  ({n_runs} runs)")
    io = Domain(io_resources=True)
    r, us = rate(lambda: xen_zap(NEWEST, io, vm, vcpu, ev))
    print(f"  xen_zap      {'MTRRdefType':<14} {r:9.0f}/s  {us:6.1f} us")
    from app.kvm.svm import SvmHost

    uc = SvmHost(host_mtrr="UC")
    for a, av, b, bt, host in (("v6.16", "intel", "xen", "default", None), ("6.8", "amd", "v6.7", "default", None),
                               ("6.16", "amd", "xen", "default", None), ("v6.16", "intel", "6.16", "tdx", None),
                               ("6.8", "amd", "v6.7", "default", uc)):
        sa = side(a, av, "a", host=host or SvmHost())
        sb = side(b, "intel", "b", bt)
        start = time.process_time()
        d = diff_systems(sa, sb)
        t = time.process_time() - start
        name = a + ("/amd" if av == "amd" else "") + ("+h" if host else "")
        print(f"  system diff  {name:<10} vs {b + ('/tdx' if bt == 'tdx' else ''):<8} {d.total_states:5} "
              f"states {t * 1e3:7.1f} ms CPU (uncached)")

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
    print("api: other endpoints over ASGI (wall time)")
    others = {
        "map xen": ("/api/v1/map", {"kernel": "xen", "vcpu": {"mtrr": {"def_type": "0xc06"}}, "xen": {"iommu": True}}),
        "map amd": ("/api/v1/map", {"kernel": "6.8", "vm": {"vendor": "amd"}}),
        "map v6.7": ("/api/v1/map", {"kernel": "v6.7"}),
        "map xen frames": ("/api/v1/map", {"kernel": "xen", "xen": {"iommu": True, "frames": [
            {"start": "0x100000", "end": "0x300000", "mmio_ro": True},
            {"start": "0x400000", "end": "0x401000", "p2m_type": "map_foreign"}]}}),
        "map tdx": ("/api/v1/map", {"kernel": "6.16", "vm": {"type": "tdx"}}),
        "map tdx priv": ("/api/v1/map", {"kernel": "6.16", "vm": {"type": "tdx"}, "private_ranges": [
            {"start": "0x100000", "end": "0x40000000"}, {"start": "0x100000000", "end": "0x100201000"}]}),
        "diff v16/tdx": ("/api/v1/diff", {"a": "v6.16", "b": "6.16", "b_type": "tdx"}),
        "zap xen": ("/api/v1/zap", {"kernel": "xen", "xen": {"io_resources": True},
                                    "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"}}),
        "diff v6.16/xen": ("/api/v1/diff", {"a": "v6.16", "b": "xen"}),
    }
    for name, (path, body) in others.items():
        assert client.post(path, json=body).status_code == 200
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            client.post(path, json=body)
            n += 1
        t = time.perf_counter() - start
        print(f"  {name:<14} {n / t:7.0f} req/s  {t / n * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
