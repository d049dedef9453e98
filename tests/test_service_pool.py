"""No starvation and bounded work: CPU-bound endpoints run in a bounded pool off the event
loop (503 + Retry-After when full, /readyz says so, /healthz stays live), a wall-clock limit
(MEMTYPE_MAX_REQUEST_SECONDS), and replay's work budget (events x eras x vCPUs) refused
before any work with 422 naming MEMTYPE_MAX_REPLAY_WORK."""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest

from app.api.pool import TYPE_TIMEOUT, PoolRefused
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio

RESOLVE = {"kernel": "v6.7", "gpa": "0x1000"}
HEAVY = {"generator": "ovmf", "vcpus": 64}  # ~0.5 s of replay under all eras


def client_for(**settings) -> httpx.AsyncClient:
    app = create_app(Settings(public_url="http://t", **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


async def test_healthz_answers_fast_while_heavy_work_runs():
    async with client_for(pool_size=2) as c:
        lat: list[float] = []
        done = anyio.Event()

        async def heavy():
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(lambda: c.post("/api/v1/replay", json=HEAVY))
            done.set()

        async def probe():
            await anyio.sleep(0.05)
            while not done.is_set():
                t = time.perf_counter()
                r = await c.get("/healthz")
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200
                await anyio.sleep(0.02)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(heavy)
            tg.start_soon(probe)
        assert time.perf_counter() - t0 > 0.3, "the heavy requests were not heavy"
        assert len(lat) >= 5, lat
        # Behaviour, not speed (bench/run.py measures the latency): replays on the event loop
        # would hold every probe for their whole run; in the pool, probes are answered between.
        lat.sort()
        assert lat[len(lat) // 2] < 0.1 and lat[-1] < 1.0, \
            f"/healthz p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms while replays ran"


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


async def test_wall_clock_limit_names_the_setting():
    async with client_for(max_request_seconds=0.15) as c:
        t = time.perf_counter()
        r = await c.post("/api/v1/replay", json=HEAVY)
        took = time.perf_counter() - t
        assert r.status_code == 503, r.text
        assert "MEMTYPE_MAX_REQUEST_SECONDS" in r.json()["detail"] and r.headers["retry-after"]
        assert took < 1.0, took  # the replay itself runs for seconds
        app = c._transport.app  # type: ignore[attr-defined]
        # the abandoned thread keeps its slot until it finishes, then gives it back
        for _ in range(100):
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
    async with client_for() as c:
        r = await c.post("/api/v1/replay", json=body)
        assert r.status_code == 422, r.text[:300]
        j = r.json()
        assert "MEMTYPE_MAX_REPLAY_WORK" in r.text and "events x" in r.text
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
    async with client_for(max_replay_work=10000) as c:
        r = await c.post("/api/v1/replay", json={"trace": line * 10})
        assert r.status_code == 422 and "x 1000 vCPUs" in r.text
        assert r.json()["errors"][0]["loc"][:2] == ["body", "trace"]
