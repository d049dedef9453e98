"""Static files under content-hashed URLs: ``/assets/<hash>/<path>``, served from memory.

Why: a file whose URL changes whenever its bytes change can be cached for a year
(``Cache-Control: public, max-age=31536000, immutable``) and a new release is still
picked up at once, because the page (served ``no-cache``) names the new URL. ``<hash>``
is the first 16 hex digits of the file's SHA-256; a request naming another hash (an old
release's, or a guess) is a 404 rather than stale or wrong bytes under an immutable URL.
The plain ``/static/<path>`` mount stays for tools and old links, ``no-cache`` (browsers
revalidate with the ETag).

Hashed files are read once and kept in memory with their gzip form (issue 12's soak: a
file response reads through a thread and the gzip middleware compressed app.js again on
every request, which made assets the slowest GET under load). A file that changes on disk
(development) is noticed by its (mtime, size) and re-read; its old URL then 404s.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS_PREFIX = "/assets"
IMMUTABLE = "public, max-age=31536000, immutable"
HASH_LEN = 16
GZIP_MIN_BYTES = 500  # as the app's GZipMiddleware (app/main.py): tiny files go as they are


@dataclass(slots=True)
class Asset:
    """One file's bytes as last read, with the (mtime, size) they were read at."""

    stamp: tuple[int, int]
    digest: str
    body: bytes
    media_type: str
    _gz: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        if self._gz is None:
            self._gz = gzip.compress(self.body, compresslevel=9, mtime=0)
        return self._gz


class AssetHasher:
    """Content hashes (and bytes) of files under `directory`, kept while (mtime, size) hold."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self._root = str(self.directory)
        self._cache: dict[str, Asset] = {}

    def asset(self, path: str) -> Asset | None:
        """The file at `path` (relative to the directory), or None if it is missing or
        outside the directory. A known path costs one stat; the containment check and the
        read happen only when the file is new or changed."""
        try:
            st = os.stat(os.path.join(self._root, path))
        except (OSError, ValueError):
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit.stamp == stamp:
            return hit
        full = (self.directory / path).resolve()
        if not full.is_relative_to(self.directory) or not full.is_file():
            return None
        body = full.read_bytes()
        # as StaticFiles guesses it; Response adds the charset to text/* itself
        media = mimetypes.guess_type(full.name)[0] or "application/octet-stream"
        entry = Asset(stamp, hashlib.sha256(body).hexdigest()[:HASH_LEN], body, media)
        self._cache[path] = entry
        return entry

    def digest(self, path: str) -> str | None:
        a = self.asset(path)
        return a.digest if a else None

    def url(self, path: str, root_path: str = "") -> str:
        """The hashed URL of `path` (relative to the static dir); the plain /static URL
        if the file is missing (so a broken install shows a 404, not a crash)."""
        d = self.digest(path)
        root = root_path.rstrip("/")
        return f"{root}{ASSETS_PREFIX}/{d}/{path}" if d else f"{root}/static/{path}"


class HashedStaticFiles(StaticFiles):
    """Serves ``<hash>/<path>`` from memory if `hash` is the current content hash of `path`:
    ETag = the hash (If-None-Match gives 304), gzip when the client accepts it. The path
    comes normalised by StaticFiles.get_path (no '..' survives)."""

    def __init__(self, hasher: AssetHasher) -> None:
        super().__init__(directory=str(hasher.directory))
        self.hasher = hasher

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405)
        digest, _, rest = path.replace(os.sep, "/").partition("/")
        a = self.hasher.asset(rest) if rest else None
        if a is None or a.digest != digest:
            raise HTTPException(404)
        etag = f'"{a.digest}"'
        headers = {"cache-control": IMMUTABLE, "etag": etag, "vary": "accept-encoding"}
        req = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if etag in (t.strip().removeprefix("W/") for t in req.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers=headers)
        body = a.body
        if len(body) >= GZIP_MIN_BYTES and "gzip" in req.get("accept-encoding", "").lower():
            body = a.gzipped()
            headers["content-encoding"] = "gzip"
        return Response(body, media_type=a.media_type, headers=headers)


class RevalidatedStaticFiles(StaticFiles):
    """The plain /static mount: ``Cache-Control: no-cache`` (revalidate by ETag)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        resp.headers.setdefault("cache-control", "no-cache")
        return resp
