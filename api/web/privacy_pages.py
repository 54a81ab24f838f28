"""Pages of data-subject requests: an owner files and follows them, the privacy officer works the queue."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from api.deps import MAX_ID, CatalogueDep, ConnDep, Id, KeyringDep, LedgerDep, SignedIn
from api.problems import Problem
from api.schemas.privacy import REQUEST_FILING
from api.security import Principal
from api.services import privacy, research
from api.services.access import preferred_time_zone
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, error_page, page, redirect
from privacy.keys.crypto import Keyring
from privacy.research.accounting import DELTA
from privacy.subjects.effects import RECTIFIABLE_FIELDS
from privacy.subjects.workflow import FOUR_EYES, SubjectRequest
from thuis.db import Connection

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The wording shown with each consent box; the record keeps exactly what was shown.
CONSENT_WORDING = {
    "marketing": (
        "Thuis may send me news and offers about energy products by email. I can withdraw this at any time."
    ),
    "research": (
        "Thuis may use the measurements of my homes for market research beyond anonymised statistics. "
        "I can withdraw this at any time."
    ),
    "analytics_cookies": (
        "The portal may set analytics cookies to improve the website. I can withdraw this at any time."
    ),
}
KIND_NAMES = {
    "access": "a copy of the data",
    "rectification": "rectification",
    "restriction": "restriction",
    "objection": "objection",
    "consent": "consent",
    "erasure": "erasure",
}
FIELD_LABELS = {
    "holder_name": "Name",
    "initials": "Initials",
    "street_address": "Street and number",
    "postcode": "Postcode",
    "city": "City",
    "email": "Email for invoices",
    "bank_account": "Bank account (IBAN)",
}
KindId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@router.get("/privacy")
async def privacy_page(
    request: Request, principal: SignedIn, conn: ConnDep, keyring: KeyringDep, filed: KindId = None
) -> Response:
    """Show the person's requests with status and due date, and (owners) the forms to file one."""
    if principal.role == "privacy_officer":
        return redirect("/privacy/queue")
    return await _privacy_page(request, principal, conn, keyring, filed=filed)


async def _privacy_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    keyring: Keyring,
    *,
    filed: int | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    mine = await privacy.requests_of(conn, keyring, principal=principal)
    residents = await privacy.residents_of_owner(conn, principal=principal)
    zone = await preferred_time_zone(conn, principal=principal)
    # The privacy spent on an owner's homes by research; a resident's is the owner's to see.
    spent = await research.spent_on_homes(conn, principal=principal) if principal.role == "owner" else []
    notice = ""
    for item in mine:
        if item.request_id == filed:
            notice = f"Request {item.request_id} for {KIND_NAMES[item.kind]} received: it is {_status(item)}."
    return page(
        request,
        "privacy.html",
        principal=principal,
        status_code=status_code,
        requests=mine,
        residents=residents,
        spent=spent,
        delta=DELTA,
        now=dt.datetime.now(dt.UTC),
        time_zone=zone or DEFAULT_TIME_ZONE,
        notice=notice,
        error=error,
        consent_wording=CONSENT_WORDING,
        kind_names=KIND_NAMES,
        field_labels={name: FIELD_LABELS[name] for name in RECTIFIABLE_FIELDS},
    )


def _status(item: SubjectRequest) -> str:
    return item.status.replace("_", " ")


@router.post("/privacy/requests")
async def file_request(request: Request, principal: SignedIn, conn: ConnDep, keyring: KeyringDep) -> Response:
    """File a request from one of the page's forms (optional_principal has checked its CSRF token)."""
    form = {name: value for name, value in (await request.form()).items() if isinstance(value, str)}
    try:
        body = REQUEST_FILING.validate_python(_filing(form))
    except ValidationError as invalid:
        message = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'form'}: {error['msg']}"
            for error in invalid.errors()
        )
        return await _privacy_page(request, principal, conn, keyring, error=message, status_code=422)
    except ValueError as refused:
        return await _privacy_page(request, principal, conn, keyring, error=str(refused), status_code=422)
    try:
        filed = await privacy.file(conn, keyring, principal=principal, filing=body)
    except Problem as refused:
        if refused.status != 422:
            raise
        return await _privacy_page(request, principal, conn, keyring, error=refused.detail, status_code=422)
    return redirect(f"/privacy?filed={filed.request_id}")


