"""A fixed set of API requests and their exact response bytes (issue 11, "schemas from the core").

`snapshot()` asks the app for a set of 200 answers: every preset through resolve (JSON and text),
zap, map and permalink; host pages; decode of single leaves and of pasted traces; era
diffs; replays; the GET endpoints; and the OpenAPI document. The keys name the request,
the values are the response bodies as text. tests/test_api_snapshot.py compares their
SHA-256 digests with tests/data/api_snapshot.json, written by

    PYTHONPATH=. python -m tests.api_snapshot --write

Rewrite it only for a change of the API that is meant (and say so in the commit). To see
what changed, dump the full bodies at both commits and diff them:

    PYTHONPATH=. python -m tests.api_snapshot --full /tmp/before.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("MEMTYPE_PUBLIC_URL", "http://testserver")
os.environ.setdefault("MEMTYPE_RESULT_CACHE_SIZE", "0")

from fastapi.testclient import TestClient  # noqa: E402

from app.kvm.eras import ERAS  # noqa: E402
from app.kvm.host_page import PRESETS as HOST_PRESETS  # noqa: E402
from app.main import create_app  # noqa: E402
from app.presets import PRESETS  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "api_snapshot.json"

SPTE_TRACE = (
    "CPU 0/KVM-995362 [016] 55709.716256: kvm_mmu_set_spte:     gfn fee00 spte 60000002fee00e77 (rwxu) "
    "level 1 at 10a5b1008\n"
    "qemu-system-x86-8397    [002] .....  1404.389373: kvm_tdp_mmu_spte_changed: as id 0 gfn 100 "
    "level 1 old_spte 600000012345ef77 new_spte 5a0\n"
    "CPU 1/KVM 1821753 [015] 4831258.258053: kvmmmu:kvm_mmu_spte_requested: gfn 1234 pfn 56789 level 1\n"
    "CPU 0/KVM-995362 [016] 55709.716257: kvm_mmu_set_spte:     gfn 80000 spte 6000000080000ef7 (rwxu) "
    "level 2 at 10a5b1010\n"
    "CPU 0/KVM-995362 [016] 55709.716258: kvm_mmu_set_spte:     gfn fd000 spte 60000000fd000e3f (rwxu) "
    "level 1 at 10a5b1018\n"
)
AMD_TRACE = ("CPU 0/KVM-4711 [003] 812.000001: kvm_mmu_set_spte: gfn 1000 spte 8000000101000867 (rw-u) "
             "level 1 at 1f3a2008\n")
REPLAY_TRACE = (
    "vcpu 0 cr0 cd=1\n"
    "vcpu 0 wrmsr 0x2ff 0xc06\n"
    "vcpu 1 wrmsr 0x200 0x80000000\n"
    "vcpu 1 ncdma off\n"
    "vcpu 0 cr0 cd=0 nw=0\n"
)


XEN_MTRR = {"def_type": "0xc06", "fixed": ["0x0606060606060606"] * 11,
            "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}
SYSTEM_EVENTS = ({"kind": "cr0_cd", "value": True}, {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"},
                 {"kind": "mtrr_write", "msr": "0x200", "value": "0xc0000000"},
                 {"kind": "noncoherent_dma", "value": True}, {"kind": "pat_write", "value": "0x0007040600070406"})


def systems() -> list[tuple[str, str, str, dict | None]]:
    """AMD (vm.vendor amd), TDX (vm.type tdx) and Xen (kernel xen...) through resolve, zap
    and map, JSON and text (issue 14)."""
    out: list[tuple[str, str, str, dict | None]] = []
    amd = {"vendor": "amd"}
    for k in ("4.13.9", "5.2", "6.8", "v6.16", "6.19"):
        for q in (True, False):
            vm = {**amd, "quirk_cd_nw_cleared": q}
            for gpa in ("0x1000", "0x800000000"):
                body = {"kernel": k, "gpa": gpa, "vm": vm, "vcpu": {"cr0_cd": True, "pat": "0x0407050600070106"}}
                out.append((f"amd resolve {k} {q} {gpa}", "POST", "/api/v1/resolve", body))
            out.append((f"amd resolve text {k} {q}", "POST", "/api/v1/resolve?format=text",
                        {"kernel": k, "gpa": "0x1000", "vm": vm}))
            for ev in SYSTEM_EVENTS:
                for fmt in ("", "?format=text"):
                    out.append((f"amd zap{fmt} {k} {q} {json.dumps(ev)}", "POST", f"/api/v1/zap{fmt}",
                                {"kernel": k, "vm": {**vm, "noncoherent_dma": True}, "event": ev}))
        out.append((f"amd map {k}", "POST", "/api/v1/map",
                    {"kernel": k, "vm": amd, "vcpu": {"mtrr": XEN_MTRR}, "pat_index": 1}))
    host = {"host_pat": "0x0000000000000001", "host_mtrr": "WT"}  # AMD host facts as inputs
    for fmt in ("", "?format=text"):
        out.append((f"amd host resolve{fmt}", "POST", f"/api/v1/resolve{fmt}",
                    {"kernel": "6.8", "gpa": "0x1000", "vm": amd, "amd": host}))
        out.append((f"amd host diff{fmt}", "POST", f"/api/v1/diff{fmt}",
                    {"a": "6.8", "a_vendor": "amd", "b": "v6.7", "amd": {"host_mtrr": "UC"}}))
    out.append(("amd host map", "POST", "/api/v1/map", {"kernel": "6.19", "vm": amd, "amd": host, "pat_index": 2}))
    td = {"type": "tdx"}
    for gpa, private in (("0x1000", None), ("0x1000", True), ("0x800000000", False)):
        body = {"kernel": "6.16", "gpa": gpa, "vm": td}
        if private is not None:
            body["private"] = private
        for fmt in ("", "?format=text"):
            out.append((f"tdx resolve{fmt} {gpa} {private}", "POST", f"/api/v1/resolve{fmt}", body))
    for ev in SYSTEM_EVENTS[1:]:
        out.append((f"tdx zap {json.dumps(ev)}", "POST", "/api/v1/zap", {"kernel": "6.19", "vm": td, "event": ev}))
    out.append(("tdx map", "POST", "/api/v1/map", {"kernel": "6.16", "vm": td, "pat_index": 3}))
    out.append(("xen map frames", "POST", "/api/v1/map",
                {"kernel": "xen", "vcpu": {"mtrr": XEN_MTRR}, "pat_index": 1, "xen": {"iommu": True, "frames": [
                    {"start": "0x100000", "end": "0x300000", "mmio_ro": True},
                    {"start": "0x400000", "end": "0x401000", "p2m_type": "map_foreign"},
                    {"start": "0x800000000", "end": "0x800001000", "special": True}]}}))
    out.append(("tdx map private", "POST", "/api/v1/map",
                {"kernel": "6.16", "vm": td, "pat_index": 3, "private_ranges": [
                    {"start": "0x100000", "end": "0x40000000"}, {"start": "0x100000000", "end": "0x100201000"}]}))
    domains = ({}, {"iommu": True}, {"iommu": True, "pci_devices": True}, {"io_resources": True},
               {"iommu": True, "pinned": [{"start": 0x100000, "end": 0x1001FF, "type": "WC"}]})
    for k in ("xen", "xen-4.19"):
        for d in domains:
            for x in ({}, {"p2m_type": "mmio_direct"}, {"p2m_type": "grant_map_rw"}, {"order": 9, "mmio_ro": "partial"},
                      {"special": "all"}, {"order": 18, "host_mtrr": "mixed"}):
                body = {"kernel": k, "gpa": "0x100000000", "vcpu": {"mtrr": XEN_MTRR}, "xen": {**d, **x}}
                out.append((f"xen resolve {k} {json.dumps(body['xen'], sort_keys=True)}", "POST", "/api/v1/resolve",
                            body))
            out.append((f"xen resolve text {k} {json.dumps(d, sort_keys=True)}", "POST",
                        "/api/v1/resolve?format=text",
                        {"kernel": k, "gpa": "0x1000", "vcpu": {"mtrr": XEN_MTRR, "cr0_cd": True}, "xen": d}))
            out.append((f"xen map {k} {json.dumps(d, sort_keys=True)}", "POST", "/api/v1/map",
                        {"kernel": k, "vcpu": {"mtrr": XEN_MTRR}, "xen": d, "pat_index": 1}))
            for ev in (*SYSTEM_EVENTS[:3], SYSTEM_EVENTS[4], {"kind": "passthrough_attach"}):
                for fmt in ("", "?format=text"):
                    out.append((f"xen zap{fmt} {k} {json.dumps(d, sort_keys=True)} {json.dumps(ev)}", "POST",
                                f"/api/v1/zap{fmt}", {"kernel": k, "vcpu": {"mtrr": XEN_MTRR}, "xen": d, "event": ev}))
    for body in ({"a": "v6.16", "b": "xen"}, {"a": "v4.2", "b": "xen-4.19", "limit": 50},
                 {"a": "6.8", "a_vendor": "amd", "b": "v6.7"}, {"a": "6.16", "a_vendor": "amd", "b": "xen"},
                 {"a": "5.2", "a_vendor": "amd", "b": "6.19", "b_vendor": "amd"},
                 {"a": "v6.16", "b": "6.16", "b_type": "tdx"}, {"a": "6.19", "a_type": "tdx", "b": "xen"}):
        for fmt in ("", "?format=text"):
            out.append((f"system diff{fmt} {json.dumps(body, sort_keys=True)}", "POST", f"/api/v1/diff{fmt}", body))
    return out


def requests() -> list[tuple[str, str, str, dict | None]]:
    """(key, method, path, body): the snapshot's requests, in order."""
    out: list[tuple[str, str, str, dict | None]] = [
        ("openapi", "GET", "/openapi.json", None),
        ("kernels", "GET", "/api/v1/kernels", None),
        ("presets", "GET", "/api/v1/presets", None),
        ("generators", "GET", "/api/v1/replay/generators", None),
        ("healthz", "GET", "/healthz", None),
    ]
    out += [(f"kernel {k}", "GET", f"/api/v1/kernels/{k}", None) for k in ERAS]
    for name, p in PRESETS.items():
        body = p.request()
        out.append((f"preset {name}", "GET", f"/api/v1/presets/{name}", None))
        out.append((f"resolve {name}", "POST", "/api/v1/resolve", body))
        out.append((f"resolve text {name}", "POST", "/api/v1/resolve?format=text", body))
        scen = {k: v for k, v in body.items() if k not in ("gpa", "mmio", "host_page")}
        for i in (0, 1, 3):
            out.append((f"map {name} {i}", "POST", "/api/v1/map", {**scen, "pat_index": i}))
        ev = p.event()
        if ev is not None:
            out.append((f"zap {name}", "POST", "/api/v1/zap", {**scen, "event": ev}))
            out.append((f"zap text {name}", "POST", "/api/v1/zap?format=text", {**scen, "event": ev}))
        link = {**body, "view": "zap" if ev else "resolve", "pati": 1}
        if ev is not None:
            link["event"] = ev
        if p.compare:
            link["vs"] = p.compare
        out.append((f"permalink {name}", "POST", "/api/v1/permalink", link))
    for k in ERAS:
        seed = PRESETS["review-seed"].request()
        out.append((f"resolve seed {k}", "POST", "/api/v1/resolve", {**seed, "kernel": k}))
        scen = {kk: v for kk, v in seed.items() if kk not in ("gpa", "mmio")}
        for ev in ({"kind": "cr0_cd", "value": False}, {"kind": "cr0_cd", "value": True, "cr0_nw": True},
                   {"kind": "mtrr_write", "msr": "0x2ff", "value": "0x806"},
                   {"kind": "mtrr_write", "msr": "0x201", "value": "0x3fffc0000800"},
                   {"kind": "mtrr_write", "msr": "0x250", "value": "0x0"},
                   {"kind": "noncoherent_dma", "value": False}, {"kind": "pat_write", "value": "0x0007040600070406"}):
            out.append((f"zap {k} {json.dumps(ev)}", "POST", "/api/v1/zap", {**scen, "kernel": k, "event": ev}))
    for version in ("4.15", "4.16", "5.1.21", "5.2", "6.8.0-45-generic", "6.11-rc3", "6.12.77", "6.12.78", "6.19"):
        out.append((f"resolve version {version}", "POST", "/api/v1/resolve", {"kernel": version, "gpa": "0xa0000"}))
    for hp in HOST_PRESETS:
        out.append((f"resolve host {hp}", "POST", "/api/v1/resolve",
                    {"kernel": "v4.2", "gpa": "0x100000", "host_page": {"preset": hp}}))
    for hp in ({"class": "reserved", "host_memtype": "WC", "hpa": "0xfd000000"},
               {"class": "reserved", "host_memtype": "WB", "pat_enabled": False},
               {"class": "no_struct_page", "e820_ram": True}, {"class": "ram"}, {"class": "zero_page"}):
        for k in ("4.15", "5.2", "v6.16"):
            out.append((f"resolve host {k} {json.dumps(hp)}", "POST", "/api/v1/resolve",
                        {"kernel": k, "gpa": "0x1000", "host_page": hp}))
    out.append(("resolve forced mmio", "POST", "/api/v1/resolve", {"kernel": "v6.7", "gpa": "0x1000", "mmio": True}))
    out.append(("resolve unmapped", "POST", "/api/v1/resolve", {"kernel": "v6.7", "gpa": "0x300000000000"}))
    out.append(("resolve cd nw pg", "POST", "/api/v1/resolve",
                {"kernel": "v6.7", "gpa": "0x1000", "vm": {"noncoherent_dma": True},
                 "vcpu": {"cr0_cd": True, "cr0_nw": True, "cr0_pg": False}}))
    out.append(("resolve memory map", "POST", "/api/v1/resolve",
                {"kernel": "v6.11", "gpa": "0x2000", "memory_map": [
                    {"start": "0x0", "end": "0x100000", "label": "low"},
                    {"start": "0x100000", "end": "0x200000", "kind": "mmio", "label": "bar"}]}))
    for spte, level in (("0x6000000080000e77", 1), ("600000008000be57", None), ("0x38", None), ("0x3f", None),
                        ("0x7a", None), ("0x60000000800000f7", 2), ("0x60000000c00000f7", 3)):
        body: dict = {"spte": spte}
        if level is not None:
            body["level"] = level
        out.append((f"decode {spte} {level}", "POST", "/api/v1/decode", body))
    out.append(("decode line", "POST", "/api/v1/decode",
                {"line": "kvm_mmu_set_spte: gfn fee00 spte 60000002fee00e77 (rwxu) level 1 at 10a5b1008"}))
    out.append(("decode scenario", "POST", "/api/v1/decode",
                {"spte": 0x37, "vm": {"quirk_ignore_guest_pat": False}, "kernels": ["v4.2", "v6.16"],
                 "gpa": "0xfd000000"}))
    out.append(("decode trace", "POST", "/api/v1/decode/trace", {"trace": SPTE_TRACE}))
    out.append(("decode trace nofields", "POST", "/api/v1/decode/trace",
                {"trace": SPTE_TRACE, "fields": False, "kernels": ["v6.7", "v6.16"], "mmio": True}))
    out.append(("decode trace amd", "POST", "/api/v1/decode/trace",
                {"trace": AMD_TRACE, "vendor": "amd", "host_pat": "0x0407050600070106"}))
    for a, b, limit in (("v4.2", "v6.7", 500), ("v6.7", "v6.11", 20), ("v6.11-rc1", "v6.16", 5000),
                        ("6.12.78", "6.12.77", 10), ("v4.2", "v4.2", 500)):
        out.append((f"diff {a} {b} {limit}", "POST", "/api/v1/diff", {"a": a, "b": b, "limit": limit}))
    out.append(("diff text", "POST", "/api/v1/diff?format=text", {"a": "v4.2", "b": "v6.7"}))
    for body in ({"generator": "ovmf", "vcpus": 2}, {"generator": "seabios", "vcpus": 2, "include_calls": True},
                 {"generator": "ovmf", "vcpus": 1, "edk2": "2024-02", "machine": "pc", "memory": "2G"},
                 {"vcpus": 2, "vm": {"noncoherent_dma": True}, "include_calls": True, "events": [
                     {"vcpu": 0, "event": {"kind": "cr0_cd", "value": True}},
                     {"vcpu": 1, "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc06"}},
                     {"vcpu": 0, "event": {"kind": "cr0_cd", "value": False}}]},
                 {"trace": REPLAY_TRACE, "kernels": ["v6.7", "v6.16"], "include_calls": True},
                 {"trace": REPLAY_TRACE, "initial": "reset", "vm": {"quirk_ignore_guest_pat": False}}):
        out.append((f"replay {json.dumps(body, sort_keys=True)}", "POST", "/api/v1/replay", body))
    out += systems()
    for name in ("capture-seabios-kvm-debug-threads.txt",):
        text = (Path(__file__).parent / "data" / name).read_text(encoding="utf-8")
        out.append((f"replay {name}", "POST", "/api/v1/replay", {"trace": text, "kernels": ["v6.7"]}))
    return out


def snapshot() -> dict[str, str]:
    app = create_app()
    logging.getLogger("memtype.access").setLevel(logging.WARNING)
    got: dict[str, str] = {}
    with TestClient(app) as client:
        for key, method, path, body in requests():
            r = client.request(method, path, json=body)
            assert r.status_code == 200, (key, r.status_code, r.text[:500])
            assert key not in got, key
            got[key] = r.text
    return got


def digests(snap: dict[str, str]) -> dict[str, str]:
    return {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(snap.items())}


if __name__ == "__main__":
    snap = snapshot()
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(digests(snap), indent=0) + "\n", encoding="utf-8")
        print(f"wrote {len(snap)} digests to {GOLDEN}")
    elif "--full" in sys.argv:
        dest = Path(sys.argv[sys.argv.index("--full") + 1])
        dest.write_text(json.dumps(snap, indent=0, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {len(snap)} responses to {dest}")
    else:
        print(f"{len(snap)} responses, {sum(len(v) for v in snap.values())} characters")
