"""Connection limits and shutdown against a real server (python -m app.serve, a subprocess
on loopback): 200 idle connections do not stop /healthz; a client that never finishes its
headers is closed after MEMTYPE_HEADER_TIMEOUT; /healthz stays fast while replays run; no
server header; SIGTERM drains within MEMTYPE_TIMEOUT_GRACEFUL_SHUTDOWN and a second
SIGTERM exits at once. Bounded: ~200 sockets, a few seconds."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(**env: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    e = {k: v for k, v in os.environ.items() if not k.startswith("MEMTYPE_")}
    e.update({"MEMTYPE_HOST": "127.0.0.1", "MEMTYPE_PORT": str(port), "MEMTYPE_LOG_LEVEL": "warning",
              "PYTHONPATH": str(ROOT)}, **env)
    p = subprocess.Popen([sys.executable, "-m", "app.serve"], cwd=ROOT, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if get(port, "/healthz", timeout=0.5)[0] == 200:
                return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise AssertionError("server did not start: " + (p.communicate()[1] or "")[-2000:])


def get(port: int, path: str, timeout: float = 2.0, method: str = "GET", body: dict | None = None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"content-type": "application/json"} if data else {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def stop(p: subprocess.Popen) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    return p.communicate()[1] or ""


@pytest.fixture(scope="module")
def server():
    p, port = start(MEMTYPE_HEADER_TIMEOUT="1.5", MEMTYPE_POOL_SIZE="2")
    yield port
    err = stop(p)
    assert err.count("Traceback") == 0, err[-3000:]


def test_no_server_header_and_security_headers(server):
    status, headers, _ = get(server, "/healthz")
    assert status == 200 and "server" not in headers and "date" in headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_200_idle_connections_do_not_block_healthz(server):
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", server), timeout=2)
            socks.append(s)
        for s in socks[:50]:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        t = time.perf_counter()
        status, _, body = get(server, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert time.perf_counter() - t < 1.0
        # past the header deadline (1.5 s) the server has closed both kinds
        time.sleep(2.2)
        closed = 0
        for s in socks[:20] + socks[-20:]:
            s.settimeout(1.0)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                closed += 0
        assert closed == 40, f"only {closed} of 40 stale connections were closed"
    finally:
        for s in socks:
            s.close()
    assert get(server, "/healthz")[0] == 200


def test_oversized_request_head_is_refused(server):
    s = socket.create_connection(("127.0.0.1", server), timeout=3)
    try:
        # a head still growing past MEMTYPE_H11_MAX_INCOMPLETE_EVENT_SIZE (16 KiB) is refused
        # without waiting for its end
        data = b""
        try:
            for i in range(8):
                s.sendall(b"X-Big: " + b"a" * 8000 + b"\r\n" if i else b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: refused
        try:
            data = s.recv(200)
        except ConnectionResetError:
            data = b""
        assert data == b"" or data.startswith(b"HTTP/1.1 4"), data
    finally:
        s.close()


def test_healthz_fast_while_replays_run(server):
    heavy = {"generator": "ovmf", "vcpus": 128}  # (long enough for several probes: replays got faster)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get(server, "/api/v1/replay", 30, "POST", heavy)[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    lat = []
    while any(t.is_alive() for t in threads) and len(lat) < 50:
        t0 = time.perf_counter()
        assert get(server, "/healthz")[0] == 200
        lat.append(time.perf_counter() - t0)
        time.sleep(0.02)
    for t in threads:
        t.join(30)
    assert results == [200, 200]
    # Behaviour, not speed: an event loop blocked by a replay would hold every probe for the
    # replay's whole duration (seconds). The < 100 ms figure is measured by bench/run.py
    # (section "api": /healthz under replays), not asserted here on a shared CI machine.
    lat.sort()
    assert len(lat) >= 5 and lat[len(lat) // 2] < 0.1 and lat[-1] < 1.0, \
        f"/healthz p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms over {len(lat)} probes"


def _heavy_in_background(port: int) -> threading.Thread:
    out: list = []

    def go():
        try:
            out.append(get(port, "/api/v1/replay", 30, "POST", {"generator": "ovmf", "vcpus": 128})[0])
        except OSError as e:
            out.append(e)
    t = threading.Thread(target=go, daemon=True)
    t.out = out  # type: ignore[attr-defined]
    t.start()
    time.sleep(0.3)
    return t


def test_sigterm_lets_the_accepted_request_finish_then_exits():
    p, port = start(MEMTYPE_TIMEOUT_GRACEFUL_SHUTDOWN="10")
    try:
        t = _heavy_in_background(port)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(15)
        t.join(5)
        assert t.out == [200], t.out  # type: ignore[attr-defined]  # accepted, so answered, not reset
        assert time.monotonic() - t0 < 12
    finally:
        stop(p)


def test_graceful_timeout_then_exit_and_second_sigterm_is_honoured():
    p, port = start(MEMTYPE_TIMEOUT_GRACEFUL_SHUTDOWN="1")
    try:
        _heavy_in_background(port)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(8)
        assert time.monotonic() - t0 < 6, "did not exit after the graceful-shutdown timeout"
    finally:
        stop(p)
    p, port = start(MEMTYPE_TIMEOUT_GRACEFUL_SHUTDOWN="30")
    try:
        _heavy_in_background(port)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        p.wait(8)
        assert time.monotonic() - t0 < 6, "a second SIGTERM did not end it"
    finally:
        stop(p)
