"""Research exports: a researcher asks for one and receives it streamed; past exports and their manifests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import ConnDep, PoolDep, Researcher, require_role
from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.research import ExportBody, ExportPage, ExportRecord
from api.security import Principal
from privacy.research.export import list_exports, prepare_export
from privacy.research.request import (
    ExportRefusedError,
    ExportRequest,
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

# The privacy officer oversees exports (reads every record) but does not pull data.
Overseer = Annotated[Principal, require_role("researcher", "privacy_officer")]


@router.post(
    "/exports",
    summary="Make a research export (a ZIP of the data and its manifest, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the archive"}},
)
async def create_export(principal: Researcher, body: ExportBody, pool: PoolDep) -> StreamingResponse:
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
    # The connection is held while the archive streams, and given back by the response when it ends.
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
    principal: Overseer,
    conn: ConnDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> ExportPage:
    """Return export records, newest first: a researcher's own, or every one for the privacy officer."""
    before = decode_cursor(cursor, fields={"export_id": int})
    requested_by = None if principal.role == "privacy_officer" else principal.user_id
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
