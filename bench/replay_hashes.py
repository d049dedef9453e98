"""Hashes of full replay answers over a broad set of traces: a speed change must keep them.

`python bench/replay_hashes.py --write bench/replay_hashes.json` records them;
`python bench/replay_hashes.py --check bench/replay_hashes.json` recomputes and compares
(exit 1 on any difference, naming the cases). Two layers are hashed:

* the API: the JSON body of POST /api/v1/replay with `include_calls` (every era, every
  call record, final states) for the generators (ovmf, seabios; several vCPU counts,
  with and without Linux, machines, memory, phys-bits, edk2 builds, VM variants), the real
  captures in tests/data (one replays, one is refused: the error body is hashed), and
  plain-format trace text made from random and adversarial event lists;
* the core: `repr` of `replay_all` (every era's `ReplayResult`) and `final_states` for
  larger traces (bench/run.py's adversarial and boot-like kinds at 10,000 events, wide
  adversarial ranges) and random traces of every event kind on random memory maps and
  initial states (refusals hashed by their field and message).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMTYPE_RESULT_CACHE_SIZE", "0")
os.environ.setdefault("MEMTYPE_MAX_REQUEST_SECONDS", "3600")
os.environ.setdefault("MEMTYPE_PUBLIC_URL", "http://testserver")

MPA = 46
GiB = 1 << 30
ADDRS = [0, 0x80000, 0xA0000, 0xC0000, 0x100000, 0x400000, 0x80000000, 0xC0000000,
         0xFD000000, 0xFE000000, GiB, 2 * GiB, 4 * GiB, 6 * GiB, 8 * GiB, 12 * GiB, 16 * GiB]
TYPES = [0, 1, 4, 5, 6]
SIZES = [1 << k for k in (12, 16, 20, 21, 24, 28, 30, 31, 32, 33, 34)]
FIXED_VALUES = [0, 0x0606060606060606, 0x0505050505050505, 0x0000000006060606, 0x0104050600010406]
DEF_TYPES = [0x0, 0x6, 0x806, 0xC06, 0xC00, 0x400, 0x805, 0xC01]


def _mask(size: int) -> int:
    return (((1 << MPA) - 1) & ~(size - 1)) | 0x800


def _digest(s: str | bytes) -> str:
    return hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest()[:16]


def random_trace(seed: int, n_events: int = 60):
    """A random trace of every event kind (the shapes of tests/test_kvm_replay_engine.py)."""
    from app.kvm import replay as rp
    from app.kvm.boot import SOURCES
    from app.kvm.layouts import ovmf_state, seabios_state
    from app.kvm.scenario import MMIO, RAM, Cr0Write, MemRange, MtrrWrite, NoncoherentDma, PatWrite, VcpuState, VmConfig
    from app.x86.mtrr import FIXED_MSRS, MtrrState, VarMtrr

    r = random.Random(seed)
    pts = sorted(r.sample(sorted(set(ADDRS)), r.randint(2, 10)))
    mm = []
    for s, e in zip(pts, pts[1:], strict=False):
        if r.random() < 0.5 or not mm:
            mm.append(MemRange(s, e, r.choice([RAM, RAM, MMIO])))
    vm = VmConfig(noncoherent_dma=r.random() < 0.7, quirk_cd_nw_cleared=r.random() < 0.5,
                  self_snoop=r.random() < 0.5, guest_has_mtrr=r.random() < 0.8, maxphyaddr=MPA, memory_map=tuple(mm))
    pick = r.randrange(4)
    if pick == 0:
        mtrr = MtrrState()
    elif pick == 1:
        mtrr = ovmf_state()
    elif pick == 2:
        mtrr = seabios_state()
    else:
        pairs = []
        for _ in range(r.randint(0, 8)):
            written = r.random() < 0.5
            mask = _mask(r.choice(SIZES)) if r.random() < 0.5 else 0
            pairs.append(VarMtrr(r.choice(ADDRS) | r.choice(TYPES), mask, mask_written=written or mask == 0))
        mtrr = MtrrState(r.choice(DEF_TYPES), tuple(r.choice(FIXED_VALUES) for _ in range(11)), tuple(pairs))
    vcpus = r.randint(1, 3)

    def event():
        kind = r.choice(["cd", "def", "fixed", "base", "mask", "mask", "pat", "dma"])
        if kind == "cd":
            cd = r.random() < 0.5
            return Cr0Write(value=cd, cr0_nw=(r.random() < 0.5) if cd else False)
        if kind == "def":
            return MtrrWrite(msr=0x2FF, value=r.choice(DEF_TYPES))
        if kind == "fixed":
            return MtrrWrite(msr=r.choice([f.msr for f in FIXED_MSRS]), value=r.choice(FIXED_VALUES))
        if kind == "base":
            return MtrrWrite(msr=0x200 + 2 * r.randrange(8), value=r.choice(ADDRS) | r.choice(TYPES))
        if kind == "mask":
            return MtrrWrite(msr=0x201 + 2 * r.randrange(8), value=r.choice([0, _mask(r.choice(SIZES))]))
        if kind == "pat":
            return PatWrite(value=r.choice([0x0007040600070406, 0x0407050600070106]))
        return NoncoherentDma(value=r.random() < 0.5)

    evs = [(r.randrange(vcpus), event()) for _ in range(n_events)]
    evs += [r.choice(evs) for _ in range(n_events // 2)]  # repeats, as boots make, so memos hit
    return rp.Trace(vm, vcpus, tuple(rp.TraceEvent(v, e, 0, r.choice(SOURCES)) for v, e in evs),
                    VcpuState(mtrr=mtrr), f"random-{seed}")


def plain_text(trace) -> str:
    """`trace`'s events in the plain trace format (app/kvm/trace_format.md)."""
    from app.kvm.scenario import Cr0Write, MtrrWrite, NoncoherentDma, PatWrite

    lines = []
    for te in trace.events:
        ev = te.event
        match ev:
            case Cr0Write(value=cd, cr0_nw=nw):
                lines.append(f"vcpu {te.vcpu} cr0 cd={int(cd)}" + ("" if nw is None else f" nw={int(nw)}"))
            case MtrrWrite(msr=msr, value=value):
                lines.append(f"vcpu {te.vcpu} wrmsr {msr:#x} {value:#x}")
            case PatWrite(value=value):
                lines.append(f"vcpu {te.vcpu} wrmsr 0x277 {value:#x}")
            case NoncoherentDma(value=on):
                lines.append(f"vcpu {te.vcpu} ncdma {'on' if on else 'off'}")
    return "\n".join(lines) + "\n"


