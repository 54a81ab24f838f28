"""Data-subject requests in the portal: filing, following and working them, for the API and the pages alike.

The rules live in privacy/subjects/; this module turns their refusals into problems, lets only the subject
download their access export (never the owner who filed it for them, never a privacy officer), and records in
the audit trail every time a request's personal details are shown to someone other than their subject.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from api.problems import Problem
from api.schemas.privacy import SubjectRequest as SubjectRequestBody
from api.schemas.privacy import TrailEntry
from api.security import Principal
from privacy.keys.crypto import Keyring
from privacy.keys.ledger import ErasureLedger
from privacy.subjects import workflow
from privacy.subjects.access_export import access_export
from privacy.subjects.model import Actor, RequestRefused
from thuis import audit
from thuis.catalogue import Catalogue
from thuis.db import Connection


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


def body_of(request: workflow.SubjectRequest, *, now: dt.datetime, viewer: Principal) -> SubjectRequestBody:
    """Return the API's view of a request for the person who asked; only its subject gets the download."""
    until = request.download_until() if request.may_download(actor_of(viewer)) else None
    return SubjectRequestBody(
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
        proposed_by_username=request.proposed_by_username,
        proposed_at=request.proposed_at,
        approved_by_username=request.approved_by_username,
        approved_at=request.approved_at,
        subject_pseudonym=request.subject_pseudonym,
    )


async def record_request_read(conn: Connection, *, actor: Actor, request: workflow.SubjectRequest) -> None:
    """Record that someone other than the subject was shown a request's personal details."""
    if request.personal_details and request.subject_user_id not in (None, actor.user_id):
        await audit.record_read(
            conn,
            reader=audit.Reader(actor.user_id, actor.role),
            subject_user_id=request.subject_user_id,
            resource="request_details",
            detail=f"request {request.request_id}",
        )


async def file(
    conn: Connection, keyring: Keyring, *, principal: Principal, filing: Any
) -> workflow.SubjectRequest:
    """File a request (for oneself, or an owner for a resident of their home); return it as filed."""
    actor = actor_of(principal)
    kind, subject, details, personal = filing_parts(filing)
    with answered_as_problems():
        request_id = await workflow.file_request(
            conn,
            keyring,
            filer=actor,
            kind=kind,
            subject_username=subject,
            details=details,
            personal_details=personal,
        )
        return await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)


async def requests_of(
    conn: Connection,
    keyring: Keyring,
    *,
    principal: Principal,
    status: str | None = None,
    due_before: dt.datetime | None = None,
    limit: int = 100,
) -> list[workflow.SubjectRequest]:
    """Return the person's requests and those they filed (every request for the privacy officer)."""
    actor = actor_of(principal)
    found = await workflow.list_requests(
        conn, keyring, actor=actor, status=status, due_before=due_before, limit=limit
    )
    for item in found:
        await record_request_read(conn, actor=actor, request=item)
    return found


async def request(
    conn: Connection, keyring: Keyring, *, principal: Principal, request_id: int
) -> workflow.SubjectRequest:
    """Return a request the person is the subject of or filed (any for the privacy officer)."""
    actor = actor_of(principal)
    with answered_as_problems():
        found = await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)
    await record_request_read(conn, actor=actor, request=found)
    return found


async def change_status(
    conn: Connection,
    keyring: Keyring,
    catalogue: Catalogue,
    *,
    principal: Principal,
    request_id: int,
    status: str,
    note: str | None,
) -> workflow.SubjectRequest:
    """Move a request on (the privacy officer); completing one carries it out. Return it as it is now."""
    actor = actor_of(principal)
    with answered_as_problems():
        await workflow.change_status(
            conn, keyring, catalogue, request_id=request_id, actor=actor, status=status, note=note
        )
        return await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)