def _filing(form: dict[str, str]) -> dict[str, Any]:
    """Return the API body a form of the page stands for."""
    kind = form.get("kind", "")
    details: dict[str, Any] = {}
    if kind in ("restriction", "objection"):
        details = {"action": form.get("action", "")}
        if kind == "objection":
            details["purpose"] = form.get("purpose", "")
    elif kind == "consent":
        purpose = form.get("purpose", "")
        details = {"purpose": purpose, "given": form.get("given") == "yes"}
        details["wording"] = CONSENT_WORDING.get(purpose, "")
    elif kind == "rectification":
        details = {name: value for name in RECTIFIABLE_FIELDS if (value := form.get(name, "").strip())}
    elif kind == "erasure" and form.get("confirm") != "yes":
        raise ValueError("erasure: tick the box to confirm that everything that can go should go")
    return {"kind": kind, "subject_username": form.get("subject_username") or None, "details": details}


@router.get("/privacy/queue")
async def queue(
    request: Request, principal: SignedIn, conn: ConnDep, keyring: KeyringDep, changed: KindId = None
) -> Response:
    """Show the privacy officer the open requests, the soonest due first, overdue ones highlighted."""
    return await _queue_page(request, principal, conn, keyring, changed=changed)


async def _queue_page(
    request: Request,
    principal: Principal,
    conn: Connection,
    keyring: Keyring,
    *,
    changed: int | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    if principal.role != "privacy_officer":
        return error_page(request, 403, "this page is for the privacy officer only", principal)
    open_requests = await privacy.open_queue(conn, keyring, principal=principal)
    notice = ""
    if changed is not None:
        item = await privacy.request(conn, keyring, principal=principal, request_id=changed)
        notice = f"Request {item.request_id} is {_status(item)}" + (
            f": {item.outcome}" if item.outcome else "."
        )
    zone = await preferred_time_zone(conn, principal=principal)
    return page(
        request,
        "privacy_queue.html",
        principal=principal,
        status_code=status_code,
        requests=open_requests,
        now=dt.datetime.now(dt.UTC),
        time_zone=zone or DEFAULT_TIME_ZONE,
        notice=notice,
        error=error,
        kind_names=KIND_NAMES,
        four_eyes=FOUR_EYES,
    )


@router.post("/privacy/requests/{request_id}/proposal")
async def propose(
    request: Request, principal: SignedIn, request_id: Id, conn: ConnDep, keyring: KeyringDep
) -> Response:
    """Propose carrying out an erasure from the queue; a second privacy officer approves it there."""
    note = _note((await request.form()).get("note"))
    try:
        await privacy.propose(conn, keyring, principal=principal, request_id=request_id, note=note)
    except Problem as refused:
        return await _queue_refusal(request, principal, conn, keyring, request_id, refused)
    return redirect(f"/privacy/queue?changed={request_id}")


@router.post("/privacy/requests/{request_id}/approval")
async def decide(
    request: Request,
    principal: SignedIn,
    request_id: Id,
    conn: ConnDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    ledger: LedgerDep,
) -> Response:
    """Approve a proposed erasure from the queue (carrying it out), or reject the proposal with a note."""
    form = await request.form()
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        refused = Problem(422, "form field decision: must be approve or reject")
        return await _queue_refusal(request, principal, conn, keyring, request_id, refused)
    try:
        await privacy.decide(
            conn,
            keyring,
            catalogue,
            ledger,
            principal=principal,
            request_id=request_id,
            approve=decision == "approve",
            note=_note(form.get("note")),
        )
    except Problem as refused:
        return await _queue_refusal(request, principal, conn, keyring, request_id, refused)
    return redirect(f"/privacy/queue?changed={request_id}")


def _note(value: object) -> str | None:
    """Return a form's note, or None when it is left empty."""
    return value.strip() or None if isinstance(value, str) else None


async def _queue_refusal(
    request: Request,
    principal: Principal,
    conn: Connection,
    keyring: Keyring,
    request_id: int,
    refused: Problem,
) -> Response:
    """Show the queue again with why the action on a request was refused (an error page when not allowed)."""
    if refused.status not in (403, 409, 422) or principal.role != "privacy_officer":
        raise refused
    error = f"Request {request_id}: {refused.detail}"
    return await _queue_page(request, principal, conn, keyring, error=error, status_code=refused.status)


@router.post("/privacy/requests/{request_id}/status")
async def change_status(
    request: Request,
    principal: SignedIn,
    request_id: Id,
    conn: ConnDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
) -> Response:
    """Move a request on from the queue: start, complete (which carries it out) or refuse with a note."""
    form = await request.form()
    status, note = form.get("status"), form.get("note")
    try:
        await privacy.change_status(
            conn,
            keyring,
            catalogue,
            principal=principal,
            request_id=request_id,
            status=status if isinstance(status, str) else "",
            note=note.strip() or None if isinstance(note, str) else None,
        )
    except Problem as refused:
        if refused.status not in (409, 422):
            raise
        error = f"Request {request_id}: {refused.detail}"
        return await _queue_page(request, principal, conn, keyring, error=error, status_code=refused.status)
    return redirect(f"/privacy/queue?changed={request_id}")
