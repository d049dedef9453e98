"""Settings come from MEMTYPE_* variables and reject values that cannot work.

Why: the container and scripts/serve configure the service only through the
environment, so a typo'd or nonsensical value must fail at startup, not later.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app import serve
from app.settings import REPO_ROOT, Settings, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """Drop ambient MEMTYPE_* variables and the settings cache around each test."""
    for name in list(os.environ):
        if name.startswith("MEMTYPE_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults() -> None:
    s = Settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.max_body_bytes == 256 * 1024
    assert s.max_trace_events == 100_000
    assert s.max_trace_bytes == 4 * 1024 * 1024
    assert s.log_level == "info"
    assert s.root_path == ""
    assert s.root == REPO_ROOT == Path(__file__).resolve().parent.parent


def test_default_root_holds_templates_and_static() -> None:
    s = Settings()
    assert s.templates_dir.is_dir()
    assert s.static_dir.is_dir()


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "MEMTYPE_HOST": "0.0.0.0",
        "MEMTYPE_PORT": "9001",
        "MEMTYPE_WORKERS": "3",
        "MEMTYPE_MAX_BODY_BYTES": "1024",
        "MEMTYPE_MAX_TRACE_EVENTS": "10",
        "MEMTYPE_MAX_TRACE_BYTES": "2048",
        "MEMTYPE_LOG_LEVEL": "debug",
        "MEMTYPE_ROOT_PATH": "/memtype",
        "MEMTYPE_ROOT": str(tmp_path),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = get_settings()
    assert (s.host, s.port, s.workers) == ("0.0.0.0", 9001, 3)
    assert (s.max_body_bytes, s.max_trace_events, s.max_trace_bytes) == (1024, 10, 2048)
    assert (s.log_level, s.root_path, s.root) == ("debug", "/memtype", tmp_path)
    assert s.static_dir == tmp_path / "static"


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("MEMTYPE_PORT", "9002")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().port == 9002


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEMTYPE_WORKERS", "0"),
        ("MEMTYPE_WORKERS", "-1"),
        ("MEMTYPE_PORT", "0"),
        ("MEMTYPE_PORT", "70000"),
        ("MEMTYPE_PORT", "http"),
        ("MEMTYPE_MAX_BODY_BYTES", "0"),
        ("MEMTYPE_LOG_LEVEL", "verbose"),
    ],
)
def test_invalid_values_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_serve_passes_settings_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """app.serve (the container CMD) must honour MEMTYPE_* without a shell."""
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setenv("MEMTYPE_HOST", "0.0.0.0")
    monkeypatch.setenv("MEMTYPE_PORT", "8123")
    monkeypatch.setenv("MEMTYPE_WORKERS", "2")
    serve.main()
    (args, kw), = calls
    assert args == ("app.main:app",)
    assert (kw["host"], kw["port"], kw["workers"]) == ("0.0.0.0", 8123, 2)
    assert kw["proxy_headers"] is False
