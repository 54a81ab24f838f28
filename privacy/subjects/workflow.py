"""Data-subject requests: filed, answered within 28 days, and every change of status kept in their trail.

An owner files for themselves, or for a resident who accepted a grant to one of the owner's homes and still
holds it (a resident exercises their rights through the owner who manages the gateway). The privacy officer
may file for anyone, for a request that reached them another way. Restriction, objection and consent filed
by the subject themselves take effect at once, and so does access (the export is made when it is
downloaded); the rest waits in the privacy officer's queue until they complete or refuse it. An erasure
takes four eyes: one privacy officer proposes completing it, and a second one, who neither filed nor
proposed it, approves it, which carries it out. A request's `details` hold no personal data; what is
personal (rectified values) is sealed with the subject's account key, so it goes when their key goes. What
anyone does about another person's request is recorded in the audit trail.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg

from privacy.keys.crypto import Keyring, open_json, seal_json
from privacy.keys.fields import SUBJECT_REQUESTS_DETAILS
from privacy.keys.ledger import ErasureLedger
from privacy.keys.subject_keys import SubjectKeyError, load_key, reserve_row_key
from privacy.subjects import effects as request_effects
from privacy.subjects import queries as q
from privacy.subjects.model import Actor, RequestRefused, SubjectRequest, TrailEntry
from thuis import audit
from thuis.catalogue import Catalogue
from thuis.db import Connection

KINDS = ("access", "rectification", "restriction", "objection", "consent", "erasure")
STATUSES = ("received", "in_progress", "completed", "refused")
CLOSED = frozenset({"completed", "refused"})
# Where a request may go from each open status; a closed request stays closed.
NEXT_STATUSES = {"received": ("in_progress", "completed", "refused"), "in_progress": ("completed", "refused")}
# What takes effect the moment the subject asks for it themselves: nothing to verify or weigh.
AT_ONCE = frozenset({"access", "restriction", "objection", "consent"})
FILERS = frozenset({"owner", "privacy_officer"})
# What takes a second privacy officer's approval to be carried out: what cannot be undone.
FOUR_EYES = frozenset({"erasure"})
# The audit trail's name for each status a request is moved to.
STATUS_ACTIONS = {"in_progress": "start", "completed": "complete", "refused": "refuse"}
__all__ = ["Actor", "RequestRefused", "SubjectRequest", "TrailEntry"]


async def file_request(
    conn: Connection,
    keyring: Keyring,
    *,
    filer: Actor,
    kind: str,
    subject_username: str | None,
    details: dict[str, Any],
    personal_details: dict[str, Any] | None = None,
) -> int:
    """File a request and return its id; what the subject asks for themselves takes effect at once."""
    if filer.role == "resident":
        raise RequestRefused(
            403,
            "a resident exercises their rights through the owner who manages the gateway of their home: "
            "ask the owner to file this request for you; you can follow it here",
        )
    if filer.role not in FILERS:
        raise RequestRefused(
            403, "data-subject requests are filed by owners and the privacy officer: ask the privacy officer"
        )
    if kind not in KINDS:
        raise RequestRefused(422, f"body field kind: must be one of {', '.join(KINDS)}")
    async with conn.transaction():
        subject = await _subject(conn, filer=filer, subject_username=subject_username)
        if kind == "rectification" and not await conn.fetchval(q.SELECT_HOLDS_CONTRACT, subject["user_id"]):
            raise RequestRefused(
                422,
                f"body field subject_username: {subject['username']} holds no contract, so there are no "
                "contract details to rectify; an account's email is corrected with PUT /api/v1/account/email",
            )
        sealed = None
        request_id = await reserve_row_key(conn, SUBJECT_REQUESTS_DETAILS)
        if personal_details:
            key = await load_key(conn, keyring, subject["key_id"])
            bound = SUBJECT_REQUESTS_DETAILS.at(request_id, subject["key_id"])
            sealed = seal_json(key, personal_details, context=bound)
        await conn.execute(
            q.INSERT_REQUEST,
            subject["user_id"],
            filer.user_id,
            kind,
            json.dumps(details),
            subject["key_id"] if sealed is not None else None,
            sealed,
            filer.role,
            "filed for themselves" if subject["user_id"] == filer.user_id else f"filed for {subject['role']}",
            request_id,
        )
        await _record_action(
            conn, actor=filer, subject_user_id=subject["user_id"], action="file", request_id=request_id
        )
        if kind in AT_ONCE and subject["user_id"] == filer.user_id:
            request = await _locked(conn, keyring, request_id)
            outcome = await request_effects.take_effect(conn, keyring, None, request=request)
            await _set_status(conn, request_id, actor=filer, status="completed", outcome=outcome, note=None)
    return request_id


async def _subject(conn: Connection, *, filer: Actor, subject_username: str | None) -> asyncpg.Record:
    """Return the account a request is about, if the filer may file for it."""
    username = (subject_username or filer.username).strip().lower()
    subject = await conn.fetchrow(q.SELECT_ACCOUNT_BY_USERNAME, username)
    if username == filer.username and subject is not None:
        return subject
    if filer.role == "privacy_officer":
        if subject is None:
            raise RequestRefused(422, f"body field subject_username: there is no account {username!r}")
        return subject
    # An owner: only a resident of one of their homes, and the same answer whether the account exists or
    # not, so that the refusal tells nothing about other people.
    if (
        subject is None
        or subject["role"] != "resident"
        or subject["closed_at"] is not None
        or await conn.fetchval(q.SELECT_RESIDENT_OF_OWNER, subject["user_id"], filer.user_id) is None
    ):
        raise RequestRefused(
            403,
            f"an owner files for themselves or for a resident with access to one of their homes; "
            f"{username!r} is not such a resident",
        )
    return subject


async def change_status(
    conn: Connection,
    keyring: Keyring,
    catalogue: Catalogue,
    *,
    request_id: int,
    actor: Actor,
    status: str,
    note: str | None,
) -> None:
    """Move a request on (the privacy officer); completing it does what it asks, refusing needs a reason.

    An erasure is not completed here: a second officer's approval carries it out (`decide_proposal`).
    """
    if actor.role != "privacy_officer":
        raise RequestRefused(403, "only the privacy officer works the queue of data-subject requests")
    if status not in STATUSES:
        raise RequestRefused(422, f"body field status: must be one of {', '.join(STATUSES)}")
    async with conn.transaction():
        request = await _locked(conn, keyring, request_id)
        if request.closed_at is not None:
            raise RequestRefused(
                409, f"request {request_id} was closed ({request.status}) at {request.closed_at.isoformat()}"
            )
        allowed = NEXT_STATUSES[request.status]
        if status not in allowed:
            raise RequestRefused(
                409, f"request {request_id} is {request.status}; it can go to {' or '.join(allowed)} only"
            )
        if status == "completed" and request.kind in FOUR_EYES:
            raise RequestRefused(
                409,
                f"request {request_id} is an {request.kind}: it is carried out only when a second privacy "
                f"officer approves it; propose it with POST /api/v1/privacy/requests/{request_id}/proposal",
            )
        outcome = None
        if status == "refused":
            if not note:
                raise RequestRefused(
                    422, "body field note: say why the request is refused; the subject is told"
                )
            outcome = note
        await _record_action(
            conn,
            actor=actor,
            subject_user_id=request.subject_user_id,
            action=STATUS_ACTIONS[status],
            request_id=request_id,
        )
        if status == "completed":
            outcome = await request_effects.take_effect(conn, keyring, catalogue, request=request)
        await _set_status(conn, request_id, actor=actor, status=status, outcome=outcome, note=note)


async def propose_completion(
    conn: Connection, keyring: Keyring, *, request_id: int, actor: Actor, note: str | None
) -> None:
    """Propose completing an erasure (a privacy officer); a second privacy officer approves it."""
    async with conn.transaction():
        request = await _open_four_eyes_request(conn, keyring, request_id=request_id, actor=actor)
        if request.proposed_at is not None:
            raise RequestRefused(
                409,
                f"request {request_id} was proposed for completion by "
                f"{request.proposed_by_username or 'an erased account'} already",
            )
        await _record_action(
            conn,
            actor=actor,
            subject_user_id=request.subject_user_id,
            action=f"propose_{request.kind}",
            request_id=request_id,
        )
        entry = f"proposed: {note}" if note else "proposed, for a second privacy officer to approve"
        if await conn.fetchval(q.SET_PROPOSAL, request_id, actor.user_id, actor.role, entry) is None:
            raise RequestRefused(409, f"request {request_id} changed meanwhile; look at it again")


async def decide_proposal(
    conn: Connection,
    keyring: Keyring,
    catalogue: Catalogue,
    ledger: ErasureLedger,
    *,
    request_id: int,
    actor: Actor,
    approve: bool,
    note: str | None,
) -> None:
    """Approve a proposed erasure (a second privacy officer), carrying it out, or reject the proposal.

    Neither the officer who proposed it nor the one who filed it may approve it; anyone may reject it (the
    proposer so withdraws it), after which any officer may propose it again. The approval's erasure is
    written to the erasure ledger before its transaction, which records the approval too, commits.
    """
    async with conn.transaction():
        request = await _open_four_eyes_request(conn, keyring, request_id=request_id, actor=actor)
        if request.proposed_at is None:
            raise RequestRefused(
                409,
                f"request {request_id} has no proposal to decide on; propose it with "
                f"POST /api/v1/privacy/requests/{request_id}/proposal",
            )
        if not approve:
            if not note:
                raise RequestRefused(422, "body field note: say why the proposal is rejected")
            await _record_action(
                conn,
                actor=actor,
                subject_user_id=request.subject_user_id,
                action=f"reject_{request.kind}",
                request_id=request_id,
            )
            await conn.fetchval(
                q.CLEAR_PROPOSAL, request_id, actor.user_id, actor.role, f"proposal rejected: {note}"
            )
            return
        if actor.user_id == request.proposed_by_user_id:
            raise RequestRefused(
                403, f"you proposed request {request_id} yourself: a second privacy officer approves it"
            )
        if actor.user_id == request.filed_by_user_id:
            raise RequestRefused(
                403,
                f"you filed request {request_id} yourself: a privacy officer who did not file it approves it",
            )
        if request.proposed_by_user_id is None:
            # The database would refuse to complete it (migration 0013), but only after the erasure was
            # written to the ledger: refused here, before anything is erased.
            raise RequestRefused(
                409,
                f"the privacy officer who proposed request {request_id} has no account any more: reject the "
                "proposal, and have it proposed again",
            )
        await _record_action(
            conn,
            actor=actor,
            subject_user_id=request.subject_user_id,
            action=f"approve_{request.kind}",
            request_id=request_id,
        )
        if await conn.fetchval(q.SET_APPROVAL, request_id, actor.user_id) is None:
            raise RequestRefused(409, f"request {request_id} changed meanwhile; look at it again")
        outcome = await request_effects.take_effect(conn, keyring, catalogue, request=request, ledger=ledger)
        await _set_status(conn, request_id, actor=actor, status="completed", outcome=outcome, note=note)


async def _open_four_eyes_request(
    conn: Connection, keyring: Keyring, *, request_id: int, actor: Actor
) -> SubjectRequest:
    """Return an open request that takes four eyes, locked; refuse anyone but a privacy officer."""
    if actor.role != "privacy_officer":
        raise RequestRefused(403, "only privacy officers propose and approve carrying out a request")
    request = await _locked(conn, keyring, request_id)
    if request.kind not in FOUR_EYES:
        raise RequestRefused(
            409,
            f"request {request_id} is a request for {request.kind}, which one privacy officer completes: "
            f"use POST /api/v1/privacy/requests/{request_id}/status",
        )
    if request.closed_at is not None:
        raise RequestRefused(
            409, f"request {request_id} was closed ({request.status}) at {request.closed_at.isoformat()}"
        )
    if actor.user_id == request.subject_user_id:
        raise RequestRefused(
            403, f"request {request_id} is about you: other privacy officers propose and approve it"
        )
    return request


async def _record_action(
    conn: Connection, *, actor: Actor, subject_user_id: int | None, action: str, request_id: int
) -> None:
    """Record in the audit trail what someone did about another person's request."""
    if subject_user_id is not None and subject_user_id != actor.user_id:
        await audit.record_action(
            conn,
            actor=audit.Reader(actor.user_id, actor.role),
            subject_user_id=subject_user_id,
            action=action,
            resource="subject_request",
            detail=f"request {request_id}",
        )


