"""Every text output keeps to 72 columns: one test over all renderings (issue 15).

Why one test: the 72-column promise is about the whole tool, not one renderer, and a new
subcommand or `?format=text` endpoint must not slip past it. So the test *discovers* what
to walk: every CLI subcommand from `app.cli.build_parser()` and every API route that takes
the `format` query parameter from the app's OpenAPI schema, and fails if one of them has
no representative inputs here. Inputs: every preset (resolve; zap where it has an event),
every ordered pair of eras (diff), both boot generators and a hand-written trace
(replay), the era list, each subcommand's --help (at COLUMNS=200), and CLI errors; AMD
(vm.vendor amd) and TDX (vm.type tdx) resolves and zaps too.
Each line is also checked to be ASCII without tabs (mail-safe, as app/render.py says).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace

import httpx
import pytest

from app.cli import build_parser, main
from app.kvm.eras import ERAS
from app.permalink import request_body, url
from app.presets import PRESETS
from app.render import WIDTH

ZAP_PRESETS = [p for p in PRESETS.values() if p.state.event is not None]
PAIRS = [(a, b) for a in ERAS for b in ERAS]
TRACE = """vm ncdma on
vcpu 0 cr0 cd=1
vcpu 0 wrmsr 0x2ff 0x006
vcpu 0 wrmsr 0x200 0x80000000
vcpu 0 wrmsr 0x201 0x3fff80000800
vcpu 0 wrmsr 0x2ff 0xc06
vcpu 0 cr0 cd=0
vcpu 1 cr0 cd=1
"""


def cli_runs(trace_file: str) -> dict[str, list[list[str]]]:
    """Representative argument lists per subcommand (0 = success expected, else error)."""
    base = "http://127.0.0.1:8000"
    return {
        "resolve": [
            *(["resolve", "--link", p.url(base)] for p in PRESETS.values()),
            ["resolve", "--kernel", "6.12.78", "--ncdma", "1", "--cd", "1", "--mtrr", "ovmf", "--gpa", "0xfd000000"],
            ["resolve", "--kernel", "v6.7", "--ncdma", "1", "--json"],
            ["resolve", "--kernel", "4.10", "--vendor", "amd", "--cdnw-quirk", "0", "--cd", "1", "--mtrr", "ovmf"],
            ["resolve", "--kernel", "6.19", "--vmtype", "tdx", "--gpa", "0x800000000"],
        ],
        "zap": [
            *(["zap", "--link", url(replace(p.state, view="zap"), base)] for p in ZAP_PRESETS),
        ],
        "diff": [["diff", a, b] for a, b in PAIRS],
        "replay": [
            ["replay", "--preset", "ovmf", "--vcpus", "8"],
            ["replay", "--preset", "seabios", "--vcpus", "16", "--no-ncdma"],
            ["replay", "--trace", trace_file],
        ],
        "eras": [["eras"]],
        "serve": [],  # starts a server: only its --help is text
    }


ERRORS = [
    ["resolve", "--kernel", "3.0"],
    ["resolve", "--pat", "0x2"],
    ["resolve", "--ncdma", "2"],
    ["zap", "--kernel", "v6.7"],
    ["diff", "v4.2", "nope"],
    ["replay", "--trace", "/nonexistent/boot.txt"],
    ["replay", "--preset", "nope"],
    ["resolve", "--kernel", "6.8", "--vmtype", "tdx"],
    ["resolve", "--kernel", "6.16", "--vendor", "amd", "--vmtype", "tdx"],
]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    ap = build_parser()
    for action in ap._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _bodies() -> dict[str, list[dict]]:
    """Representative bodies per `?format=text` endpoint."""
    zaps = [request_body(replace(p.state, view="zap")) for p in ZAP_PRESETS]
    amd = [{**b, "vm": {**b["vm"], "vendor": "amd"}} for b in (PRESETS["ovmf"].request(), PRESETS["mmio"].request())]
    tdx = [{"kernel": "6.16", "gpa": "0x1000", "vm": {"type": "tdx"}, "private": True},
           {"kernel": "6.19", "gpa": "0x800000000", "vm": {"type": "tdx"}}]
    kind_zaps = [{"kernel": k, "vm": {**vm, "noncoherent_dma": True}, "event": ev}
                 for k, vm in (("6.6", {"vendor": "amd"}), ("6.16", {"type": "tdx"}))
                 for ev in ({"kind": "mtrr_write", "msr": "0x200", "value": "0x6"},
                            {"kind": "noncoherent_dma", "value": False})]
    return {
        "/api/v1/resolve": [p.request() for p in PRESETS.values()] + amd + tdx,
        "/api/v1/zap": zaps + kind_zaps,
        "/api/v1/diff": [{"a": a, "b": b} for a, b in PAIRS],
    }


def _bad_lines(source: str, text: str) -> list[str]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if len(line) > WIDTH or not line.isascii() or "\t" in line:
            out.append(f"{source} line {n} ({len(line)} cols): {line!r}")
    return out


async def _api_texts(app) -> list[tuple[str, str]]:
    schema = app.openapi()
    text_paths = {path for path, ops in schema["paths"].items() for op in ops.values()
                  if any(p.get("name") == "format" and p.get("in") == "query" for p in op.get("parameters", []))}
    bodies = _bodies()
    assert text_paths == set(bodies), f"format=text endpoints without inputs here: {text_paths - set(bodies)}"
    out = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for path, reqs in bodies.items():
            assert reqs, path
            for body in reqs:
                r = await c.post(path + "?format=text", json=body)
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), (path, body, r.text)
                out.append((f"POST {path}?format=text {body}", r.text))
    return out


def test_every_text_output_fits_72_columns(api_app, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse would otherwise follow the terminal
    trace = tmp_path / "boot.txt"
    trace.write_text(TRACE)
    subs = _subcommands()
    runs = cli_runs(str(trace))
    assert set(runs) == set(subs), f"subcommands without inputs here: {set(subs) ^ set(runs)}"

    texts: list[tuple[str, str]] = []
    for argv in [["--help"], *([name, "--help"] for name in subs)]:
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 0
        texts.append((" ".join(argv), capsys.readouterr().out))
    for argvs in runs.values():
        for argv in argvs:
            rc = main(argv)
            got = capsys.readouterr()
            assert rc == 0 and got.out.strip(), (argv, got.err)
            texts.append((" ".join(argv), got.out))
    for argv in ERRORS:
        rc = main(argv)
        got = capsys.readouterr()
        assert rc == 2 and got.err.startswith("memtype-explorer: "), (argv, got.err)
        texts.append((" ".join(argv) + " (stderr)", got.err))

    texts += asyncio.run(_api_texts(api_app))

    bad = [b for source, text in texts for b in _bad_lines(source, text)]
    assert not bad, f"{len(bad)} lines break the 72-column rule:\n" + "\n".join(bad[:20])
    assert len(texts) > 100  # the walk really walked
