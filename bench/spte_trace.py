"""Figures for the pasted-trace SPTE decoder: `python bench/spte_trace.py`.

Core (app.kvm.spte_trace.decode_trace) and API (POST /api/v1/decode/trace over ASGI, no
network) on traces of kvm_mmu_set_spte / kvm_tdp_mmu_spte_changed lines: 1,000 lines and
the largest trace the limits admit (MAX_TRACE_CHARS binds first for real-length lines),
every gfn distinct (one era computation per line) or all the same (memoised), Intel with
every era compared and AMD (no comparison). Prints milliseconds, microseconds per line,
response size and the core's peak memory. Kept apart from bench/run.py until that file's
section list settles (issue 9 §4 work is editing it).
"""

from __future__ import annotations

import logging
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kvm.eras import ERAS
from app.kvm.scenario import VcpuState, VmConfig
from app.kvm.spte_trace import MAX_TRACE_CHARS, MAX_TRACE_LINES, Scenario, decode_trace


def trace(n: int, distinct: bool) -> str:
    out = []
    for i in range(n):
        g = 0x100 + i if distinct else 0x100
        spte = f"6{g << 12 | 0xE77:015x}"
        if i % 2:
            out.append(f"CPU 0/KVM-4711 [003] 812.{i:06d}: kvm_mmu_set_spte: gfn {g:x} spte {spte} (rwxu) "
                       "level 1 at 1f3a2008")
        else:
            out.append(f"CPU 0/KVM-4711 [003] 812.{i:06d}: kvm_tdp_mmu_spte_changed: as id 0 gfn {g:x} level 1 "
                       f"old_spte {spte} new_spte 5a0")
    text = "\n".join(out)
    return text[:text.rfind("\n", 0, MAX_TRACE_CHARS)] if len(text) > MAX_TRACE_CHARS else text


def best(fn, runs: int = 3) -> float:
    t = 1e9
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - s)
    return t


def main() -> None:
    sc = Scenario(VmConfig(), VcpuState(), tuple(ERAS.values()))
    print(f"core: decode_trace, {len(ERAS)} eras compared on intel")
    for n in (1000, MAX_TRACE_LINES):
        for distinct in (True, False):
            text = trace(n, distinct)
            lines = text.count("\n") + 1
            for vendor in ("intel", "amd"):
                t = best(lambda text=text, vendor=vendor: decode_trace(text, vendor, sc))
                print(f"  {vendor:5} {'distinct' if distinct else 'same':8} gfns {lines:5} lines "
                      f"{len(text):6} chars {t * 1e3:7.1f} ms {t / lines * 1e6:6.1f} us/line")
    text = trace(MAX_TRACE_LINES, True)
    tracemalloc.start()
    decode_trace(text, "intel", sc)
    print(f"  peak memory, largest trace, intel: {tracemalloc.get_traced_memory()[1] / 1e6:.1f} MB")
    tracemalloc.stop()

    from fastapi.testclient import TestClient

    from app.main import create_app

    client = TestClient(create_app())
    logging.getLogger("memtype.access").setLevel(logging.WARNING)
    print("api: POST /api/v1/decode/trace, largest trace, distinct gfns")
    for vendor in ("intel", "amd"):
        for fields in (True, False):
            body = {"trace": text, "vendor": vendor, "fields": fields}
            r = client.post("/api/v1/decode/trace", json=body)
            assert r.status_code == 200, r.text
            t = best(lambda body=body: client.post("/api/v1/decode/trace", json=body))
            print(f"  {vendor:5} fields={str(fields).lower():5} {t * 1e3:7.0f} ms "
                  f"response {len(r.content) / 1e6:4.1f} MB")


if __name__ == "__main__":
    main()
