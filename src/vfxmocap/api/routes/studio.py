"""The web studio: static files (ES modules, vendored libraries) served at `/`.

The studio is a client of the public API like any other; these files hold no data, so they
are served without the API token (the page asks for it and sends it on each API call).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vfxmocap.api.errors import NotFound
from vfxmocap.api.security import PUBLIC_PREFIX

STUDIO_DIR = Path(__file__).resolve().parents[1] / "studio"
# Explicit types: some systems map .js to text/plain, and browsers refuse such modules.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate: an upgrade's files show at once


def studio_file(relative: str) -> FileResponse:
    path = (STUDIO_DIR / relative).resolve()
    if not path.is_relative_to(STUDIO_DIR) or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise NotFound(f"the studio has no file {relative!r}", hint="Open the studio at /.")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


def router() -> APIRouter:
    site = APIRouter(include_in_schema=False)

    @site.get("/")
    def index() -> FileResponse:
        return studio_file("index.html")

    @site.get(PUBLIC_PREFIX + "{relative:path}")
    def asset(relative: str) -> FileResponse:
        return studio_file(relative)

    return site
