"""Research in the portal: projects and budgets, releases, and the privacy spent on each home.

The privacy officer makes projects and grants budgets, researchers release, owners see what was spent on
their homes. The rules live in privacy/research/; refusals become problems here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import asyncpg
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.problems import Problem, not_found
from api.queries import research as queries
from api.schemas.research import (
    Budget,
    LedgerEntry,
    Preview,
    ProjectBody,
    ReleaseBody,
    ReleaseRecord,
    ResearchProject,
    SpentOnHome,
    SpentRelease,
)
from api.security import Principal
from privacy.research import budget
from privacy.research.accounting import DELTA, epsilon
from privacy.research.geography import GeographyError, load_geography, make_geography
from privacy.research.release import list_releases, prepare_release, preview, releases_of_owner
from privacy.research.request import ReleaseRefusedError, ReleaseRequest
from thuis.db import Connection


@contextmanager
def answered_as_problems() -> Iterator[None]:
    """Answer a refusal of the research code with a 422 (404: no such project; 409: a name taken)."""
    try:
        yield
    except (ReleaseRefusedError, budget.BudgetError, GeographyError) as refused:
        detail = str(refused)
        if detail.startswith("there is no research project"):
            raise Problem(
                404, detail.replace("there is no research project", "research project") + " not found"
            ) from None
        if detail.startswith("there is a project named"):
            raise Problem(409, f"body field name: {detail}") from None
        raise Problem(
            422, f"release refused: {detail}" if isinstance(refused, ReleaseRefusedError) else detail
        ) from None


class ArchiveResponse(StreamingResponse):
    """A streamed archive that ends its release and gives back the connection however the stream ended.

    A client that goes away cancels the stream (even before it starts); the cleanup runs after it, shielded.
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the archive, then close the release and give back its connection, shielded."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


async def release_response(
    pool: asyncpg.Pool, *, principal: Principal, body: ReleaseBody, via: str
) -> ArchiveResponse:
    """Spend the release's rho and return its archive, streamed; refuse (422, with why, recorded) a bad one.

    The API and the research page both make releases here. The connection is held while the archive
    streams, and given back by the response when it ends.
    """
    conn = await pool.acquire()
    try:
        with answered_as_problems():
            prepared = await prepare_release(
                conn, request=release_request(body), requested_by=principal.user_id, via=via
            )
    except BaseException:
        await pool.release(conn)
        raise

    async def done() -> None:
        await prepared.close()
        await pool.release(conn)

    return ArchiveResponse(
        prepared.chunks(),
        media_type=prepared.media_type,
        headers={"Content-Disposition": f'attachment; filename="{prepared.filename}"'},
        on_close=done,
    )


def budget_view(figures: budget.Budget) -> Budget:
    """Return a budget as the API and the pages show it: rho granted, spent and left, each with epsilon."""
    return Budget(**figures.as_dict(), epsilon_left=epsilon(figures.left))


async def usernames(conn: Connection, user_ids: Iterable[int | None]) -> dict[int, str]:
    """Return the usernames of accounts by id; an erased account is missing."""
    wanted = sorted({user_id for user_id in user_ids if user_id is not None})
    if not wanted:
        return {}
    return {row["user_id"]: row["username"] for row in await conn.fetch(queries.SELECT_NAMES_BY_ID, wanted)}


def release_request(body: ReleaseBody) -> ReleaseRequest:
    """Return the research code's request for a body."""
    return ReleaseRequest(
        project_id=body.project_id,
        kind=body.kind,
        start=body.start,
        end=body.end,
        measures=tuple(body.measures),
        resolution=body.resolution,
        region=tuple(body.region),
        rho=body.rho,
        file_format=body.format,
    )


async def visible_project(conn: Connection, *, principal: Principal, project_id: int) -> budget.Project:
    """Return a project the person may see: any for the privacy officer, a researcher's own (else 404)."""
    with answered_as_problems():
        project = await budget.project(conn, project_id=project_id)
    if principal.role != "privacy_officer" and principal.user_id not in project.members:
        raise not_found(f"research project {project_id}")
    return project


async def project_view(conn: Connection, project: budget.Project) -> ResearchProject:
    """Return the API's view of a project: researchers by name, the geography's cells, the budget."""
    geography = await load_geography(conn, project.geography_id)
    names = await conn.fetch(queries.SELECT_USERNAMES, list(project.members))
    return ResearchProject(
        project_id=project.project_id,
        name=project.name,
        created_at=project.created_at,
        closed_at=project.closed_at,
        researchers=[row["username"] for row in names],
        geography={
            "geography_id": geography.geography_id,
            "scheme": geography.scheme,
            "k": geography.k,
            "cells": geography.cells,
        },
        budget=budget_view(project.budget),
    )


async def projects_of(conn: Connection, *, principal: Principal) -> list[ResearchProject]:
    """Return every project (the privacy officer) or a researcher's own."""
    member = None if principal.role == "privacy_officer" else principal.user_id
    return [await project_view(conn, project) for project in await budget.projects(conn, member=member)]


