"""What completing a data-subject request does, kind by kind; each returns the outcome the subject is told."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from privacy.keys.crypto import Keyring, open_json, seal_json
from privacy.keys.fields import CONTRACT_HOLDER_FIELDS, CONTRACTS_HOLDER
from privacy.keys.ledger import ErasureLedger, LedgerError
from privacy.keys.subject_keys import load_key
from privacy.subjects import queries as q
from privacy.subjects.erasure import ErasureError, erase_subject
from privacy.subjects.model import DOWNLOAD_PERIOD, RequestRefused, SubjectRequest
from thuis.catalogue import Catalogue
from thuis.db import Connection

# The fields of a billing record only the privacy officer changes (the owner corrects their account's email
# and their homes' addresses themselves).
RECTIFIABLE_FIELDS = CONTRACT_HOLDER_FIELDS
OBJECTION_COLUMNS = {"marketing": q.SET_OBJECTS_TO_MARKETING, "research": q.SET_OBJECTS_TO_RESEARCH}

log = logging.getLogger(__name__)


async def take_effect(
    conn: Connection,
    keyring: Keyring,
    catalogue: Catalogue | None,
    *,
    request: SubjectRequest,
    ledger: ErasureLedger | None = None,
) -> str:
    """Do what a request asks, in the caller's transaction; return the outcome in words."""
    if request.subject_user_id is None:
        if request.kind == "erasure":
            return "erased already: the account no longer exists"
        raise RequestRefused(
            409, f"the subject of request {request.request_id} was erased; refuse it with a note instead"
        )
    if request.kind == "rectification":
        return await _rectify(conn, keyring, request)
    if request.kind == "erasure":
        if catalogue is None or ledger is None:
            raise RuntimeError("erasure needs the catalogue and the erasure ledger")
        return await _erase(conn, catalogue, ledger, request)
    return await _SETTINGS[request.kind](conn, request.subject_user_id, request.details)


async def _access(_conn: Connection, _subject: int, _details: dict[str, Any]) -> str:
    until = dt.datetime.now(dt.UTC) + DOWNLOAD_PERIOD
    return f"the access export is ready to download until {until.date().isoformat()}"


async def _restriction(conn: Connection, subject: int, details: dict[str, Any]) -> str:
    start = details["action"] == "start"
    await conn.execute(q.SET_RESTRICTED, subject, start)
    if start:
        return "processing restricted from now on: no exports, no marketing, until the restriction is lifted"
    return "restriction lifted"


async def _objection(conn: Connection, subject: int, details: dict[str, Any]) -> str:
    start, purpose = details["action"] == "start", details["purpose"]
    await conn.execute(OBJECTION_COLUMNS[purpose], subject, start)
    return (
        f"objection to {purpose} recorded: no {purpose} from now on"
        if start
        else f"objection to {purpose} lifted"
    )


async def _consent(conn: Connection, subject: int, details: dict[str, Any]) -> str:
    recorded_at = await conn.fetchval(
        q.INSERT_CONSENT, subject, details["purpose"], details["given"], details["wording"]
    )
    given = "given" if details["given"] else "withdrawn"
    return f"consent to {details['purpose']} {given}, recorded at {recorded_at.isoformat()} with its wording"


# What the requests that set something of the subject's account do.
_SETTINGS: dict[str, Callable[[Connection, int, dict[str, Any]], Awaitable[str]]] = {
    "access": _access,
    "restriction": _restriction,
    "objection": _objection,
    "consent": _consent,
}


async def _rectify(conn: Connection, keyring: Keyring, request: SubjectRequest) -> str:
    """Apply the rectified values to every billing record the subject holds, sealed with its own key."""
    changes = request.personal_details
    if not changes:
        raise RequestRefused(409, f"request {request.request_id} holds no values to rectify (any more)")
    contracts = await conn.fetch(q.SELECT_CONTRACTS_OF_HOLDER, request.subject_user_id)
    if not contracts:
        raise RequestRefused(409, "the subject holds no contract any more; refuse the request with a note")
    for contract in contracts:
        key = await load_key(conn, keyring, contract["key_id"])
        bound = CONTRACTS_HOLDER.at(contract["contract_id"], contract["key_id"])
        holder = open_json(key, bytes(contract["holder_ciphertext"]), context=bound)
        holder.update({name: value for name, value in changes.items() if name in RECTIFIABLE_FIELDS})
        sealed = seal_json(key, holder, context=bound)
        await conn.execute(q.UPDATE_CONTRACT_HOLDER, contract["contract_id"], sealed)
    fields = ", ".join(name.replace("_", " ") for name in sorted(changes))
    records = f"{len(contracts)} billing record{'s' * (len(contracts) != 1)}"
    return f"rectified in {records}: {fields}"


async def _erase(
    conn: Connection, catalogue: Catalogue, ledger: ErasureLedger, request: SubjectRequest
) -> str:
    """Erase the subject; their requests stay as proof they were answered, naming no one."""
    subject = request.subject_user_id
    if subject is None:  # take_effect answers this case
        raise RuntimeError("no subject to erase")
    # Captured before erasure: afterwards nothing links these requests to the subject any more.
    request_ids = [row["request_id"] for row in await conn.fetch(q.SELECT_REQUEST_IDS_OF_PERSON, subject)]
    try:
        result = await erase_subject(conn, catalogue, ledger, user_id=subject)
    except ErasureError as err:
        raise RequestRefused(409, f"erasure cannot be done: {err}") from None
    except LedgerError as err:
        # The erasure rolls back with the caller's transaction; the officer is told, the path is logged.
        log.error("erasure of request %d not done: %s", request.request_id, err)  # noqa: TRY400 - no trace needed
        raise RequestRefused(
            503,
            f"request {request.request_id}: the erasure ledger cannot be written, so nothing was erased; the "
            "operator must make it writable before the erasure is approved again",
        ) from None
    await conn.execute(q.SCRUB_TRAIL_ACTOR, request_ids, subject)
    removed = sum(result.removed.values())
    parts = [f"erased: {removed} records removed and the data key destroyed"]
    parts += [note for note in (result.refusal(), result.pseudonymised_note()) if note is not None]
    return "; ".join(parts)
