"""Data-subject requests: owners file them, residents follow theirs, the privacy officer works the queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.params import Id
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.portal import EMAIL_PATTERN
from api.schemas.privacy import RequestFiling, StatusChange, SubjectAccount, SubjectRequest, TrailEntry
from api.security import Principal, SignedIn, pool_of, require_role
from api.services.personal import keyring_of
from privacy.subjects import queries as q
from privacy.subjects import workflow as requests
from privacy.subjects.access_export import access_export
from privacy.subjects.model import Actor, RequestRefused
from thuis.catalogue import load_catalogue
from thuis.db import Connection

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"], responses=PROBLEM_RESPONSES)

PrivacyOfficer = Annotated[Principal, require_role("privacy_officer")]
RequestId = Id
MAX_LIST = 500


def actor_of(principal: Principal) -> Actor:
    """Return who acts, as the privacy code knows them."""
    return Actor(user_id=principal.user_id, username=principal.username, role=principal.role)


@contextmanager
def answered_as_problems() -> Iterator[None]:
    """Answer a refusal of the privacy code with a problem of the same status and detail."""
    try:
        yield
    except RequestRefused as refused:
        raise Problem(refused.status, refused.detail) from None


def filing_parts(filing: Any) -> tuple[str, str | None, dict[str, Any], dict[str, Any] | None]:
    """Split a filing into its kind, subject, details in the clear and personal details to seal."""
    details = filing.details.model_dump(exclude_none=True)
    if filing.kind == "rectification":
        # The clear details name only the fields; the new values are personal, sealed with the subject's key.
        return filing.kind, filing.subject_username, {"fields": sorted(details)}, details
    return filing.kind, filing.subject_username, details, None


def response_of(request: requests.SubjectRequest, *, now: dt.datetime) -> SubjectRequest:
    """Return the API's view of a request."""
    until = request.download_until()
    return SubjectRequest(
        request_id=request.request_id,
        kind=request.kind,
        subject_username=request.subject_username,
        filed_by_username=request.filed_by_username,
        received_at=request.received_at,
        due_at=request.due_at,
        status=request.status,
        closed_at=request.closed_at,
        days_left=None if request.closed_at else request.days_left(now),
        overdue=request.overdue(now),
        details=request.details,
        personal_details=request.personal_details,
        outcome=request.outcome,
        trail=[TrailEntry(**vars(entry)) for entry in request.trail],
        download_url=f"/api/v1/privacy/requests/{request.request_id}/download" if until else None,
        download_until=until,
    )


async def record_request_read(conn: Connection, *, actor: Actor, request: requests.SubjectRequest) -> None:
    """Record that someone other than the subject was shown a request's personal details."""
    if request.personal_details and request.subject_user_id not in (None, actor.user_id):
        await conn.execute(
            q.INSERT_AUDIT_READ,
            actor.user_id,
            actor.role,
            request.subject_user_id,
            "request_details",
            f"request {request.request_id}",
        )


@router.post("/requests", status_code=201, summary="File a data-subject request (owner, privacy officer)")
async def file_request(request: Request, principal: SignedIn, body: RequestFiling) -> SubjectRequest:
    """File a request for yourself or for a resident of your home; due 28 days after it is received.

    Restriction, objection, consent and access asked for yourself take effect at once; the rest goes to
    the privacy officer's queue. A resident asks the owner who manages the gateway to file for them.
    """
    actor = actor_of(principal)
    kind, subject, details, personal = filing_parts(body)
    keyring = keyring_of(request)
    async with pool_of(request).acquire() as conn:
        with answered_as_problems():
            request_id = await requests.file_request(
                conn,
                keyring,
                filer=actor,
                kind=kind,
                subject_username=subject,
                details=details,
                personal_details=personal,
            )
            filed = await requests.load_request(conn, keyring, request_id=request_id, actor=actor)
    return response_of(filed, now=dt.datetime.now(dt.UTC))