async def create_project(conn: Connection, *, principal: Principal, body: ProjectBody) -> ResearchProject:
    """Make a project with its researchers, budget and geography (a new one unless an id is given)."""
    researchers = []
    for username in body.researchers:
        user_id = await conn.fetchval(queries.SELECT_RESEARCHER_BY_USERNAME, username.strip().lower())
        if user_id is None:
            raise Problem(422, f"body field researchers: there is no researcher account {username!r}")
        researchers.append(user_id)
    with answered_as_problems():
        async with conn.transaction():
            geography_id = body.geography_id
            if geography_id is None:
                geography_id = await make_geography(
                    conn, scheme=body.scheme, k=body.k, created_by=principal.user_id
                )
            else:
                await load_geography(conn, geography_id)
            project_id = await budget.create_project(
                conn,
                name=body.name,
                geography_id=geography_id,
                rho=body.rho,
                members=researchers,
                created_by=principal.user_id,
            )
        return await project_view(conn, await budget.project(conn, project_id=project_id))


async def grant(conn: Connection, *, principal: Principal, project_id: int, rho: float, note: str) -> Budget:
    """Add budget to a project (the privacy officer); return the budget now."""
    with answered_as_problems():
        await budget.grant(conn, project_id=project_id, rho=rho, granted_by=principal.user_id, note=note)
        return budget_view(await budget.budget(conn, project_id=project_id))


async def add_member(conn: Connection, *, project_id: int, username: str) -> int:
    """Let a researcher release from a project (the privacy officer); return their id."""
    with answered_as_problems():
        await budget.project(conn, project_id=project_id)  # no project: 404, not a foreign-key error
    user_id = await conn.fetchval(queries.SELECT_RESEARCHER_BY_USERNAME, username.strip().lower())
    if user_id is None:
        raise Problem(422, f"body field username: there is no researcher account {username!r}")
    with answered_as_problems():
        await budget.add_member(conn, project_id=project_id, user_id=user_id)
    return int(user_id)


async def ledger(conn: Connection, *, project_id: int) -> list[LedgerEntry]:
    """Return a project's ledger, oldest entry first, with who recorded each entry and its epsilon."""
    rows = await budget.ledger(conn, project_id=project_id)
    names = await usernames(conn, (row["recorded_by"] for row in rows))
    return [
        LedgerEntry(
            **dict(row), recorded_by_username=names.get(row["recorded_by"]), epsilon=epsilon(row["rho"])
        )
        for row in rows
    ]


async def preview_release(conn: Connection, *, principal: Principal, body: ReleaseBody) -> Preview:
    """Return what a release would cost and how accurate it would be, spending nothing, reading no data."""
    project = await visible_project(conn, principal=principal, project_id=body.project_id)
    with answered_as_problems():
        plan = await preview(conn, request=release_request(body))
    return Preview(budget=budget_view(project.budget), accuracy=plan.accuracy())


async def release_records(
    conn: Connection, *, principal: Principal, project_id: int | None, before: int | None, limit: int
) -> tuple[list[ReleaseRecord], bool]:
    """Return a page of release records: a researcher's own, or every one for the privacy officer."""
    requested_by = None if principal.role == "privacy_officer" else principal.user_id
    rows = await list_releases(
        conn, project_id=project_id, requested_by=requested_by, before=before, limit=limit + 1
    )
    names = await usernames(conn, (row["requested_by"] for row in rows[:limit]))
    items = [
        ReleaseRecord(
            **{
                **dict(row),
                "requested_by_username": names.get(row["requested_by"]),
                "parameters": json.loads(row["parameters"]),
                "manifest": json.loads(row["manifest"]) if row["manifest"] is not None else None,
            }
        )
        for row in rows[:limit]
    ]
    return items, len(rows) > limit


async def spent_on_homes(conn: Connection, *, principal: Principal) -> list[SpentOnHome]:
    """Return, per home of an owner, the releases that covered it and the privacy loss they add up to."""
    labels = {
        row["site_id"]: row["label"]
        for row in await conn.fetch(queries.SELECT_OWNED_SITES, principal.user_id)
    }
    per_site: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in await releases_of_owner(conn, owner_user_id=principal.user_id):
        per_site[row["site_id"]].append(row)
    homes = []
    for site_id, label in sorted(labels.items()):
        releases = per_site.get(site_id, [])
        rho = sum(float(row["rho"]) for row in releases if row["kind"] == "aggregates")
        homes.append(
            SpentOnHome(
                site_id=site_id,
                label=label,
                releases=[_release_line(row) for row in releases],
                rho=rho,
                epsilon=epsilon(rho),
                delta=DELTA,
                series_with_consent=sum(1 for row in releases if row["kind"] == "households"),
            )
        )
    return homes


def _release_line(row: asyncpg.Record) -> SpentRelease:
    return SpentRelease(
        release_id=row["release_id"],
        project=row["project"],
        kind=row["kind"],
        rho=float(row["rho"]),
        finished_at=row["finished_at"],
    )
