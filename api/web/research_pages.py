"""Pages of research for researchers: their projects, what a release would cost and how accurate it would be.

A researcher previews a release (its noise per statistic, its rho against the budget left: nothing is spent,
no data read) and then makes exactly that release, downloading its archive. The privacy officer's pages are
in research_officer_pages.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from api.deps import ConnDep, Id, PoolDep, SignedIn, SignedInHoldingNone
from api.problems import Problem
from api.schemas.research import Preview, ReleaseBody
from api.security import Principal
from api.services import research
from api.services.access import preferred_time_zone
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, error_page, page, redirect
from privacy.research.accounting import DELTA
from privacy.research.request import HOUSEHOLD_RESOLUTIONS
from thuis.db import Connection
from thuis.metrics import energy_measures

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAST_RELEASES = 50
RESOLUTION_NAMES = {
    "15min": "15 minutes (aggregates only)",
    "hour": "hour (aggregates only)",
    "day": "day",
    "week": "week (Monday to Sunday)",
    "month": "month",
}
KIND_NAMES = {
    "aggregates": "Noisy totals per cell",
    "households": "Series per household (with consent)",
}
# The fields of a release form; the multiple choices come once per choice.
SINGLE_FIELDS = ("kind", "start", "end", "resolution", "rho", "format")
LIST_FIELDS = ("measures", "region")


def invalid_form(invalid: ValidationError) -> str:
    """Return what is wrong with a form in one line, naming each field as the form does."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'form'}: {error['msg']}"
        for error in invalid.errors()
    )


def release_form(fields: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Return a release form's values: one per single field, a list per multiple choice."""
    form: dict[str, Any] = {name: [] for name in LIST_FIELDS}
    for name, value in fields:
        if not isinstance(value, str):
            continue  # an uploaded file: no field of the form is one
        if name in LIST_FIELDS:
            form[name].append(value)
        elif name in SINGLE_FIELDS:
            form[name] = value.strip()
    return form


def release_body(project_id: int, form: dict[str, Any]) -> ReleaseBody:
    """Return the API's body for a release form; an empty field is one left out (its default).

    The form's rho is for aggregates: a researcher who switches to per-household series need not clear it.
    """
    values = {name: value for name, value in form.items() if value != ""}
    if values.get("kind") == "households":
        values.pop("rho", None)
    return ReleaseBody.model_validate({**values, "project_id": project_id})


def default_form(today: dt.date) -> dict[str, Any]:
    """Return the form as it is first shown: last month's daily grid import, a small rho."""
    this_month = today.replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    return {
        "kind": "aggregates",
        "start": last_month.isoformat(),
        "end": this_month.isoformat(),
        "measures": ["grid.import_energy_kwh"],
        "resolution": "day",
        "region": [],
        "rho": "0.1",
        "format": "csv",
    }


@router.get("/research")
async def research_home(request: Request, principal: SignedIn, conn: ConnDep) -> Response:
    """Show a researcher their projects with the budget left; one project goes straight to its page."""
    if principal.role == "privacy_officer":
        return redirect("/research/officer")
    if principal.role != "researcher":
        return error_page(request, 403, "this page is for researchers only", principal)
    projects = await research.projects_of(conn, principal=principal)
    if len(projects) == 1:
        return redirect(f"/research/projects/{projects[0].project_id}")
    return page(request, "research.html", principal=principal, projects=projects, delta=DELTA)


@router.get("/research/projects/{project_id}")
async def project_page(request: Request, principal: SignedIn, project_id: Id, conn: ConnDep) -> Response:
    """Show a project to its researcher: budget left, cells, the release form, past releases.

    With `preview` in the address the form's release is planned and its cost and the expected error of
    every statistic shown: nothing is spent and no data is read.
    """
    if principal.role == "privacy_officer":
        return redirect(f"/research/officer/projects/{project_id}")
    if principal.role != "researcher":
        return error_page(request, 403, "this page is for researchers only", principal)
    if "preview" not in request.query_params:
        return await _project_page(request, principal, conn, project_id)
    form = release_form(request.query_params.multi_items())
    try:
        body = release_body(project_id, form)
        preview = await research.preview_release(conn, principal=principal, body=body)
        form["kind"] = body.kind  # the page words the preview by the kind previewed, a default included
    except ValidationError as invalid:
        error = invalid_form(invalid)
        return await _project_page(request, principal, conn, project_id, form=form, error=error, status=422)
    except Problem as refused:
        if refused.status != 422:
            raise
        error = refused.detail
        return await _project_page(request, principal, conn, project_id, form=form, error=error, status=422)
    return await _project_page(request, principal, conn, project_id, form=form, preview=preview)


@router.post("/research/projects/{project_id}/releases")
async def make_release(
    request: Request, principal: SignedInHoldingNone, project_id: Id, pool: PoolDep
) -> Response:
    """Make the release previewed: spend its rho and download its archive; a refusal shows the page with why.

    The principal's lookup has checked the form's CSRF token. The release is made by the same service as the
    API's, and streamed as it is made, on a connection of its own: this page holds no other while it does
    (as many releases at once as the pool has connections would otherwise wait for ever).
    """
    if principal.role != "researcher":
        return error_page(request, 403, "this page is for researchers only", principal)
    async with pool.acquire() as conn:
        await research.visible_project(conn, principal=principal, project_id=project_id)  # another's: 404
    form = release_form((await request.form()).multi_items())
    try:
        body = release_body(project_id, form)
        return await research.release_response(pool, principal=principal, body=body, via="portal")
    except ValidationError as invalid:
        error = invalid_form(invalid)
    except Problem as refused:
        if refused.status != 422:
            raise
        error = refused.detail
    async with pool.acquire() as conn:
        return await _project_page(request, principal, conn, project_id, form=form, error=error, status=422)


async def _project_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    project_id: int,
    *,
    form: dict[str, Any] | None = None,
    preview: Preview | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    project = await research.visible_project(conn, principal=principal, project_id=project_id)
    view = await research.project_view(conn, project)
    releases, _ = await research.release_records(
        conn, principal=principal, project_id=project_id, before=None, limit=PAST_RELEASES
    )
    zone = await preferred_time_zone(conn, principal=principal) or DEFAULT_TIME_ZONE
    return page(
        request,
        "research_project.html",
        principal=principal,
        status_code=status,
        project=view,
        releases=releases,
        form=form or default_form(dt.datetime.now(dt.UTC).date()),
        preview=preview,
        error=error,
        measures=energy_measures(),
        resolutions=RESOLUTION_NAMES,
        household_resolutions=HOUSEHOLD_RESOLUTIONS,
        kinds=KIND_NAMES,
        time_zone=zone,
        delta=DELTA,
    )
