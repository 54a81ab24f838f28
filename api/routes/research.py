"""Research exports: a researcher asks for one and receives it streamed; past exports and their manifests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES, Problem
from api.security import Principal, pool_of, require_role
from privacy.location import DEFAULT_K
from privacy.research.export import list_exports, prepare_export
from privacy.research.request import (
    MAX_MEASURES,
    MAX_REGION_CELLS,
    ExportRefusedError,
    ExportRequest,
    Resolution,
)


class _ArchiveResponse(StreamingResponse):
    """A streamed archive that ends its export and gives back the connection however the stream ended.

    A client that goes away cancels the stream (even before it starts); the cleanup runs after it, shielded.
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


router = APIRouter(prefix="/api/v1/research", responses=PROBLEM_RESPONSES, tags=["research"])

Researcher = Annotated[Principal, require_role("researcher")]
# The privacy officer oversees exports (reads every record) but does not pull data.
Overseer = Annotated[Principal, require_role("researcher", "privacy_officer")]


class ExportBody(BaseModel):
    """What to export; see docs/anonymisation.md for the shapes and the rules."""

    model_config = ConfigDict(extra="forbid")

    start: dt.date = Field(description="first day of the period")
    end: dt.date = Field(description="the day after the period's last")
    measures: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_MEASURES,
        description="<device kind>.<metric>, e.g. grid.import_energy_kwh",
    )
    resolution: Resolution
    shape: Literal["households", "aggregates"]
    scheme: Literal["pc4", "h3"] = "pc4"
    region: list[Annotated[str, Field(max_length=20)]] = Field(
        default_factory=list,
        max_length=MAX_REGION_CELLS,
        description="2- to 4-digit postcode prefixes or H3 cells of resolution 5 to 7; empty: everywhere",
    )
    k: int = Field(default=DEFAULT_K, description=f"households per released group, at least {DEFAULT_K}")
    format: Literal["csv", "parquet"] = "csv"


class ExportRecord(BaseModel):
    """A past export: what was asked, how it ended, and its manifest (never which households)."""

    export_id: int
    requested_by: int | None
    requested_at: dt.datetime
    status: str
    finished_at: dt.datetime | None
    parameters: dict[str, Any]
    manifest: dict[str, Any] | None
    reason: str | None


class ExportPage(BaseModel):
    """A page of export records, newest first."""

    items: list[ExportRecord]
    next_cursor: str | None


@router.post(
    "/exports",
    summary="Make a research export (a ZIP of the data and its manifest, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the archive"}},
)
async def create_export(request: Request, principal: Researcher, body: ExportBody) -> StreamingResponse:
    """Stream the export's archive; refuse (422, with the reason, and recorded) what breaks a rule."""
    export_request = ExportRequest(
        start=body.start,
        end=body.end,
        measures=tuple(body.measures),
        resolution=body.resolution,
        shape=body.shape,
        scheme=body.scheme,
        region=tuple(body.region),
        k=body.k,
        file_format=body.format,
    )
    pool = pool_of(request)
    conn = await pool.acquire()
    try:
        prepared = await prepare_export(
            conn, request=export_request, requested_by=principal.user_id, via="api"
        )
    except ExportRefusedError as refusal:
        await pool.release(conn)
        raise Problem(422, f"export refused: {refusal.reason}") from None
    except BaseException:
        await pool.release(conn)
        raise

    async def done() -> None:
        await prepared.close()
        await pool.release(conn)

    return _ArchiveResponse(
        prepared.chunks(),
        media_type=prepared.media_type,
        headers={"Content-Disposition": f'attachment; filename="{prepared.filename}"'},
        on_close=done,
    )


@router.get("/exports", summary="Past research exports and their manifests")
async def past_exports(
    request: Request,
    principal: Overseer,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> ExportPage:
    """Return export records, newest first: a researcher's own, or every one for the privacy officer."""
    before = decode_cursor(cursor, fields={"export_id": int})
    requested_by = None if principal.role == "privacy_officer" else principal.user_id
    async with pool_of(request).acquire() as conn:
        rows = await list_exports(
            conn, requested_by=requested_by, before=before["export_id"] if before else None, limit=limit + 1
        )
    items = [
        ExportRecord(
            **{
                **dict(row),
                "parameters": json.loads(row["parameters"]),
                "manifest": json.loads(row["manifest"]) if row["manifest"] is not None else None,
            }
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return ExportPage(items=items, next_cursor=encode_cursor(export_id=items[-1].export_id) if more else None)
