"""The CLI and permalinks for AMD/TDX zap and Xen resolve/zap/diff (issue 14).

The CLI prints the same text as the API's ?format=text for the same state (the permalink
it prints is the state), and a Xen state round-trips through the long and short links.
"""

from __future__ import annotations

import pytest

from app.cli import main
from app.permalink import decode, encode, request_body, short_path, short_query
from app.render import WIDTH

pytestmark = pytest.mark.anyio


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def link_of(text: str) -> str:
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("Permalink"))
    out = []
    for line in lines[i + 1:]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return "".join(out)


CASES = [
    ("zap", ["--kernel", "6.8", "--vendor", "amd", "--ncdma", "1", "--cdnw-quirk", "0", "--event", "cr0_cd",
             "--event-value", "1"]),
    ("zap", ["--kernel", "5.2", "--vendor", "amd", "--ncdma", "1", "--event", "mtrr_write", "--event-msr", "0x2ff",
             "--event-value", "0x806"]),
    ("zap", ["--kernel", "6.16", "--vmtype", "tdx", "--event", "noncoherent_dma", "--event-value", "1"]),
    ("resolve", ["--kernel", "xen", "--gpa", "0xfd000000", "--xen-iommu", "1", "--xen-pci", "1",
                 "--xen-p2m", "mmio_direct"]),
    ("resolve", ["--kernel", "xen-4.19", "--gpa", "0x200000", "--xen-iommu", "1", "--xen-order", "9",
                 "--xen-pinned", "0x200-0x3ff:WC", "--mtrr", "ovmf"]),
    ("zap", ["--kernel", "xen", "--xen-io", "1", "--mtrr", "ovmf", "--event", "mtrr_write", "--event-msr", "0x2ff",
             "--event-value", "0x806"]),
    ("zap", ["--kernel", "xen-4.19", "--event", "passthrough_attach", "--event-value", "io"]),
    ("zap", ["--kernel", "xen", "--xen-iommu", "1", "--xen-io", "1", "--event", "cr0_cd", "--event-value", "1"]),
    # the frames come only by --link (no --xen-frames option); the zap must audit them as the API does
    ("zap", ["--link", "http://x/?v=1&view=zap&kernel=xen&event=mtrr_write&event_msr=0x2ff&event_value=0xc00"
             "&deftype=0xc06&xen_iommu=1&xen_io=1&xen_frames=0x100000-0x200000:grant_map_rw"]),
]


@pytest.mark.parametrize("sub, argv", CASES)
async def test_cli_text_is_the_api_text(client, capsys, sub, argv):
    rc, out, err = run(capsys, sub, *argv, "--base-url", "http://testserver")
    assert rc == 0, err
    assert all(len(line) <= WIDTH and line.isascii() for line in out.splitlines())
    link = link_of(out)
    state = decode(link.split("?", 1)[1])
    body = request_body(state)
    r = await client.post(f"/api/v1/{sub}?format=text", json=body)
    assert r.status_code == 200, r.text
    assert out.rstrip("\n") == r.text.rstrip("\n")


@pytest.mark.parametrize("argv, first", [
    (["v6.16", "xen"], "A  v6.16 (kvm-intel)"),
    (["6.8", "v6.7", "--a-vendor", "amd"], "A  AMD 6.8 (kvm-amd)"),
    (["xen-4.19", "6.19", "--b-vendor", "amd"], "A  Xen 4.19 and 4.20 (xen)"),
])
async def test_cli_diff_across_systems(client, capsys, argv, first):
    rc, out, err = run(capsys, "diff", *argv, "--base-url", "http://testserver")
    assert rc == 0, err
    assert out.splitlines()[2] == first
    state = decode(link_of(out).split("?", 1)[1])
    r = await client.post("/api/v1/diff?format=text", json=request_body(state))
    assert out.rstrip("\n") == r.text.rstrip("\n")


async def test_kvm_settings_with_xen_one_refusal(client, capsys):
    """The CLI and the API refuse KVM settings with a Xen kernel with one message and one
    rule (app.xen.resolve.check_no_kvm_settings), at their own place (--kernel / vm)."""
    rc, out, err = run(capsys, "resolve", "--kernel", "xen", "--ncdma", "1")
    r = await client.post("/api/v1/resolve", json={"kernel": "xen", "gpa": "0x0", "vm": {"noncoherent_dma": True}})
    assert r.status_code == 422 and rc == 2
    e = r.json()["errors"][0]
    assert (e["loc"], e["msg"], e["rule"]) == (["body", "vm"], "KVM settings given with a Xen kernel",
                                               "of the VM's settings Xen reads only MAXPHYADDR and the memory map; "
                                               "a domain's facts are given as Xen facts")
    assert f"kernel: {e['msg']} ({e['rule']})" in " ".join(err.split()), err


