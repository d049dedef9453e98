"""CPU-bound endpoints run in a bounded thread pool, never on the event loop.

Why: resolve, zap, map, diff, decode (one leaf against every era, or a pasted trace) and
replay are pure-Python computation. Run as ``async def``
they hold the event loop for their whole duration, so ``/healthz`` and every other request
of that worker wait behind them (a container health check with a 3 s timeout then kills a
busy but healthy worker). ``@pooled`` turns such an endpoint (written as a plain ``def``)
into an ``async`` one that hands the call to `WorkPool`:

* at most ``MEMTYPE_POOL_SIZE`` calls compute at once (a semaphore taken in the worker
  thread, so a call that timed out still counts until its thread ends), at most
  ``MEMTYPE_POOL_QUEUE`` more wait; beyond that the request gets
  **503** with ``Retry-After`` at once rather than queueing without bound;
* each call has ``MEMTYPE_MAX_REQUEST_SECONDS`` of wall-clock time (waiting included);
  past it the request gets **503** naming that setting. A Python thread cannot be killed,
  so a call already running finishes in the background and keeps its pool slot until it
  does (so the pool never over-commits); the work budgets (replay's events x eras x
  vCPUs, map's blocks and runs) are what bound how long that can be.

The event loop keeps the GIL often enough (``sys.getswitchinterval()``, 5 ms) for
``/healthz`` and ``/readyz`` to answer while every worker thread is busy. ``/readyz`` is
200 while the pool admits work and 503 when it is full (an orchestrator then routes new
requests to another replica instead of restarting this one, which ``/healthz`` would).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse

from .errors import problem

T = TypeVar("T")

TYPE_BUSY = "urn:memtype-explorer:problem:busy"
TYPE_TIMEOUT = "urn:memtype-explorer:problem:request-timeout"


class PoolRefused(Exception):
    """503: the pool is full, or the call ran out of wall-clock time."""

    def __init__(self, type_: str, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.type, self.detail, self.retry_after = type_, detail, retry_after


class WorkPool:
    def __init__(self, size: int, queue: int, max_seconds: float, retry_after: int = 1) -> None:
        self.size, self.queue, self.max_seconds, self.retry_after = size, queue, max_seconds, retry_after
        # threads for every admitted call; the semaphore lets `size` of them compute at once,
        # also counting calls that timed out but whose thread has not finished
        self.limiter = anyio.CapacityLimiter(size + queue)
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.admitted = 0  # running + waiting + abandoned-but-still-running
        self.running = 0

    @property
    def capacity(self) -> int:
        return self.size + self.queue

    def has_room(self) -> bool:
        return self.admitted < self.capacity

    def stats(self) -> dict[str, int]:
        return {"size": self.size, "queue": self.queue, "admitted": self.admitted, "running": self.running}

    async def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self.admitted >= self.capacity:
                raise PoolRefused(TYPE_BUSY, f"all {self.size} workers are busy and {self.queue} requests wait "
                                  "(MEMTYPE_POOL_SIZE, MEMTYPE_POOL_QUEUE); retry later", self.retry_after)
            self.admitted += 1
        state = {"started": False, "abandoned": False}

        def job() -> T:
            with self._slots:
                with self._lock:
                    if state["abandoned"]:
                        raise TimeoutError  # timed out while waiting: never run
                    state["started"] = True
                    self.running += 1
                try:
                    return fn()
                finally:
                    with self._lock:
                        self.running -= 1
                        self.admitted -= 1

        try:
            with anyio.fail_after(self.max_seconds):
                return await anyio.to_thread.run_sync(job, abandon_on_cancel=True, limiter=self.limiter)
        except TimeoutError:
            raise PoolRefused(TYPE_TIMEOUT, f"the request took longer than {self.max_seconds:g} s "
                              "(MEMTYPE_MAX_REQUEST_SECONDS)", self.retry_after) from None
        finally:
            with self._lock:
                if not state["started"] and not state["abandoned"]:
                    state["abandoned"] = True  # cancelled or timed out before a thread took it
                    self.admitted -= 1


def pooled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run the (plain ``def``) endpoint `fn` in the app's WorkPool; `fn` must take a
    parameter annotated ``Request`` (named ``_request`` when `fn` itself does not read it).
    FastAPI reads the signature and annotations through ``__wrapped__``, so parameters and
    the OpenAPI schema are `fn`'s own."""

    @functools.wraps(fn)
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        request = next(v for v in kwargs.values() if isinstance(v, Request))
        return await request.app.state.pool.run(functools.partial(fn, *args, **kwargs))

    return endpoint


async def refused_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PoolRefused)
    return problem(503, exc.type, exc.detail, request.url.path, headers={"retry-after": str(exc.retry_after)})