async def propose(
    conn: Connection, keyring: Keyring, *, principal: Principal, request_id: int, note: str | None
) -> workflow.SubjectRequest:
    """Propose carrying out an erasure (a privacy officer); return the request as it is now."""
    actor = actor_of(principal)
    with answered_as_problems():
        await workflow.propose_completion(conn, keyring, request_id=request_id, actor=actor, note=note)
        return await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)


async def decide(
    conn: Connection,
    keyring: Keyring,
    catalogue: Catalogue,
    ledger: ErasureLedger,
    *,
    principal: Principal,
    request_id: int,
    approve: bool,
    note: str | None,
) -> workflow.SubjectRequest:
    """Approve a proposed erasure (a second privacy officer), carrying it out, or reject the proposal.

    The erasure is written to the erasure ledger before it commits.
    """
    actor = actor_of(principal)
    with answered_as_problems():
        await workflow.decide_proposal(
            conn, keyring, catalogue, ledger, request_id=request_id, actor=actor, approve=approve, note=note
        )
        return await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)


async def open_queue(
    conn: Connection, keyring: Keyring, *, principal: Principal
) -> list[workflow.SubjectRequest]:
    """Return every open request by due date: the privacy officer's queue (recorded as read)."""
    actor = actor_of(principal)
    found = await workflow.open_requests(conn, keyring)
    for item in found:
        await record_request_read(conn, actor=actor, request=item)
    return found


async def accounts_by_email(
    conn: Connection, keyring: Keyring, *, principal: Principal, email: str
) -> list[asyncpg.Record]:
    """Return the accounts with an email address, found by its keyed hash; the lookup is recorded."""
    rows = await workflow.accounts_by_email(conn, keyring, email=email)
    for row in rows:
        await audit.record_read(
            conn,
            reader=audit.Reader(principal.user_id, principal.role),
            subject_user_id=row["user_id"],
            resource="account",
            detail="found by email",
        )
    return rows


async def downloadable_export(
    conn: Connection, keyring: Keyring, *, principal: Principal, request_id: int
) -> workflow.SubjectRequest:
    """Return an access request whose export the person, its subject, may download now; refuse anyone else."""
    actor = actor_of(principal)
    with answered_as_problems():
        found = await workflow.load_request(conn, keyring, request_id=request_id, actor=actor)
    _check_downloadable(found, actor=actor, now=dt.datetime.now(dt.UTC))
    return found


async def export_stream(
    pool: asyncpg.Pool, keyring: Keyring, catalogue: Catalogue, *, found: workflow.SubjectRequest
) -> AsyncIterator[bytes]:
    """Stream the ZIP of an access export on a connection of its own, held while it streams."""
    if found.subject_user_id is None:
        raise RuntimeError("the export of an erased subject was not refused")
    async with pool.acquire() as conn:
        async for chunk in access_export(
            conn, keyring, catalogue, user_id=found.subject_user_id, request_id=found.request_id
        ):
            yield chunk


def _check_downloadable(found: workflow.SubjectRequest, *, actor: Actor, now: dt.datetime) -> None:
    """Refuse, saying why, unless the person is the subject and the export can be downloaded now."""
    if found.kind != "access":
        raise Problem(
            409, f"request {found.request_id} is a request for {found.kind}; only access has a download"
        )
    if found.subject_user_id is None:
        raise Problem(409, f"the subject of request {found.request_id} was erased: nothing is held any more")
    if not found.may_download(actor):
        # The owner who filed it for a resident and the privacy officer see the request, never its content.
        detail = (
            f"only the subject of request {found.request_id} downloads its access export, "
            "from their privacy page"
        )
        if actor.role == "privacy_officer":
            detail += "; a privacy officer never downloads a subject's data"
        raise Problem(403, detail)
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


async def residents_of_owner(conn: Connection, *, principal: Principal) -> list[str]:
    """Return the usernames of the residents an owner may file requests for (none for anyone else)."""
    if principal.role != "owner":
        return []
    return await workflow.residents_of_owner(conn, owner_user_id=principal.user_id)