@pytest.mark.parametrize("argv, says", [
    (["zap", "--kernel", "xen", "--event", "noncoherent_dma", "--event-value", "1"], "noncoherent_dma is a KVM"),
    (["zap", "--kernel", "v6.7", "--event", "passthrough_attach"], "passthrough_attach is a Xen event"),
    (["resolve", "--kernel", "v6.7", "--xen-iommu", "1"], "--xen-* options given with a KVM kernel"),
    (["resolve", "--kernel", "xen", "--ncdma", "1"], "KVM settings given with a Xen kernel"),
    (["zap", "--kernel", "6.16", "--vmtype", "tdx", "--event", "cr0_cd", "--event-value", "1"], "CR0.CD := 1 in a TD"),
    (["zap", "--kernel", "6.8", "--vmtype", "tdx", "--event", "cr0_cd", "--event-value", "0"], "no TDX VMs"),
    (["diff", "xen", "v6.7", "--a-vendor", "amd"], "Xen is modelled on VT-x"),
    (["diff", "4.10", "v6.7", "--a-vendor", "amd"], "ignores guest PAT writes"),
    (["resolve", "--kernel", "xen", "--xen-pinned", "0x1-0x2"], "xen_pinned"),
])
def test_cli_refusals(capsys, argv, says):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert says in " ".join(err.split()), err
    assert all(len(line) <= WIDTH for line in err.splitlines())


@pytest.mark.parametrize("query", [
    "v=1&kernel=xen&gpa=0xfd000000&xen_iommu=1&xen_pci=1&xen_p2m=mmio_direct&xen_order=9&xen_mfn=0x200",
    "v=1&view=zap&kernel=xen-4.19&event=passthrough_detach&event_value=pci&xen_iommu=1&xen_pci=1",
    "v=1&view=diff&kernel=6.8&vs=xen&vendor=amd",
    "v=1&view=diff&kernel=xen&vs=6.19&vs_vendor=amd",
    "v=1&kernel=xen&xen_vcpu=0&xen_pinned=0x100-0x1ff:UC-,0x400-0x4ff:WB&xen_special=all&xen_host_mtrr=WC",
])
def test_xen_links_round_trip(query):
    state = decode(query)
    assert encode(state) == query
    assert decode(short_query(short_path(state)[2:])) == state


async def test_api_permalinks_carry_the_xen_facts(client):
    body = {"kernel": "xen", "gpa": "0xfd000000", "xen": {"iommu": True, "pci_devices": True,
                                                          "p2m_type": "mmio_direct"}}
    j = (await client.post("/api/v1/resolve", json=body)).json()
    q = j["permalink"].split("?", 1)[1]
    assert q == "v=1&kernel=xen&gpa=0xfd000000&xen_iommu=1&xen_pci=1&xen_p2m=mmio_direct"
    p = (await client.post("/api/v1/permalink", json=body)).json()
    assert p["query"] == q
    again = (await client.post("/api/v1/resolve", json=request_body(decode(q)))).json()
    assert again == j
    diff = (await client.post("/api/v1/diff", json={"a": "6.8", "a_vendor": "amd", "b": "xen"})).json()
    assert diff["permalink"].endswith("?v=1&view=diff&kernel=6.8&vs=xen&vendor=amd")


@pytest.mark.parametrize("body, loc", [
    ({"kernel": "xen", "xen": {"pci_devices": True}}, ["body", "xen", "pci_devices"]),
    ({"kernel": "v6.7", "xen": {}}, ["body", "xen"]),
    ({"kernel": "v6.7", "event": {"kind": "passthrough_attach"}}, ["body", "event", "kind"]),
    ({"kernel": "xen", "mmio": True}, ["body", "mmio"]),
    ({"kernel": "v6.7", "vs": "xen-4.0"}, ["body", "vs"]),
])
async def test_permalink_refusals(client, body, loc):
    r = await client.post("/api/v1/permalink", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == loc


@pytest.mark.parametrize(("link", "field"), [
    ("http://h/?v=1&xen_frames=0x0-0x1000", "xen"),
    ("http://h/?v=1&private_ranges=0x0-0x1000", "private_ranges"),
    ("http://h/?v=1&kernel=xen&private_ranges=0x0-0x1000", "private_ranges"),
    ("http://h/?v=1&kernel=xen&vmtype=tdx&private_ranges=0x0-0x1000", "kernel"),
])
@pytest.mark.parametrize("command", [["resolve"], ["zap", "--event", "cr0_cd", "--event-value", "1"]])
def test_an_input_of_another_system_is_refused_not_echoed(link, field, command, capsys):
    """A link's input for another system is refused, as the API refuses it (it was
    answered without it and echoed back in the answer's link)."""
    assert main([*command, "--link", link]) == 2
    err = capsys.readouterr().err
    assert f"memtype-explorer: {field}:" in err, err
