"""No starvation and bounded work: CPU-bound endpoints run in a bounded pool off the event
loop (503 + Retry-After when full, /readyz says so, /healthz stays live), a wall-clock limit
(MEMTYPE_MAX_REQUEST_SECONDS), and replay's work budget (events x eras x vCPUs) refused
before any work with 422 naming MEMTYPE_MAX_REPLAY_WORK."""

from __future__ import annotations

import re
import threading

import anyio
import httpx
import pytest

from app.api.pool import TYPE_TIMEOUT, PoolRefused
from app.kvm import replay as replay_core
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio

RESOLVE = {"kernel": "v6.7", "gpa": "0x1000"}


def client_for(**settings) -> httpx.AsyncClient:
    app = create_app(Settings(public_url="http://t", **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


async def test_healthz_answers_while_heavy_work_runs(monkeypatch):
    """Behaviour, not speed (bench/run.py measures the latency): two replays are held in
    the pool at a gate, and /healthz answers again and again meanwhile; work on the event
    loop would hold every probe until the gate opened."""
    gate = threading.Event()
    real = replay_core.replay_all
    held = []

    def blocked(*args, **kwargs):
        held.append(1)
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay_core, "replay_all", blocked)
    async with client_for(pool_size=2) as c:
        statuses: list[int] = []

        async def heavy():
            r = await c.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 1})
            statuses.append(r.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(heavy)
            for _ in range(200):  # both replays reach the gate
                if len(held) == 2:
                    break
                await anyio.sleep(0.01)
            try:
                probes = [(await c.get("/healthz")).status_code for _ in range(5)]
                assert len(held) == 2 and not gate.is_set() and statuses == []  # still running
            finally:
                gate.set()
        assert probes == [200] * 5
        assert statuses == [200, 200]


async def test_full_pool_is_503_with_retry_after_and_readyz_says_so():
    async with client_for(pool_size=1, pool_queue=0) as c:
        app = c._transport.app  # type: ignore[attr-defined]
        gate = threading.Event()
        assert (await c.get("/readyz")).status_code == 200
        async with anyio.create_task_group() as tg:
            tg.start_soon(app.state.pool.run, lambda: gate.wait(5))
            await anyio.sleep(0.05)
            r = await c.post("/api/v1/resolve", json=RESOLVE)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "MEMTYPE_POOL_SIZE" in r.json()["detail"]
            ready = await c.get("/readyz")
            assert ready.status_code == 503 and ready.headers["retry-after"]
            assert (await c.get("/healthz")).status_code == 200  # liveness is not readiness
            gate.set()
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.post("/api/v1/resolve", json=RESOLVE)).status_code == 200


async def test_queue_waits_instead_of_refusing():
    async with client_for(pool_size=1, pool_queue=8) as c:
        rs = []
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                async def one():
                    rs.append(await c.post("/api/v1/resolve", json=RESOLVE))
                tg.start_soon(one)
        assert [r.status_code for r in rs] == [200] * 6


async def test_wall_clock_limit_names_the_setting(monkeypatch):
    """The 503 comes while the work still runs (its thread is held at a gate, so no clock
    decides this), and the abandoned thread gives its slot back once it finishes."""
    gate = threading.Event()
    real = replay_core.replay_all

    def held(*args, **kwargs):
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay_core, "replay_all", held)
    async with client_for(max_request_seconds=0.15) as c:
        app = c._transport.app  # type: ignore[attr-defined]
        try:
            r = await c.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 1})
            assert r.status_code == 503, r.text
            assert "MEMTYPE_MAX_REQUEST_SECONDS" in r.json()["detail"] and r.headers["retry-after"]
            assert app.state.pool.admitted == 1  # answered before the work ended: it still holds its slot
        finally:
            gate.set()
        for _ in range(200):
            if app.state.pool.admitted == 0:
                break
            await anyio.sleep(0.05)
        assert app.state.pool.admitted == 0


