"""Runtime settings, read from ``MEMTYPE_*`` environment variables.

Why environment variables: the same code runs from ``scripts/serve`` on a dev
box and from the container image, where the Dockerfile sets ``MEMTYPE_HOST``
etc.  Every limit that protects the service from oversized input lives here so
it is visible in one place and can be tuned without a code change.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root (``app/..``): where ``templates/`` and ``static/`` live.
#: They are not package data, so an installed copy of ``app`` (the container's
#: venv) is pointed at them with ``MEMTYPE_ROOT`` or runs from the directory
#: holding them (the Dockerfile's WORKDIR).
REPO_ROOT = Path(__file__).resolve().parent.parent

KiB = 1024
MiB = 1024 * KiB


class Settings(BaseSettings):
    """Service configuration; each field maps to ``MEMTYPE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MEMTYPE_", extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Bind address. Loopback by default: the service has no auth; "
        "the container sets 0.0.0.0 because its port is published explicitly.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(
        1,
        ge=1,
        description="uvicorn worker processes. 1 under an orchestrator (scale by "
        "replicas); a few on a single shared box. 0 would start nothing.",
    )
    max_body_bytes: int = Field(
        256 * KiB,
        ge=1,
        description="Largest accepted request body for ordinary JSON endpoints: "
        "a scenario is a few hundred bytes, so this only stops abuse.",
    )
    max_trace_events: int = Field(
        100_000,
        ge=1,
        description="Most events accepted in one uploaded trace, bounding CPU "
        "time spent replaying it.",
    )
    max_trace_bytes: int = Field(
        4 * MiB,
        ge=1,
        description="Largest uploaded trace body, bounding memory per request.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = (
        Field("info", description="uvicorn log level.")
    )
    root_path: str = Field(
        "",
        description="ASGI root_path when served under a path prefix behind a "
        "reverse proxy (e.g. '/memtype'), so links and /docs resolve.",
    )
    root: Path = Field(
        REPO_ROOT,
        description="Directory holding templates/ and static/ (not shipped in "
        "the Python package).",
    )

    public_url: str = Field(
        "",
        pattern=r"^(https?://[^/?#\s]+(/[^?#\s]*)?)?$",
        description="Absolute base URL that permalinks and preset links are built "
        "from (e.g. 'https://memtype.example.org/memtype'). Empty: "
        "http://HOST:PORT plus ROOT_PATH from these settings, never the request's "
        "Host header (a client could put any name there).",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="Comma-separated proxy addresses whose X-Forwarded-For/-Proto "
        "uvicorn trusts (its forwarded_allow_ips). Empty: forwarded headers are "
        "ignored from everyone.",
    )

    pool_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Worker threads per process for CPU-bound endpoints (resolve, zap, "
        "map, diff, replay): that many run at once, never on the event loop.",
    )
    pool_queue: int = Field(
        64,
        ge=0,
        description="Requests that may wait for a worker thread; beyond POOL_SIZE + "
        "POOL_QUEUE a request gets 503 with Retry-After (and /readyz says 503).",
    )
    max_request_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Wall-clock limit of one CPU-bound request, waiting for a worker "
        "included; past it the answer is 503 naming this setting.",
    )
    max_replay_work: int = Field(
        2_000_000,
        ge=1,
        description="Largest replay accepted, in (events + vCPUs) x eras (an OVMF-like "
        "boot of 256 vCPUs under all eras is about 242,000; a 100,000-event trace under "
        "all eras about 600,000, a few seconds of work at worst); 422 beyond, before any work.",
    )

    limit_concurrency: int = Field(
        2048,
        ge=1,
        description="Open connections plus in-flight requests per worker before uvicorn "
        "answers 503 (the open-files limit is raised above it at start).",
    )
    timeout_keep_alive: int = Field(5, ge=1, le=300, description="Seconds an idle keep-alive connection stays open.")
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a connection has to send a complete request head (after "
        "opening, or after the previous response); slow or silent clients are closed.",
    )
    h11_max_incomplete_event_size: int = Field(
        16 * KiB,
        ge=1 * KiB,
        description="Largest request line plus headers, in bytes (uvicorn/h11); 431/400 beyond.",
    )
    timeout_graceful_shutdown: int = Field(
        10,
        ge=0,
        le=600,
        description="Seconds in-flight requests get after SIGTERM before they are cancelled "
        "and the process exits; a second SIGTERM exits at once.",
    )

    result_cache_size: int = Field(
        4096,
        ge=0,
        description="Answers of resolve/zap/map/diff kept per worker, keyed by the canonical "
        "request (app/api/cache.py); 0 turns the cache off.",
    )

    @property
    def templates_dir(self) -> Path:
        """Jinja2 templates directory."""
        return self.root / "templates"

    @property
    def static_dir(self) -> Path:
        """Static files directory, mounted at /static."""
        return self.root / "static"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once.

    Cached so every request sees the same values and the environment is parsed
    once; tests that change the environment call ``get_settings.cache_clear()``
    or build ``Settings()`` directly.
    """
    return Settings()
