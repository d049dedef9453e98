"""POST /api/v1/map with Xen per-frame facts (`xen.frames`, issue 14).

Oracle written from docs/systems/xen.md's order of epte_get_entry_emt()'s tests (not from
app/xen): mmio_ro -> UC|IPAT; no IOMMU/I/O and not mmio_direct -> WB|IPAT; special ->
WB|IPAT; mmio_direct -> UC; grant/foreign -> WB|IPAT; else the guest MTRR type combined
with the host's (guest all WB here: WB on ram, UC on the UC host MTRR of mmio). Page size:
the largest aligned block that the frame-less map allows there and that lies on one side
of every frame edge (a superpage entry partly covered answers -1 and resolve_misconfig()
splits it); foreign mappings are 4K only.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio

SIZES = {"1G": 1 << 30, "2M": 1 << 21, "4K": 1 << 12}
WB_MTRR = {"def_type": "0x806"}  # E=1, FE=0, default WB
GRANTS = ("grant_map_rw", "grant_map_ro", "map_foreign")


def frames_of(spec):
    return [{"start": f"{s:#x}", "end": f"{e:#x}", **facts} for s, e, facts in spec]


def oracle(kind: str, facts: dict, passthrough: bool) -> tuple[str, str]:
    p2m = facts.get("p2m_type") or ("mmio_direct" if kind == "mmio" else "ram")
    if facts.get("mmio_ro"):
        return "UC!", "mmio_ro"
    if p2m != "mmio_direct" and not passthrough:
        return "WB!", "no_passthrough"
    if facts.get("special"):
        return "WB!", "special"
    if p2m == "mmio_direct":
        return "UC", "mmio_direct"
    if p2m in GRANTS:
        return "WB!", "grant_foreign"
    return ("UC" if kind == "mmio" else "WB"), "combine"


SPECS = [
    [(0x100000, 0x300000, {"mmio_ro": True}), (0x400000, 0x401000, {"p2m_type": "map_foreign"}),
     (0x800000000, 0x800001000, {"special": True})],
    [(0x40000000, 0x80000000, {"p2m_type": "grant_map_rw"}), (0xfd000000, 0xfd200000, {"p2m_type": "mmio_direct"})],
    [(0x1ff000, 0x201000, {"special": True}), (0x800200000, 0x800400000, {"mmio_ro": True}),
     (0x100000000, 0x140000000, {"p2m_type": "grant_map_ro", "special": True})],
    [(0x800000000, 0x800200000, {"p2m_type": "ram"})],
]
DOMAINS = [{}, {"iommu": True}, {"iommu": True, "io_resources": True}]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: "+".join(d) or "none")
@pytest.mark.parametrize("spec", SPECS, ids=range(len(SPECS)))
async def test_every_run_against_the_oracle(client, spec, domain):
    base = {"kernel": "xen", "vcpu": {"mtrr": WB_MTRR}, "pat_index": 0, "xen": dict(domain)}
    plain = (await client.post("/api/v1/map", json=base)).json()["runs"]
    r = await client.post("/api/v1/map", json={**base, "xen": {**domain, "frames": frames_of(spec)}})
    assert r.status_code == 200, r.text
    runs = r.json()["runs"]
    passthrough = bool(domain)
    assert runs[0]["start"] == "0x0" and all(a["end"] == b["start"] for a, b in zip(runs, runs[1:], strict=False))
    edges = sorted({a for s, e, _ in spec for a in (s, e)})

    def at(rows, a):
        return next(x for x in rows if int(x["start"], 16) <= a < int(x["end"], 16))

    def facts_at(a):
        return next((f for s, e, f in spec if s <= a < e), {})

    for run in runs:
        s, e = int(run["start"], 16), int(run["end"], 16)
        inner = range(-(-s // (1 << 21)) * (1 << 21), e, 1 << 21) if run["kind"] != "unmapped" else ()
        for a in (s, e - 0x1000, *inner):
            p, facts = at(plain, a), facts_at(a)
            assert (run["kind"], run["guest_mtrr"], run["expected"]) == (p["kind"], p["guest_mtrr"], p["expected"])
            if run["kind"] == "unmapped":
                assert run["ept"] is None
                continue
            want, rule = oracle(run["kind"], facts, passthrough)
            assert (run["ept"]["notation"], run["ept"]["rule"]) == (want, rule), (run, hex(a))
            p2m = facts.get("p2m_type") or ("mmio_direct" if run["kind"] == "mmio" else "ram")
            assert run["p2m_type"] == ("p2m_ram_rw" if p2m == "ram" else f"p2m_{p2m}")
            assert run.get("mmio_ro", False) == bool(facts.get("mmio_ro"))
            assert run.get("special", False) == bool(facts.get("special"))
            size = "4K"
            if p2m != "map_foreign":
                for name in ("1G", "2M"):
                    b = a // SIZES[name] * SIZES[name]
                    if SIZES[name] <= SIZES[p["page_size"]] and not any(b < x < b + SIZES[name] for x in edges):
                        size = name
                        break
            assert run["page_size"] == size, (run, hex(a))


async def test_without_frames_nothing_changes(client):
    base = {"kernel": "xen-4.19", "vcpu": {"mtrr": WB_MTRR}, "xen": {"iommu": True}}
    plain = await client.post("/api/v1/map", json=base)
    empty = (await client.post("/api/v1/map", json={**base, "xen": {"iommu": True, "frames": []}})).json()
    assert empty == plain.json()
    assert all("mmio_ro" not in r and "special" not in r for r in empty["runs"])


@pytest.mark.parametrize("frames, loc, says", [
    (frames_of([(0x100, 0x2000, {})]), ["body", "xen", "frames", 0], "not 4K aligned"),
    (frames_of([(0x2000, 0x2000, {})]), ["body", "xen", "frames", 0], "is empty"),
    (frames_of([(0x0, 0x3000, {}), (0x2000, 0x4000, {})]), ["body", "xen", "frames", 1], "overlaps frame range 0"),
    (frames_of([(0x7ffff000, 0x80001000, {})]), ["body", "xen", "frames", 0], "0x80000000 is in no memory-map range"),
    (frames_of([(n << 12, (n + 1) << 12, {}) for n in range(0, 130, 2)]), ["body", "xen", "frames"], "at most 64"),
    ([{"start": "0x0", "end": "0x1000", "p2m_type": "p2m_ram_rw"}], ["body", "xen", "frames", 0, "p2m_type"], ""),
])
async def test_refusals(client, frames, loc, says):
    r = await client.post("/api/v1/map", json={"kernel": "xen", "xen": {"frames": frames}})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc and says in r.text, r.text


async def test_frames_are_the_maps_only(client):
    z = await client.post("/api/v1/zap", json={"kernel": "xen", "xen": {"frames": []},
                                               "event": {"kind": "cr0_cd", "value": True}})
    assert z.status_code == 422 and z.json()["errors"][0]["loc"] == ["body", "xen", "frames"]
    r = await client.post("/api/v1/resolve", json={"kernel": "xen", "gpa": "0x1000", "xen": {"frames": []}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "xen", "frames"]
