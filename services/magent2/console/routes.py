"""Serves the console's files under /ui. The page itself holds no data and needs no token; every
call it makes goes to the public API with the bearer token the user enters."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).parent / "static"
FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
# The page and its scripts may only come from here and talk only to this origin.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # relative, so a path prefix added by an Ingress is kept
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui/")
async def ui_index() -> FileResponse:
    return FileResponse(FILES["index.html"], headers=HEADERS)


@router.get("/ui/{name}")
async def ui_file(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404, f"no console file {name!r}")
    return FileResponse(FILES[name], headers=HEADERS)