@router.get("/requests", summary="Data-subject requests: my own, or all (privacy officer)")
async def list_requests(
    request: Request,
    principal: SignedIn,
    status: Literal["received", "in_progress", "completed", "refused"] | None = None,
    due_before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[SubjectRequest]:
    """Return your requests and those you filed for a resident, newest first.

    The privacy officer gets every request, the soonest due first, filtered by `status` and `due_before`.
    """
    if due_before is not None and due_before.tzinfo is None:
        raise Problem(422, "query parameter due_before: give a time zone, e.g. 2030-01-01T00:00:00Z")
    actor = actor_of(principal)
    async with pool_of(request).acquire() as conn:
        found = await requests.list_requests(
            conn, keyring_of(request), actor=actor, status=status, due_before=due_before, limit=limit
        )
        for item in found:
            await record_request_read(conn, actor=actor, request=item)
    now = dt.datetime.now(dt.UTC)
    return [response_of(item, now=now) for item in found]


@router.get("/requests/{request_id}", summary="A data-subject request, with its trail")
async def get_request(request: Request, principal: SignedIn, request_id: RequestId) -> SubjectRequest:
    """Return a request you are the subject of or filed; the privacy officer sees every one."""
    actor = actor_of(principal)
    async with pool_of(request).acquire() as conn:
        with answered_as_problems():
            found = await requests.load_request(conn, keyring_of(request), request_id=request_id, actor=actor)
        await record_request_read(conn, actor=actor, request=found)
    return response_of(found, now=dt.datetime.now(dt.UTC))


@router.post("/requests/{request_id}/status", summary="Move a request on (privacy officer)")
async def change_status(
    request: Request, principal: PrivacyOfficer, request_id: RequestId, body: StatusChange
) -> SubjectRequest:
    """Set `in_progress`, `completed` or `refused` (with a note saying why).

    Completing a request carries it out (a rectification is applied, an erasure done); every change is
    added to the request's trail.
    """
    actor = actor_of(principal)
    keyring = keyring_of(request)
    async with pool_of(request).acquire() as conn:
        with answered_as_problems():
            await requests.change_status(
                conn,
                keyring,
                load_catalogue(),
                request_id=request_id,
                actor=actor,
                status=body.status,
                note=body.note,
            )
            changed = await requests.load_request(conn, keyring, request_id=request_id, actor=actor)
    return response_of(changed, now=dt.datetime.now(dt.UTC))


@router.get(
    "/requests/{request_id}/download",
    summary="The access export: a ZIP of everything held (subject, who filed it, privacy officer)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the ZIP, streamed"}},
)
async def download(request: Request, principal: SignedIn, request_id: RequestId) -> StreamingResponse:
    """Stream the ZIP of a completed access request (JSON and CSV per category, recipients, manifest).

    It is made from the data as it is at the moment of download; the subject, the owner who filed it and
    the privacy officer may download it for 30 days after the request was completed. A download by anyone
    but the subject is recorded in the audit trail.
    """
    actor = actor_of(principal)
    keyring = keyring_of(request)
    pool = pool_of(request)
    async with pool.acquire() as conn:
        with answered_as_problems():
            found = await requests.load_request(conn, keyring, request_id=request_id, actor=actor)
        subject = _downloadable(found, actor=actor, now=dt.datetime.now(dt.UTC))
        if subject != actor.user_id:
            await conn.execute(
                q.INSERT_AUDIT_READ,
                actor.user_id,
                actor.role,
                subject,
                "access_export",
                f"request {request_id}",
            )
    catalogue = load_catalogue()

    async def zip_stream() -> AsyncIterator[bytes]:
        async with pool.acquire() as export_conn:
            async for chunk in access_export(
                export_conn, keyring, catalogue, user_id=subject, request_id=request_id
            ):
                yield chunk

    filename = f"thuis-access-{found.subject_username}-{request_id}.zip"
    return StreamingResponse(
        zip_stream(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _downloadable(found: requests.SubjectRequest, *, actor: Actor, now: dt.datetime) -> int:
    """Return the subject whose export may be downloaded now, or refuse saying why."""
    if found.kind != "access":
        raise Problem(
            409, f"request {found.request_id} is a request for {found.kind}; only access has a download"
        )
    if found.subject_user_id is None:
        raise Problem(409, f"the subject of request {found.request_id} was erased: nothing is held any more")
    if actor.role == "privacy_officer":  # they check what a subject will get, before and after
        return found.subject_user_id
    until = found.download_until()
    if until is None:
        raise Problem(
            409, f"the export of request {found.request_id} is not ready: the request is {found.status}"
        )
    if now > until:
        raise Problem(
            409,
            f"the export of request {found.request_id} could be downloaded until {until.date().isoformat()}; "
            "file a new access request for a new one",
        )
    return found.subject_user_id


@router.get("/queue", summary="Open requests, the soonest due first (privacy officer)")
async def queue(request: Request, principal: PrivacyOfficer) -> list[SubjectRequest]:
    """Return every open request by due date, with the days left and whether it is overdue."""
    actor = actor_of(principal)
    async with pool_of(request).acquire() as conn:
        found = await requests.open_requests(conn, keyring_of(request))
        for item in found:
            await record_request_read(conn, actor=actor, request=item)
    now = dt.datetime.now(dt.UTC)
    return [response_of(item, now=now) for item in found]


@router.get("/subjects", summary="Find an account by email address (privacy officer)")
async def find_subject(
    request: Request,
    principal: PrivacyOfficer,
    email: Annotated[str, Query(max_length=254, pattern=EMAIL_PATTERN)],
) -> list[SubjectAccount]:
    """Return the accounts with this email address, found by its keyed hash; the lookup is recorded."""
    actor = actor_of(principal)
    async with pool_of(request).acquire() as conn:
        rows = await requests.accounts_by_email(conn, keyring_of(request), email=email)
        for row in rows:
            await conn.execute(
                q.INSERT_AUDIT_READ, actor.user_id, actor.role, row["user_id"], "account", "found by email"
            )
    return [SubjectAccount(**dict(row)) for row in rows]