async def _set_status(
    conn: Connection, request_id: int, *, actor: Actor, status: str, outcome: str | None, note: str | None
) -> None:
    changed = await conn.fetchval(
        q.UPDATE_STATUS, request_id, status, outcome, actor.user_id, actor.role, note or outcome
    )
    if changed is None:
        raise RequestRefused(409, f"request {request_id} was closed meanwhile")


async def _locked(conn: Connection, keyring: Keyring, request_id: int) -> SubjectRequest:
    row = await conn.fetchrow(q.SELECT_REQUEST_FOR_UPDATE, request_id)
    if row is None:
        raise RequestRefused(404, f"request {request_id} not found")
    return await _request(conn, keyring, row)


async def load_request(
    conn: Connection, keyring: Keyring, *, request_id: int, actor: Actor
) -> SubjectRequest:
    """Return a request the person may see; one they may not see does not exist for them (404)."""
    row = await conn.fetchrow(q.SELECT_REQUEST, request_id)
    request = None if row is None else await _request(conn, keyring, row)
    if request is None or not request.may_see(actor):
        raise RequestRefused(404, f"request {request_id} not found")
    return request


async def list_requests(
    conn: Connection,
    keyring: Keyring,
    *,
    actor: Actor,
    status: str | None = None,
    due_before: dt.datetime | None = None,
    limit: int = 100,
) -> list[SubjectRequest]:
    """Return the privacy officer every request (filtered, soonest due first); anyone else their own."""
    if actor.role == "privacy_officer":
        rows = await conn.fetch(q.SELECT_ALL_REQUESTS, status, due_before, limit)
    else:
        rows = await conn.fetch(q.SELECT_REQUESTS_OF_PERSON, actor.user_id, limit)
        rows = [
            row
            for row in rows
            if (status is None or row["status"] == status)
            and (due_before is None or row["due_at"] < due_before)
        ]
    return [await _request(conn, keyring, row) for row in rows]


