"""Research: projects and budgets (the privacy officer), releases streamed to researchers, past releases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from api.deps import ConnDep, Id, PoolDep, PrivacyOfficer, Researcher, StreamingResearcher, require_role
from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.problems import PROBLEM_RESPONSES
from api.schemas.research import (
    Budget,
    GrantBody,
    LedgerEntry,
    MemberBody,
    Preview,
    ProjectBody,
    ReleaseBody,
    ReleasePage,
    ResearchProject,
)
from api.security import Principal
from api.services import research

router = APIRouter(prefix="/api/v1/research", responses=PROBLEM_RESPONSES, tags=["research"])

# The privacy officer oversees research (every project, ledger and record) but does not pull data.
Overseer = Annotated[Principal, require_role("researcher", "privacy_officer")]


@router.get("/projects", summary="Research projects: a researcher's own, or all (privacy officer)")
async def list_projects(principal: Overseer, conn: ConnDep) -> list[ResearchProject]:
    """Return the projects with their release geography and budget left."""
    return await research.projects_of(conn, principal=principal)


@router.post("/projects", status_code=201, summary="Make a research project with a budget (privacy officer)")
async def create_project(principal: PrivacyOfficer, body: ProjectBody, conn: ConnDep) -> ResearchProject:
    """Make a project: its researchers, its budget in rho, and its release geography (frozen now)."""
    return await research.create_project(conn, principal=principal, body=body)


@router.get("/projects/{project_id}", summary="A research project")
async def get_project(principal: Overseer, project_id: Id, conn: ConnDep) -> ResearchProject:
    """Return a project the person is a researcher of (any, for the privacy officer)."""
    project = await research.visible_project(conn, principal=principal, project_id=project_id)
    return await research.project_view(conn, project)


@router.post("/projects/{project_id}/grants", summary="Add to a project's budget (privacy officer)")
async def grant(principal: PrivacyOfficer, project_id: Id, body: GrantBody, conn: ConnDep) -> Budget:
    """Grant more budget: a new entry on the project's ledger."""
    return await research.grant(
        conn, principal=principal, project_id=project_id, rho=body.rho, note=body.note
    )


@router.post(
    "/projects/{project_id}/researchers", status_code=204, summary="Add a researcher (privacy officer)"
)
async def add_researcher(
    principal: PrivacyOfficer, project_id: Id, body: MemberBody, conn: ConnDep
) -> Response:
    """Let a researcher release from the project."""
    await research.add_member(conn, project_id=project_id, username=body.username)
    return Response(status_code=204)


@router.get("/projects/{project_id}/ledger", summary="A project's budget ledger")
async def ledger(principal: Overseer, project_id: Id, conn: ConnDep) -> list[LedgerEntry]:
    """Return every grant and spend of the project's budget, oldest first."""
    await research.visible_project(conn, principal=principal, project_id=project_id)
    return await research.ledger(conn, project_id=project_id)


@router.post("/releases/preview", summary="What a release would cost and how accurate it would be")
async def preview(principal: Researcher, body: ReleaseBody, conn: ConnDep) -> Preview:
    """Return the budget left and the noise of every statistic of the release; nothing is spent or read."""
    return await research.preview_release(conn, principal=principal, body=body)


@router.post(
    "/releases",
    summary="Make a release (a ZIP of the data and its manifest, streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the archive"}},
)
async def create_release(
    principal: StreamingResearcher, body: ReleaseBody, pool: PoolDep
) -> StreamingResponse:
    """Spend the release's rho and stream its archive; refuse (422, with why, recorded) what breaks a rule."""
    # The researcher was looked up on a connection already given back (StreamingResearcher): a request
    # holds one connection at a time, the one its archive streams on.
    return await research.release_response(pool, principal=principal, body=body, via="api")


@router.get("/releases", summary="Past releases and their manifests")
async def past_releases(
    principal: Overseer,
    conn: ConnDep,
    project_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> ReleasePage:
    """Return release records, newest first: a researcher's own, or every one for the privacy officer."""
    before = decode_cursor(cursor, fields={"release_id": int})
    items, more = await research.release_records(
        conn,
        principal=principal,
        project_id=project_id,
        before=before["release_id"] if before else None,
        limit=limit,
    )
    return ReleasePage(
        items=items, next_cursor=encode_cursor(release_id=items[-1].release_id) if more else None
    )