def _vm_json(vm) -> dict:
    return {"noncoherent_dma": vm.noncoherent_dma, "quirk_cd_nw_cleared": vm.quirk_cd_nw_cleared,
            "self_snoop": vm.self_snoop, "guest_has_mtrr": vm.guest_has_mtrr, "maxphyaddr": vm.maxphyaddr,
            "memory_map": [{"start": hex(m.start), "end": hex(m.end), "kind": m.kind} for m in vm.memory_map]}


def _vcpu_json(st) -> dict:
    m = st.mtrr
    return {"cr0_cd": st.cr0_cd, "cr0_nw": st.cr0_nw, "pat": hex(st.pat.to_msr()),
            "mtrr": {"def_type": hex(m.def_type), "fixed": [hex(v) for v in m.fixed],
                     "variable": [{"base": hex(p.base), "mask": hex(p.mask)} for p in m.variable]}}


def api_cases():
    """(name, request body) pairs for POST /api/v1/replay."""
    import bench.run as br

    out = []
    for gen in ("ovmf", "seabios"):
        for n in (1, 2, 3, 8, 16, 64):
            out.append((f"{gen}-{n}", {"generator": gen, "vcpus": n}))
        out.append((f"{gen}-8-nolinux", {"generator": gen, "vcpus": 8, "linux": False}))
        out.append((f"{gen}-4-pc-2G", {"generator": gen, "vcpus": 4, "machine": "pc", "memory": "2G"}))
        out.append((f"{gen}-4-q35-8G-pb40", {"generator": gen, "vcpus": 4, "memory": "8G", "maxphyaddr": 40}))
        out.append((f"{gen}-4-noqemu", {"generator": gen, "vcpus": 4, "qemu_host_writes": False}))
        out.append((f"{gen}-4-noncdma", {"generator": gen, "vcpus": 4, "vm": {"noncoherent_dma": False}}))
        out.append((f"{gen}-4-quirkoff", {"generator": gen, "vcpus": 4,
                                          "vm": {"noncoherent_dma": True, "quirk_cd_nw_cleared": False}}))
        out.append((f"{gen}-4-running", {"generator": gen, "vcpus": 4, "initial": "running"}))
    for edk2 in ("2023-05", "2023-11", "2024-02"):
        out.append((f"ovmf-4-edk2-{edk2}", {"generator": "ovmf", "vcpus": 4, "edk2": edk2}))
    out.append(("ovmf-4-classic", {"generator": "ovmf", "vcpus": 4, "aperture": "classic", "memory": "6G"}))
    data = ROOT / "tests" / "data"
    for f in sorted(data.glob("capture-*.txt")):
        out.append((f.stem, {"trace": f.read_text()}))
        out.append((f.stem + "-qemu", {"trace": f.read_text(), "qemu_host_writes": True}))
    for seed in range(24):
        t = random_trace(seed, 40)
        out.append((f"text-random-{seed}", {"trace": plain_text(t), "vcpus": t.vcpus, "vm": _vm_json(t.vm),
                                            "initial": _vcpu_json(t.initial)}))
    adv = br._adversarial_trace(400, vcpus=4)
    out.append(("text-adversarial-400", {"trace": plain_text(adv), "vcpus": adv.vcpus, "vm": _vm_json(adv.vm),
                                         "initial": _vcpu_json(adv.initial)}))
    return out


