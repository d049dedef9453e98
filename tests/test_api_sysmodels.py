"""The AMD, TDX and Xen answers have response models (issue 14): every answer reads back
through its model byte for byte, and the OpenAPI document lists the models."""

from __future__ import annotations

import pytest

from app.api import schemas as s
from tests.api_snapshot import systems

pytestmark = pytest.mark.anyio


def model_for(path: str, j: dict) -> type[s.Out]:
    kind = path.rsplit("/", 1)[-1]
    table = {
        ("resolve", "kvm-amd"): s.SvmResolveResponse, ("zap", "kvm-amd"): s.SvmZapResponse,
        ("resolve", "kvm-tdx"): s.TdxResolveResponse, ("zap", "kvm-tdx"): s.ZapResponse,
        ("resolve", "xen"): s.XenResolveResponse, ("map", "kvm-amd"): s.AmdMapResponse,
        ("diff", None): s.SystemDiffResponse, ("map", "kvm-tdx"): s.TdxMapResponse,
        ("map", "xen"): s.XenMapResponse, ("zap", "xen"): s.XenZapResponse,
    }
    return table[(kind, None if kind == "diff" else j.get("system", "kvm-tdx"))]


async def test_every_system_answer_reads_back_through_its_model(client):
    n = 0
    for key, _method, path, body in systems():
        if "format=text" in path:
            continue
        r = await client.post(path, json=body)
        assert r.status_code == 200, (key, r.text)
        model = model_for(path, r.json())
        assert model.model_validate(r.json()).model_dump_json() == r.text, key
        n += 1
    assert n > 100


async def test_openapi_lists_the_system_models(client):
    doc = (await client.get("/openapi.json")).json()
    names = set(doc["components"]["schemas"])
    for m in (s.SvmResolveResponse, s.SvmZapResponse, s.TdxResolveResponse, s.XenResolveResponse,
              s.AmdMapResponse, s.TdxMapResponse, s.XenMapResponse, s.XenZapResponse, s.SystemDiffResponse):
        assert m.__name__ in names, m
    resolve = doc["paths"]["/api/v1/resolve"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {x["$ref"].rsplit("/", 1)[-1] for x in resolve["anyOf"]}
    assert refs == {"ResolveResponse", "SvmResolveResponse", "TdxResolveResponse", "XenResolveResponse"}


async def test_system_members_match_the_model_defaults():
    assert s.SYSTEMS == ("kvm-intel", "kvm-amd", "kvm-tdx", "xen")
    for m, want in ((s.SvmResolveResponse, "kvm-amd"), (s.SvmZapResponse, "kvm-amd"),
                    (s.TdxResolveResponse, "kvm-tdx"), (s.XenResolveResponse, "xen")):
        assert m.model_fields["system"].default == want
