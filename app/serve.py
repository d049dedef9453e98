"""Start uvicorn from ``Settings``: ``python -m app.serve``.

Why this exists: the container's CMD must be in exec form (so uvicorn is PID 1
and gets SIGTERM), and exec form cannot expand ``$MEMTYPE_PORT``.  Reading the
environment here keeps host/port/workers configurable without a shell.

Connection limits and shutdown (all MEMTYPE_* settings):

* ``LIMIT_CONCURRENCY``: connections plus in-flight requests per worker before uvicorn
  answers 503; ``TIMEOUT_KEEP_ALIVE``: idle seconds between requests on one connection;
  ``HEADER_TIMEOUT``: seconds to send a request's headers (app/serve_protocol.py);
  ``H11_MAX_INCOMPLETE_EVENT_SIZE``: largest request head.
* ``TIMEOUT_GRACEFUL_SHUTDOWN`` (10 s): after SIGTERM, no new connections; in-flight
  requests get that long to finish, then their tasks are cancelled and the process exits.
  A second SIGTERM/SIGINT exits at once (uvicorn's force_exit).
* The soft open-files limit is raised to the hard one, so the concurrency cap, not the
  descriptor table, is what refuses connections.
"""

from __future__ import annotations

import resource
import sys

import uvicorn

from app.settings import get_settings


def _raise_nofile() -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # not permitted here: keep what we have
        pass


def main(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run ``app.main:app`` with the configured bind address and workers (CLI flags win)."""
    s = get_settings()
    _raise_nofile()
    # The worker pool's threads compute while the event loop waits for the GIL; a 1 ms
    # switch interval (default 5 ms) lets the loop in five times as often, which keeps
    # /healthz well under 100 ms while every pool thread is busy (app/api/pool.py).
    sys.setswitchinterval(0.001)
    uvicorn.run(
        "app.main:app",
        host=host or s.host,
        port=port or s.port,
        workers=workers or s.workers,
        log_level=s.log_level,
        root_path=s.root_path,
        # X-Forwarded-For/-Proto are honoured only from the addresses in
        # MEMTYPE_FORWARDED_ALLOW_IPS (empty: from nobody).
        proxy_headers=bool(s.forwarded_allow_ips),
        forwarded_allow_ips=s.forwarded_allow_ips or None,
        # No "server: uvicorn": the stack is nobody's business. Date stays (RFC 9110).
        server_header=False,
        date_header=True,
        # The app writes one JSON access line per request (app/api/middleware.py).
        access_log=False,
        http="app.serve_protocol:GuardedH11Protocol",
        limit_concurrency=s.limit_concurrency,
        timeout_keep_alive=s.timeout_keep_alive,
        h11_max_incomplete_event_size=s.h11_max_incomplete_event_size,
        timeout_graceful_shutdown=s.timeout_graceful_shutdown,
    )


if __name__ == "__main__":
    main()
