"""The portal's web pages: one router for create_app, and the stylesheet, served by the app itself."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.problems import not_found
from api.web import (
    account_pages,
    auth_pages,
    privacy_pages,
    research_officer_pages,
    research_pages,
    resident_pages,
    site_pages,
)
from api.web.render import STATIC_DIR

router = APIRouter(include_in_schema=False)
router.include_router(auth_pages.router)
router.include_router(account_pages.router)
router.include_router(site_pages.router)
router.include_router(resident_pages.router)
router.include_router(privacy_pages.router)
router.include_router(research_pages.router)
router.include_router(research_officer_pages.router)

# The files under /static/, by name: nothing else in the folder is served.
STATIC_FILES = {"thuis.css": "text/css; charset=utf-8"}
STATIC_MAX_AGE_S = 3600


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """Return one of the pages' static files."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise not_found(f"static file {name}")
    return FileResponse(
        STATIC_DIR / name,
        media_type=media_type,
        headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}"},
    )