async def open_requests(conn: Connection, keyring: Keyring, *, limit: int = 500) -> list[SubjectRequest]:
    """Return the open requests, the soonest due first: the privacy officer's queue."""
    return [await _request(conn, keyring, row) for row in await conn.fetch(q.SELECT_OPEN_REQUESTS, limit)]


async def _request(conn: Connection, keyring: Keyring, row: asyncpg.Record) -> SubjectRequest:
    personal = None
    if row["details_ciphertext"] is not None and row["details_key_id"] is not None:
        try:
            key = await load_key(conn, keyring, row["details_key_id"])
            bound = SUBJECT_REQUESTS_DETAILS.at(row["request_id"], row["details_key_id"])
            personal = open_json(key, bytes(row["details_ciphertext"]), context=bound)
        except SubjectKeyError:
            personal = None
    return SubjectRequest(
        request_id=row["request_id"],
        kind=row["kind"],
        subject_user_id=row["subject_user_id"],
        subject_username=row["subject_username"],
        subject_role=row["subject_role"],
        filed_by_user_id=row["filed_by_user_id"],
        filed_by_username=row["filed_by_username"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        status=row["status"],
        closed_at=row["closed_at"],
        details=json.loads(row["details"]),
        personal_details=personal,
        outcome=row["outcome"],
        proposed_by_user_id=row["proposed_by_user_id"],
        proposed_by_username=row["proposed_by_username"],
        proposed_at=row["proposed_at"],
        approved_by_user_id=row["approved_by_user_id"],
        approved_by_username=row["approved_by_username"],
        approved_at=row["approved_at"],
        subject_pseudonym=row["subject_pseudonym"],
        trail=[
            TrailEntry(
                at=dt.datetime.fromisoformat(entry["at"]),
                actor_user_id=entry.get("actor_user_id"),
                role=entry["role"],
                status=entry["status"],
                note=entry.get("note"),
            )
            for entry in json.loads(row["trail"])
        ],
    )


async def residents_of_owner(conn: Connection, *, owner_user_id: int) -> list[str]:
    """Return the usernames of the residents an owner may file for."""
    return [row["username"] for row in await conn.fetch(q.SELECT_RESIDENTS_OF_OWNER, owner_user_id)]


async def accounts_by_email(conn: Connection, keyring: Keyring, *, email: str) -> list[asyncpg.Record]:
    """Return the accounts with this email address, found by its keyed hash (the privacy officer)."""
    return list(await conn.fetch(q.SELECT_ACCOUNTS_BY_EMAIL_HASH, keyring.email_hash(email)))
