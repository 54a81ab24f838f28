"""Who else sees a site: residents the owner grants, installers the owner assigns, and the access log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, TypeAlias

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from api.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor
from api.params import Id
from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.queries import portal as queries
from api.schemas.portal import (
    AccessRecord,
    Assignment,
    AssignmentRequest,
    Page,
    ResidentGrant,
    ResidentGrantRequest,
)
from api.security import SignedIn, pool_of
from api.services import sharing as sharing_rules
from api.services.access import owned_site

router = APIRouter(prefix="/api/v1/sites/{site_id}", responses=PROBLEM_RESPONSES, tags=["sharing"])

SiteId: TypeAlias = Id
ItemId: TypeAlias = Id


@router.get("/residents", summary="Residents who may read the site (owner)")
async def list_residents(
    request: Request, principal: SignedIn, site_id: SiteId, include_ended: bool = False
) -> list[ResidentGrant]:
    """Return the residents the owner let read the site (with `include_ended`, also those taken back)."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(queries.SELECT_RESIDENT_GRANTS, site_id, include_ended)
    return [ResidentGrant(**{k: v for k, v in dict(row).items() if k != "resident_user_id"}) for row in rows]


@router.post("/residents", status_code=201, summary="Let a resident read the site (owner)")
async def grant_resident(
    request: Request, principal: SignedIn, site_id: SiteId, body: ResidentGrantRequest
) -> ResidentGrant:
    """Let a resident's account read the site, read-only."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        await owned_site(conn, principal=principal, site_id=site_id)
        resident = await conn.fetchrow(queries.SELECT_USER_BY_USERNAME, body.username.strip().lower())
        if resident is None or resident["role"] != "resident":
            raise Problem(422, f"body field username: there is no resident account {body.username!r}")
        row = await conn.fetchrow(
            queries.INSERT_RESIDENT_GRANT, site_id, resident["user_id"], principal.user_id
        )
        if row is None:
            raise Problem(409, f"{body.username} may read site {site_id} already")
    return ResidentGrant(
        grant_id=row["grant_id"], username=body.username.lower(), granted_at=row["granted_at"], ended_at=None
    )


@router.delete("/residents/{grant_id}", status_code=204, summary="Take a resident's access back (owner)")
async def end_resident_grant(
    request: Request, principal: SignedIn, site_id: SiteId, grant_id: ItemId
) -> Response:
    """End a resident's access to the site at once."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        if await conn.fetchval(queries.END_RESIDENT_GRANT, site_id, grant_id) is None:
            raise not_found(f"access {grant_id} of site {site_id}")
    return Response(status_code=204)


@router.get("/assignments", summary="Installers assigned to the site (owner)")
async def list_assignments(
    request: Request, principal: SignedIn, site_id: SiteId, include_ended: bool = False
) -> list[Assignment]:
    """Return the installers assigned to the site now (with `include_ended`, also past assignments)."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(queries.SELECT_ASSIGNMENTS_OF_SITE, site_id, include_ended)
    return [_assignment(row) for row in rows]


def _assignment(row: asyncpg.Record | None) -> Assignment:
    if row is None:
        raise RuntimeError("the assignment just made was not found")
    values = dict(row)
    values["installer_username"] = values.pop("username")
    values.pop("installer_user_id")
    values.pop("ended_at")
    return Assignment(**values)


@router.post("/assignments", status_code=201, summary="Assign an installer to the site (owner)")
async def assign_installer(
    request: Request, principal: SignedIn, site_id: SiteId, body: AssignmentRequest
) -> Assignment:
    """Assign an installer until `expires_at` (at most a year ahead); they see the site until then."""
    sharing_rules.check_assignment_end(body.expires_at)
    async with pool_of(request).acquire() as conn, conn.transaction():
        await owned_site(conn, principal=principal, site_id=site_id)
        assignment_id = await sharing_rules.assign_installer(
            conn,
            site_id=site_id,
            owner_user_id=principal.user_id,
            installer_username=body.installer_username,
            expires_at=body.expires_at,
        )
        row = await conn.fetchrow(queries.SELECT_ASSIGNMENT, site_id, assignment_id)
    return _assignment(row)


@router.delete("/assignments/{assignment_id}", status_code=204, summary="Revoke an assignment (owner)")
async def revoke_assignment(
    request: Request, principal: SignedIn, site_id: SiteId, assignment_id: ItemId
) -> Response:
    """End an installer's assignment at once; from now on they see nothing of the site."""
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        await sharing_rules.revoke_assignment(conn, site_id=site_id, assignment_id=assignment_id)
    return Response(status_code=204)


@router.get("/access-log", summary="Who read my data (owner)")
async def access_log(
    request: Request,
    principal: SignedIn,
    site_id: SiteId,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Page[AccessRecord]:
    """Return every read of the site's personal data by someone other than the owner, newest first."""
    before = decode_cursor(cursor, fields={"occurred_at": dt.datetime})
    async with pool_of(request).acquire() as conn:
        await owned_site(conn, principal=principal, site_id=site_id)
        rows = await conn.fetch(
            queries.SELECT_ACCESS_LOG_OF_SITE, site_id, before["occurred_at"] if before else None, limit + 1
        )
    items = [AccessRecord(**dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return Page[AccessRecord](
        items=items, next_cursor=encode_cursor(occurred_at=items[-1].occurred_at) if more else None
    )
