"""Pages of research for the privacy officer: every project with its budget and ledger, and the forms.

The officer makes projects (researchers, budget, release geography), grants more budget with a note and
adds researchers. Every rho is shown with the epsilon it implies. After a form, the address names the ledger
entry or researcher it changed; the notice is written from the database, so a link puts no words of its own
on the page.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from api.deps import MAX_ID, ConnDep, Id, SignedIn
from api.problems import Problem
from api.schemas.research import GrantBody, MemberBody, ProjectBody
from api.security import Principal
from api.services import research
from api.services.access import preferred_time_zone
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, error_page, page, redirect
from api.web.research_pages import PAST_RELEASES, invalid_form
from privacy.location import DEFAULT_K
from privacy.research.accounting import DELTA, epsilon
from thuis.db import Connection

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ONLY_THE_OFFICER = "this page is for the privacy officer only"
# Budgets to compare with when granting: what each rho means in epsilon (the US Census 2020 spent 2.56).
REFERENCE_RHO = (0.1, 0.31, 1.0, 2.56, 10.0)
NEW_PROJECT = {"name": "", "researchers": "", "rho": "1", "scheme": "pc4", "k": str(DEFAULT_K)}
EntryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _text_fields(form: Any) -> dict[str, str]:
    return {name: value.strip() for name, value in form.items() if isinstance(value, str)}


def _said(refused: Problem) -> str:
    """Return a refusal's words for a page, whose fields are not a body's."""
    return refused.detail.removeprefix("body field ")


def _usernames(text: str) -> list[str]:
    """Return the usernames of a field that lists them separated by commas or spaces."""
    return [name for name in re.split(r"[\s,]+", text) if name]


@router.get("/research/officer")
async def officer_home(request: Request, principal: SignedIn, conn: ConnDep) -> Response:
    """Show the privacy officer every project with its budget, and the form to make one."""
    return await _officer_page(request, principal, conn)


async def _officer_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    if principal.role != "privacy_officer":
        return error_page(request, 403, ONLY_THE_OFFICER, principal)
    return page(
        request,
        "research_officer.html",
        principal=principal,
        status_code=status,
        projects=await research.projects_of(conn, principal=principal),
        form=form or NEW_PROJECT,
        error=error,
        references=[(rho, epsilon(rho)) for rho in REFERENCE_RHO],
        delta=DELTA,
        min_k=DEFAULT_K,
    )


@router.post("/research/officer/projects")
async def create_project(request: Request, principal: SignedIn, conn: ConnDep) -> Response:
    """Make a project from the form: its researchers, budget and a release geography frozen now."""
    if principal.role != "privacy_officer":
        return error_page(request, 403, ONLY_THE_OFFICER, principal)
    form = {**NEW_PROJECT, **_text_fields(await request.form())}
    values = {
        "name": form["name"],
        "researchers": _usernames(form["researchers"]),
        "rho": form["rho"],
        "scheme": form["scheme"],
        "k": form["k"],
    }
    try:
        project = await research.create_project(
            conn, principal=principal, body=ProjectBody.model_validate(values)
        )
    except ValidationError as invalid:
        error, status = invalid_form(invalid), 422
    except Problem as refused:
        if refused.status not in (409, 422):
            raise
        error, status = _said(refused), refused.status
    else:
        return redirect(f"/research/officer/projects/{project.project_id}?created=1")
    return await _officer_page(request, principal, conn, form=form, error=error, status=status)


@router.get("/research/officer/projects/{project_id}")
async def officer_project(
    request: Request,
    principal: SignedIn,
    project_id: Id,
    conn: ConnDep,
    created: Annotated[bool, Query()] = False,
    granted: EntryId = None,
    added: EntryId = None,
) -> Response:
    """Show a project's budget, ledger (grants and spends, who and when), releases and the officer's forms."""
    return await _project_page(
        request, principal, conn, project_id, created=created, granted=granted, added=added
    )


async def _project_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    project_id: int,
    *,
    created: bool = False,
    granted: int | None = None,
    added: int | None = None,
    form: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    if principal.role != "privacy_officer":
        return error_page(request, 403, ONLY_THE_OFFICER, principal)
    project = await research.visible_project(conn, principal=principal, project_id=project_id)
    ledger = await research.ledger(conn, project_id=project_id)
    releases, _ = await research.release_records(
        conn, principal=principal, project_id=project_id, before=None, limit=PAST_RELEASES
    )
    # What a form just changed, found in the database: the template words the notice.
    granted_entry = next((e for e in ledger if e.entry_id == granted and e.kind == "grant"), None)
    added_name = (await research.usernames(conn, [added])).get(added) if added in project.members else None
    zone = await preferred_time_zone(conn, principal=principal) or DEFAULT_TIME_ZONE
    return page(
        request,
        "research_officer_project.html",
        principal=principal,
        status_code=status,
        project=await research.project_view(conn, project),
        ledger=ledger,
        releases=releases,
        created=created,
        granted_entry=granted_entry,
        added_name=added_name,
        error=error,
        form=form or {"rho": "", "note": "", "username": ""},
        time_zone=zone,
        delta=DELTA,
    )


@router.post("/research/officer/projects/{project_id}/grants")
async def grant(request: Request, principal: SignedIn, project_id: Id, conn: ConnDep) -> Response:
    """Grant a project more budget: a new entry on its ledger, with the officer's note."""
    if principal.role != "privacy_officer":
        return error_page(request, 403, ONLY_THE_OFFICER, principal)
    form = _text_fields(await request.form())
    try:
        body = GrantBody.model_validate({"rho": form.get("rho", ""), "note": form.get("note", "")})
        await research.grant(conn, principal=principal, project_id=project_id, rho=body.rho, note=body.note)
    except ValidationError as invalid:
        error = invalid_form(invalid)
    except Problem as refused:
        if refused.status != 422:
            raise
        error = _said(refused)
    else:
        entries = await research.ledger(conn, project_id=project_id)
        mine = [e.entry_id for e in entries if e.kind == "grant" and e.recorded_by == principal.user_id]
        return redirect(f"/research/officer/projects/{project_id}?granted={mine[-1]}")
    return await _project_page(request, principal, conn, project_id, form=form, error=error, status=422)


@router.post("/research/officer/projects/{project_id}/researchers")
async def add_researcher(request: Request, principal: SignedIn, project_id: Id, conn: ConnDep) -> Response:
    """Let a researcher (by username) make releases of a project."""
    if principal.role != "privacy_officer":
        return error_page(request, 403, ONLY_THE_OFFICER, principal)
    form = _text_fields(await request.form())
    try:
        body = MemberBody.model_validate({"username": form.get("username", "")})
        user_id = await research.add_member(conn, project_id=project_id, username=body.username)
    except ValidationError as invalid:
        error = invalid_form(invalid)
    except Problem as refused:
        if refused.status != 422:
            raise
        error = _said(refused)
    else:
        return redirect(f"/research/officer/projects/{project_id}?added={user_id}")
    return await _project_page(request, principal, conn, project_id, form=form, error=error, status=422)