def core_cases():
    """(name, trace) pairs for replay_all."""
    import bench.run as br

    out = [("adversarial-10k", br._adversarial_trace(10_000)),
           ("adversarial-wide-3k", br._adversarial_trace(3_000, max_order=33)),
           ("adversarial-2vcpu-seed7", br._adversarial_trace(3_000, vcpus=2, seed=7)),
           ("boot-like-10k", br._boot_like_trace(10_000))]
    out += [(f"random-{seed}", lambda seed=seed: random_trace(1000 + seed)) for seed in range(300)]
    return out


def compute(only: str = "") -> dict[str, str]:
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient

    from app.kvm import replay as rp
    from app.main import create_app
    from app.x86.memtype import MemTypeError

    hashes: dict[str, str] = {}
    logging.getLogger("memtype.access").setLevel(logging.WARNING)
    with TestClient(create_app()) as client:
        for name, body in api_cases():
            if only and only not in name:
                continue
            body = {**body, "include_calls": True}
            r = client.post("/api/v1/replay", json=body)
            hashes["api/" + name] = f"{r.status_code}:" + _digest(r.content)
    for name, trace in core_cases():
        if only and only not in name:
            continue
        try:
            t = trace() if callable(trace) else trace
            res = rp.replay_all(t)
            fin = rp.final_states(t)
            text = repr(sorted(res.items())) + repr(fin)
        except MemTypeError as e:
            text = f"refused {e.loc!r} {e.message}"
        hashes["core/" + name] = _digest(text)
    return hashes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", help="record the hashes in this JSON file")
    ap.add_argument("--check", help="compare with the hashes in this JSON file")
    ap.add_argument("--only", default="", help="only cases whose name contains this")
    args = ap.parse_args()
    hashes = compute(args.only)
    total = _digest(json.dumps(hashes, sort_keys=True))
    print(f"{len(hashes)} cases, combined {total}")
    if args.write:
        Path(args.write).write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    if args.check:
        want = json.loads(Path(args.check).read_text())
        bad = [k for k in hashes if want.get(k) != hashes[k]]
        missing = [k for k in want if k not in hashes and (not args.only or args.only in k)]
        for k in bad:
            print(f"  DIFFERENT {k}: {want.get(k)} -> {hashes[k]}")
        for k in missing:
            print(f"  MISSING {k}")
        if bad or missing:
            sys.exit(1)
        print("  all equal")


if __name__ == "__main__":
    main()
