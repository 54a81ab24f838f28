"""The account page: the email address (and one awaiting confirmation), password, two factors, sessions.

Every form of a security change asks for the current password and, with two factors on, a current code,
and calls the same service as the API (api/services/account_security). The page that a confirmation link
opens asks before it confirms: a mail scanner that follows the link changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from api.deps import ConnDep, KeyringDep, OutboxDep, SecurityChange
from api.problems import Problem
from api.schemas.accounts import RecoveryCodes, TotpSetup
from api.services import account_security, accounts
from api.services.access import preferred_time_zone
from api.services.account_security import ChangeRequest, Proof
from api.web.auth_pages import refuse_other_origins
from api.web.render import DEFAULT_TIME_ZONE, PageRoute, page
from thuis.db import Connection

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Password = Annotated[str, Form(max_length=256)]
Code = Annotated[str, Form(max_length=32)]
EmailField = Annotated[str, Form(max_length=254)]


def _proof(password: str, code: str) -> Proof:
    return Proof(password, code.strip() or None)


async def _account_page(
    request: Request,
    conn: Connection,
    change: ChangeRequest,
    *,
    notice: str = "",
    error: str = "",
    status_code: int = 200,
    totp_setup: TotpSetup | None = None,
    recovery_codes: RecoveryCodes | None = None,
) -> Response:
    principal = change.principal
    mine = await accounts.account(conn, change.keyring, user_id=principal.user_id)
    zone = await preferred_time_zone(conn, principal=principal)
    return page(
        request,
        "account.html",
        principal=principal,
        status_code=status_code,
        account=mine,
        sessions=await accounts.sessions(conn, principal=principal),
        time_zone=zone or DEFAULT_TIME_ZONE,
        notice=notice,
        error=error,
        totp_setup=totp_setup,
        recovery_codes=recovery_codes,
        now=dt.datetime.now(dt.UTC),
    )


@router.get("/account")
async def account_page(request: Request, change: SecurityChange, conn: ConnDep) -> Response:
    """Show the account: address, pending address, two factors, sessions, and the forms to change them."""
    return await _account_page(request, conn, change)


@router.post("/account/email")
async def change_email(
    request: Request,
    change: SecurityChange,
    conn: ConnDep,
    current_password: Password,
    email: EmailField = "",
    totp_code: Code = "",
    remove: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Ask for a new address (a link goes to it), or remove the address."""
    new = None if remove else email.strip()
    if new is not None and not new:
        return await _account_page(request, conn, change, error="Give the new address.", status_code=422)
    try:
        await account_security.change_email(conn, change, _proof(current_password, totp_code), email=new)
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    notice = (
        "The address was removed; the old address has been told."
        if new is None
        else f"A link was sent to {new}: the address takes effect once it is followed. Your present "
        "address has been told; your other sessions were signed out."
    )
    return await _account_page(request, conn, change, notice=notice)


@router.post("/account/password")
async def change_password(
    request: Request,
    change: SecurityChange,
    conn: ConnDep,
    current_password: Password,
    new_password: Password,
    totp_code: Code = "",
) -> Response:
    """Change the password; the other sessions end."""
    try:
        await account_security.change_password(
            conn, change, _proof(current_password, totp_code), new=new_password
        )
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    return await _account_page(
        request, conn, change, notice="Your password was changed; your other sessions were signed out."
    )


@router.post("/account/totp")
async def start_totp(
    request: Request, change: SecurityChange, conn: ConnDep, current_password: Password
) -> Response:
    """Start setting up an authenticator app: show its secret and the form for its first code."""
    try:
        setup = await account_security.start_totp(conn, change, _proof(current_password, ""))
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    return await _account_page(request, conn, change, totp_setup=setup)


@router.post("/account/totp/confirm")
async def confirm_totp(
    request: Request, change: SecurityChange, conn: ConnDep, current_password: Password, totp_code: Code
) -> Response:
    """Turn two factors on with the app's first code; show the recovery codes, once."""
    try:
        codes = await account_security.confirm_totp(conn, change, password=current_password, code=totp_code)
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    return await _account_page(
        request,
        conn,
        change,
        notice="Two-factor authentication is on; your other sessions were signed out.",
        recovery_codes=codes,
    )


@router.post("/account/totp/disable")
async def disable_totp(
    request: Request, change: SecurityChange, conn: ConnDep, current_password: Password, totp_code: Code = ""
) -> Response:
    """Turn two factors off, where the role allows it."""
    try:
        await account_security.disable_totp(conn, change, _proof(current_password, totp_code))
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    return await _account_page(
        request, conn, change, notice="Two-factor authentication is off; your other sessions were signed out."
    )


@router.post("/account/recovery-codes")
async def renew_recovery_codes(
    request: Request, change: SecurityChange, conn: ConnDep, current_password: Password, totp_code: Code = ""
) -> Response:
    """Make new recovery codes and show them, once."""
    try:
        codes = await account_security.renew_recovery_codes(conn, change, _proof(current_password, totp_code))
    except Problem as problem:
        return await _account_page(request, conn, change, error=problem.detail, status_code=problem.status)
    return await _account_page(
        request, conn, change, notice="New recovery codes; the old ones no longer work.", recovery_codes=codes
    )


@router.get("/account/email/confirm")
async def confirm_email_form(request: Request, token: str = "") -> Response:
    """Show what following the link does, with the button that does it (a link alone changes nothing)."""
    return page(request, "email_confirm.html", principal=None, token=token[:128], done=False)


@router.post("/account/email/confirm")
async def confirm_email(
    request: Request,
    conn: ConnDep,
    keyring: KeyringDep,
    outbox: OutboxDep,
    token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Put the address in force; no sign-in needed, the token proves the mailbox."""
    refuse_other_origins(request)
    try:
        await account_security.confirm_email(conn, keyring, outbox, token=token)
    except Problem as problem:
        return page(
            request,
            "email_confirm.html",
            principal=None,
            status_code=problem.status,
            token="",
            done=False,
            error=problem.detail,
        )
    return page(request, "email_confirm.html", principal=None, token="", done=True)
