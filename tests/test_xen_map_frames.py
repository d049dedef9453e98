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


async def test_resolve_takes_no_frames(client):
    r = await client.post("/api/v1/resolve", json={"kernel": "xen", "gpa": "0x1000", "xen": {"frames": []}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "xen", "frames"]


ZAP_MTRR = {"def_type": "0xc06", "variable": [{"base": "0x80000000", "mask": "0x3fff80000800"}]}
FRAMES_NOTE = ("frames: their p2m types, mmio_ro and special hold before and after (no event here changes them); "
               "epte_get_entry_emt() answers mmio_ro, special, grant and foreign frames before the pinned and MTRR "
               "tests, so an MTRR or pinned change leaves their EMT alone (excess if invalidated)")


def rngs(j, key):
    return [(r["start"], r["end"]) for r in j[key]]


async def test_zap_takes_the_maps_frames(client):
    """An MTRR default-type write (WB -> UC) in a domain with I/O resources: Xen invalidates
    every mapped range (memory_type_changed). Without frames every ram range below 2G and
    4-6G changes WB -> UC (needed; the fixed range below 1M stays WB, and the mmio ranges
    are UC either way: excess). A grant frame range and an mmio_ro one answer before the
    MTRR test (WB|IPAT, UC|IPAT): their EMT is kept, so they move from needed to excess."""
    body = {"kernel": "xen", "xen": {"io_resources": True}, "vcpu": {"mtrr": {**ZAP_MTRR, "fixed": [
        "0x0606060606060606"] * 11}}, "event": {"kind": "mtrr_write", "msr": "0x2ff", "value": "0xc00"}}
    plain = (await client.post("/api/v1/zap", json=body)).json()
    assert rngs(plain, "needed") == [("0x100000", "0x80000000"), ("0x100000000", "0x180000000")]
    frames = frames_of([(0x100000, 0x200000, {"p2m_type": "grant_map_rw"}), (0x200000, 0x201000, {"mmio_ro": True})])
    r = await client.post("/api/v1/zap", json={**body, "xen": {"io_resources": True, "frames": frames}})
    assert r.status_code == 200, r.text
    j = r.json()
    assert rngs(j, "needed") == [("0x201000", "0x80000000"), ("0x100000000", "0x180000000")]
    assert rngs(j, "excess") == [("0x0", "0x201000"), ("0xfd000000", "0xfe000000"), ("0x800000000", "0x810000000")]
    assert rngs(j, "invalidated") == rngs(plain, "invalidated") and j["stale"] == []
    assert j["notes"] == [FRAMES_NOTE] and plain["notes"] == []
    assert j["permalink"] == plain["permalink"] + "&xen_frames=0x100000-0x200000:grant_map_rw,0x200000-0x201000:mmio_ro"
    text = (await client.post("/api/v1/zap?format=text", json={**body, "xen": {"io_resources": True,
                                                                                "frames": frames}})).text
    assert "  0x201000     0x80000000   ram   WB      UC\n" in text and "0x100000 " not in text.split("Note")[0]
    empty = (await client.post("/api/v1/zap", json={**body, "xen": {"io_resources": True, "frames": []}})).json()
    assert empty == plain


async def test_zap_frames_under_a_passthrough_attach(client):
    """Attaching an I/O range to a domain with neither IOMMU nor I/O: ram goes from WB|IPAT
    (the no-passthrough test) to the guest MTRR's WB with IPAT clear, so it is needed; an
    mmio_direct frame range over ram is UC before and after (the no-passthrough test skips
    mmio_direct), a grant range WB|IPAT before and after: neither is needed any more."""
    body = {"kernel": "xen", "vcpu": {"mtrr": WB_MTRR}, "event": {"kind": "passthrough_attach", "resource": "io"}}
    plain = (await client.post("/api/v1/zap", json=body)).json()
    frames = frames_of([(0x300000, 0x400000, {"p2m_type": "mmio_direct"}),
                        (0x100000000, 0x100200000, {"p2m_type": "grant_map_ro"})])
    j = (await client.post("/api/v1/zap", json={**body, "xen": {"frames": frames}})).json()
    assert ("0x0", "0x80000000") in rngs(plain, "needed")
    assert rngs(j, "needed") == [("0x0", "0x300000"), ("0x400000", "0x80000000"), ("0xfd000000", "0xfe000000"),
                                 ("0x100200000", "0x180000000")]
    changed = {(c["start"], c["end"]): (c["before"]["notation"], c["after"]["notation"]) for c in j["changes"]}
    assert changed[("0x0", "0x300000")] == ("WB!", "WB")


async def test_zap_frames_refused_as_the_maps(client):
    body = {"kernel": "xen", "event": {"kind": "cr0_cd", "value": True}}
    r = await client.post("/api/v1/zap", json={**body, "xen": {"frames": frames_of([(0x7ffff000, 0x80001000, {})])}})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0] == {
        "loc": ["body", "xen", "frames", 0], "msg": "0x80000000 is in no memory-map range", "type": "rule_violation",
        "rule": "a frame outside the memory map has no p2m entry (the map's holes)"}


async def test_one_state_one_link_whatever_the_frames_order(client):
    """The zap writes its link from the frames as given, the permalink endpoint from the
    frames check_frames sorted: the link codec orders them (app.permalink._frames_text), so
    both are one string, and a TD's private_ranges likewise."""
    frames = frames_of([(0x200000, 0x201000, {"mmio_ro": True}), (0x100000, 0x200000, {"p2m_type": "grant_map_rw"})])
    body = {"kernel": "xen", "xen": {"io_resources": True, "frames": frames}, "vcpu": {}}
    zap = (await client.post("/api/v1/zap", json={**body, "event": {"kind": "cr0_cd", "value": True}})).json()
    link = (await client.post("/api/v1/permalink", json={**body, "gpa": "0x0", "view": "zap",
                                                         "event": {"kind": "cr0_cd", "value": True}})).json()
    assert zap["permalink"] == link["url"]
    assert link["query"].endswith("&xen_frames=0x100000-0x200000:grant_map_rw,0x200000-0x201000:mmio_ro")
    from app.permalink import LinkState, encode
    from app.xen.map import FrameRange

    a, b = FrameRange(0x100000, 0x200000, mmio_ro=True), FrameRange(0x300000, 0x301000, special=True)
    assert encode(LinkState("xen", xen_frames=(b, a))) == encode(LinkState("xen", xen_frames=(a, b)))
    assert encode(LinkState(private_ranges=((0x2000, 0x3000), (0x0, 0x1000)))).endswith(
        "private_ranges=0x0-0x1000,0x2000-0x3000")
