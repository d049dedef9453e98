"""Start uvicorn from ``Settings``: ``python -m app.serve``.

Why this exists: the container's CMD must be in exec form (so uvicorn is PID 1
and gets SIGTERM), and exec form cannot expand ``$MEMTYPE_PORT``.  Reading the
environment here keeps host/port/workers configurable without a shell.
"""

from __future__ import annotations

import uvicorn

from app.settings import get_settings


def main(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run ``app.main:app`` with the configured bind address and workers (CLI flags win)."""
    s = get_settings()
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
    )


if __name__ == "__main__":
    main()
