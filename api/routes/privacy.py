"""Data-subject requests: owners file them, residents follow theirs, the privacy officer works the queue."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import (
    CatalogueDep,
    ConnDep,
    Id,
    KeyringDep,
    LedgerDep,
    Owner,
    PoolDep,
    PrivacyOfficer,
    SignedIn,
)
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.common import EMAIL_PATTERN
from api.schemas.privacy import (
    Decision,
    Proposal,
    RequestFiling,
    StatusChange,
    SubjectAccount,
    SubjectRequest,
)
from api.schemas.research import SpentOnHome
from api.services import privacy, research

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"], responses=PROBLEM_RESPONSES)

MAX_LIST = 500


@router.post("/requests", status_code=201, summary="File a data-subject request (owner, privacy officer)")
async def file_request(
    principal: SignedIn, body: RequestFiling, conn: ConnDep, keyring: KeyringDep
) -> SubjectRequest:
    """File a request for yourself or for a resident of your home; due 28 days after it is received.

    Restriction, objection, consent and access asked for yourself take effect at once; the rest goes to
    the privacy officer's queue. A resident asks the owner who manages the gateway to file for them.
    """
    filed = await privacy.file(conn, keyring, principal=principal, filing=body)
    return privacy.body_of(filed, now=dt.datetime.now(dt.UTC), viewer=principal)


@router.get("/requests", summary="Data-subject requests: my own, or all (privacy officer)")
async def list_requests(
    principal: SignedIn,
    conn: ConnDep,
    keyring: KeyringDep,
    status: Literal["received", "in_progress", "completed", "refused"] | None = None,
    due_before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[SubjectRequest]:
    """Return your requests and those you filed for a resident, newest first.

    The privacy officer gets every request, the soonest due first, filtered by `status` and `due_before`.
    """
    if due_before is not None and due_before.tzinfo is None:
        raise Problem(422, "query parameter due_before: give a time zone, e.g. 2030-01-01T00:00:00Z")
    found = await privacy.requests_of(
        conn, keyring, principal=principal, status=status, due_before=due_before, limit=limit
    )
    now = dt.datetime.now(dt.UTC)
    return [privacy.body_of(item, now=now, viewer=principal) for item in found]


@router.get("/requests/{request_id}", summary="A data-subject request, with its trail")
async def get_request(
    principal: SignedIn, request_id: Id, conn: ConnDep, keyring: KeyringDep
) -> SubjectRequest:
    """Return a request you are the subject of or filed; the privacy officer sees every one."""
    found = await privacy.request(conn, keyring, principal=principal, request_id=request_id)
    return privacy.body_of(found, now=dt.datetime.now(dt.UTC), viewer=principal)


@router.post("/requests/{request_id}/status", summary="Move a request on (privacy officer)")
async def change_status(
    principal: PrivacyOfficer,
    request_id: Id,
    body: StatusChange,
    conn: ConnDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
) -> SubjectRequest:
    """Set `in_progress`, `completed` or `refused` (with a note saying why).

    Completing a request carries it out (a rectification is applied, consent recorded); every change is
    added to the request's trail and recorded in the audit trail. An erasure is not completed here: one
    privacy officer proposes it (`…/proposal`) and a second approves it (`…/approval`), 409 otherwise.
    """
    changed = await privacy.change_status(
        conn,
        keyring,
        catalogue,
        principal=principal,
        request_id=request_id,
        status=body.status,
        note=body.note,
    )
    return privacy.body_of(changed, now=dt.datetime.now(dt.UTC), viewer=principal)


@router.post("/requests/{request_id}/proposal", summary="Propose carrying out an erasure (privacy officer)")
async def propose(
    principal: PrivacyOfficer, request_id: Id, body: Proposal, conn: ConnDep, keyring: KeyringDep
) -> SubjectRequest:
    """Propose completing an erasure request; it is carried out when a second privacy officer approves it.

    A received request is started by it. 409 when it is not an erasure, is closed, or has a proposal
    already; 403 on a request about yourself. The proposal, with who and when, is in the request and in the
    audit trail.
    """
    proposed = await privacy.propose(
        conn, keyring, principal=principal, request_id=request_id, note=body.note
    )
    return privacy.body_of(proposed, now=dt.datetime.now(dt.UTC), viewer=principal)


@router.post(
    "/requests/{request_id}/approval", summary="Approve or reject a proposed erasure (privacy officer)"
)
async def decide(
    principal: PrivacyOfficer,
    request_id: Id,
    body: Decision,
    conn: ConnDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    ledger: LedgerDep,
) -> SubjectRequest:
    """Approve a proposed erasure, which carries it out and completes the request, or reject the proposal.

    The approver is a second privacy officer: 403 for the one who proposed it and the one who filed it.
    Rejecting needs a note and takes the proposal back (the proposer may so withdraw it); any officer may
    then propose it again. 409 when nothing is proposed or the request is closed.
    """
    decided = await privacy.decide(
        conn,
        keyring,
        catalogue,
        ledger,
        principal=principal,
        request_id=request_id,
        approve=body.decision == "approve",
        note=body.note,
    )
    return privacy.body_of(decided, now=dt.datetime.now(dt.UTC), viewer=principal)


@router.get(
    "/requests/{request_id}/download",
    summary="The access export: a ZIP of everything held about you (the subject only)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the ZIP, streamed"}},
)
async def download(
    principal: SignedIn,
    request_id: Id,
    conn: ConnDep,
    pool: PoolDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
) -> StreamingResponse:
    """Stream the ZIP of a completed access request (JSON and CSV per category, recipients, manifest).

    It is made from the data as it is at the moment of download; only the subject may download it, for 30
    days after the request was completed (409 before). The owner who filed it for a resident and the
    privacy officer see the request and its trail, never its content: 403.
    """
    found = await privacy.downloadable_export(conn, keyring, principal=principal, request_id=request_id)
    filename = f"thuis-access-{found.subject_username}-{request_id}.zip"
    return StreamingResponse(
        privacy.export_stream(pool, keyring, catalogue, found=found),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/queue", summary="Open requests, the soonest due first (privacy officer)")
async def queue(principal: PrivacyOfficer, conn: ConnDep, keyring: KeyringDep) -> list[SubjectRequest]:
    """Return every open request by due date, with the days left and whether it is overdue."""
    found = await privacy.open_queue(conn, keyring, principal=principal)
    now = dt.datetime.now(dt.UTC)
    return [privacy.body_of(item, now=now, viewer=principal) for item in found]


@router.get("/subjects", summary="Find an account by email address (privacy officer)")
async def find_subject(
    principal: PrivacyOfficer,
    conn: ConnDep,
    keyring: KeyringDep,
    email: Annotated[str, Query(max_length=254, pattern=EMAIL_PATTERN)],
) -> list[SubjectAccount]:
    """Return the accounts with this email address, found by its keyed hash; the lookup is recorded."""
    rows = await privacy.accounts_by_email(conn, keyring, principal=principal, email=email)
    return [SubjectAccount(**dict(row)) for row in rows]


@router.get("/spent", summary="The privacy spent on my homes by research releases (owners)")
async def privacy_spent(principal: Owner, conn: ConnDep) -> list[SpentOnHome]:
    """Return, per home you own, the research releases that included it and the privacy loss they add up to.

    Aggregate releases spend rho (zCDP), which adds up over releases; the total is given with the epsilon
    of (epsilon, delta)-DP it implies. Per-household series hold your home only with your research consent,
    spend no rho, and are counted apart. A resident's rights go through the owner, who sees this for them.
    """
    return await research.spent_on_homes(conn, principal=principal)