async def test_timeout_while_waiting_frees_the_slot():
    async with client_for(pool_size=1, pool_queue=4, max_request_seconds=0.1) as c:
        app = c._transport.app  # type: ignore[attr-defined]
        gate = threading.Event()
        async with anyio.create_task_group() as tg:
            async def blocker():
                with pytest.raises(PoolRefused) as ex:
                    await app.state.pool.run(lambda: gate.wait(2))
                assert ex.value.type == TYPE_TIMEOUT
            tg.start_soon(blocker)
            await anyio.sleep(0.02)
            r = await c.post("/api/v1/resolve", json=RESOLVE)  # waits behind the blocker, times out
            assert r.status_code == 503
            gate.set()
        for _ in range(40):
            if app.state.pool.admitted == 0:
                break
            await anyio.sleep(0.05)
        assert app.state.pool.admitted == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"generator": "ovmf", "vcpus": 1024}, "vcpus"),
    ({"generator": "seabios", "vcpus": 1024, "machine": "pc", "memory": "8G"}, "vcpus"),
    ({"vcpus": 1024, "events": [{"vcpu": 0, "event": {"kind": "cr0_cd", "value": True}}] * 6000}, "events"),
    ({"trace": "".join(f"vcpu {i % 1000} cr0 cd=1\nvcpu {i % 1000} cr0 cd=0 nw=0\n" for i in range(3000))}, "trace"),
])
async def test_replay_work_budget_refused_before_work(body, field, monkeypatch):
    """Refused before any trace is built or replayed (behaviour, not a timing: CI's loaded
    cores made a 1 s bound flaky)."""
    import app.api.replay as api_replay

    def no_work(*_a, **_kw):
        raise AssertionError("the budget check let the work start")

    monkeypatch.setattr(api_replay, "make_trace", no_work)
    monkeypatch.setattr(api_replay.rp, "replay_all", no_work)
    async with client_for(max_replay_work=20_000) as c:
        r = await c.post("/api/v1/replay", json=body)
        assert r.status_code == 422, r.text[:300]
        j = r.json()
        assert "MEMTYPE_MAX_REPLAY_WORK" in r.text and "vCPUs) x 6 eras" in r.text
        assert j["errors"][0]["loc"][:2] == ["body", field]


async def test_replay_budget_is_a_setting():
    async with client_for(max_replay_work=1000) as c:
        r = await c.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 8})
        assert r.status_code == 422 and "at most 1000 (MEMTYPE_MAX_REPLAY_WORK)" in r.text
        r = await c.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 1, "kernels": ["v6.7"]})
        assert r.status_code == 200, r.text[:300]


async def test_pooled_endpoints_keep_their_schema(client):
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/resolve"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ResolveRequest")
    assert "503" in op["responses"] and "format" in [p["name"] for p in op.get("parameters", [])]
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]


async def test_replay_budget_counts_qemu_thread_names_in_captures():
    line = "CPU 999/KVM-1000 [000] 1.000000: kvm_msr: msr_write 2ff = 0x0\n"
    async with client_for(max_replay_work=5000) as c:
        r = await c.post("/api/v1/replay", json={"trace": line * 10})
        assert r.status_code == 422 and "(10 events + 1000 vCPUs) x 6 eras = 6060 units" in r.text
        assert r.json()["errors"][0]["loc"][:2] == ["body", "trace"]


async def test_replay_budget_counts_events_and_vcpus_once_each():
    """The work measure is (events + vCPUs) x eras: a boot's cost grows with its events,
    not with events times vCPUs (a 192-vCPU OVMF boot, 30,112 events, was refused as 35
    million units before). The boot's event count is read from a refusal, then the
    boundary: exactly the budget is accepted, one unit less refused."""
    body = {"generator": "ovmf", "vcpus": 2, "kernels": ["v6.7", "v6.16"]}
    async with client_for(max_replay_work=1) as c:
        r = await c.post("/api/v1/replay", json=body)
    m = re.search(r"\((\d+) events \+ 2 vCPUs\) x 2 eras = (\d+) units", r.text)
    assert r.status_code == 422 and m, r.text[:300]
    events, work = int(m[1]), int(m[2])
    assert work == (events + 2) * 2 and events > 100
    async with client_for(max_replay_work=work) as c:
        assert (await c.post("/api/v1/replay", json=body)).status_code == 200
    async with client_for(max_replay_work=work - 1) as c:
        assert (await c.post("/api/v1/replay", json=body)).status_code == 422
    async with client_for() as c:  # the default admits a 256-vCPU OVMF boot under all eras
        r = await c.post("/api/v1/replay", json={"generator": "ovmf", "vcpus": 256})
        assert r.status_code == 200, r.text[:300]
