"""Start uvicorn from ``Settings``: ``python -m app.serve``.

Why this exists: the container's CMD must be in exec form (so uvicorn is PID 1
and gets SIGTERM), and exec form cannot expand ``$MEMTYPE_PORT``.  Reading the
environment here keeps host/port/workers configurable without a shell.
"""

from __future__ import annotations

import uvicorn

from app.settings import get_settings


def main() -> None:
    """Run ``app.main:app`` with the configured bind address and workers."""
    s = get_settings()
    uvicorn.run(
        "app.main:app",
        host=s.host,
        port=s.port,
        workers=s.workers,
        log_level=s.log_level,
        root_path=s.root_path,
        # Only trust X-Forwarded-* when a proxy is known to set them; none is
        # assumed here.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
