"""Static files under content-hashed URLs: ``/assets/<hash>/<path>``.

Why: a file whose URL changes whenever its bytes change can be cached for a year
(``Cache-Control: public, max-age=31536000, immutable``) and a new release is still
picked up at once, because the page (served ``no-cache``) names the new URL. ``<hash>``
is the first 16 hex digits of the file's SHA-256; a request naming another hash (an old
release's, or a guess) is a 404 rather than stale or wrong bytes under an immutable URL.
The plain ``/static/<path>`` mount stays for tools and old links, ``no-cache`` (browsers
revalidate with the ETag).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS_PREFIX = "/assets"
IMMUTABLE = "public, max-age=31536000, immutable"
HASH_LEN = 16


class AssetHasher:
    """Content hashes of files under `directory`, cached by (path, mtime, size)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}

    def digest(self, path: str) -> str | None:
        full = (self.directory / path).resolve()
        if not full.is_relative_to(self.directory) or not full.is_file():
            return None
        st = full.stat()
        key = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit and hit[0] == key:
            return hit[1]
        d = hashlib.sha256(full.read_bytes()).hexdigest()[:HASH_LEN]
        self._cache[path] = (key, d)
        return d

    def url(self, path: str, root_path: str = "") -> str:
        """The hashed URL of `path` (relative to the static dir); the plain /static URL
        if the file is missing (so a broken install shows a 404, not a crash)."""
        d = self.digest(path)
        root = root_path.rstrip("/")
        return f"{root}{ASSETS_PREFIX}/{d}/{path}" if d else f"{root}/static/{path}"


class HashedStaticFiles(StaticFiles):
    """Serves ``<hash>/<path>`` if `hash` is the current content hash of `path`."""

    def __init__(self, hasher: AssetHasher) -> None:
        super().__init__(directory=str(hasher.directory))
        self.hasher = hasher

    async def get_response(self, path: str, scope: Scope) -> Response:
        digest, _, rest = path.replace(os.sep, "/").partition("/")
        if not rest or self.hasher.digest(rest) != digest:
            raise HTTPException(404)
        resp = await super().get_response(rest, scope)
        if resp.status_code in (200, 304):
            resp.headers["cache-control"] = IMMUTABLE
        return resp


class RevalidatedStaticFiles(StaticFiles):
    """The plain /static mount: ``Cache-Control: no-cache`` (revalidate by ETag)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        resp.headers.setdefault("cache-control", "no-cache")
        return resp
