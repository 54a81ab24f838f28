"""Signing in and out, and the signed-in person's own account: preferences, sessions, security changes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import ConnDep, KeyringDep, OutboxDep, PoolDep, SecurityChange, SettingsDep, SignedIn
from api.problems import PROBLEM_RESPONSES, not_found
from api.schemas.accounts import (
    Account,
    EmailChange,
    EmailConfirmation,
    PasswordChange,
    Preferences,
    RecoveryCodes,
    SecurityProof,
    SessionInfo,
    SignInRequest,
    SignInResponse,
    TotpConfirm,
    TotpSetup,
)
from api.services import account_security, accounts
from api.services.account_security import Proof
from api.services.signin import client_ip, sign_in

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)


@router.post("/auth/sign-in", tags=["auth"], summary="Sign in; get a bearer token")
async def sign_in_for_token(
    request: Request, body: SignInRequest, pool: PoolDep, settings: SettingsDep, keyring: KeyringDep
) -> SignInResponse:
    """Check the username, password and, where two factors apply, `totp_code`; return a bearer token."""
    session = await sign_in(
        pool,
        settings,
        keyring=keyring,
        username=body.username,
        password=body.password,
        second_factor=body.totp_code,
        kind="api",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return SignInResponse(token=session.token, expires_at=session.expires_at)


@router.post("/auth/sign-out", tags=["auth"], status_code=204, summary="End this session")
async def sign_out(principal: SignedIn, conn: ConnDep) -> Response:
    """End the session the request came with."""
    await accounts.end_session(conn, user_id=principal.user_id, session_hash=principal.session_hash)
    return Response(status_code=204)


@router.get("/account", tags=["account"], summary="Who is signed in")
async def account(principal: SignedIn, conn: ConnDep, keyring: KeyringDep) -> Account:
    """Return the signed-in person's account and display preferences."""
    return await accounts.account(conn, keyring, user_id=principal.user_id)


@router.put(
    "/account/email",
    tags=["account"],
    status_code=202,
    summary="Ask for a new email address (in force once confirmed), or remove it",
)
async def change_email(
    change: SecurityChange, body: EmailChange, conn: ConnDep, response: Response
) -> Account:
    """Ask for a new address: a link goes to it, and it takes effect once the link is followed (202).

    Until then the present address stays in force, and it is told of the request. `null` removes the
    address at once (200). Needs the current password and, with two factors on, `totp_code`; every other
    session of the account ends.
    """
    await account_security.change_email(conn, change, _proof(body), email=body.email)
    if body.email is None:
        response.status_code = 200
    return await accounts.account(conn, change.keyring, user_id=change.principal.user_id)


@router.post(
    "/account/email/confirm",
    tags=["account"],
    status_code=204,
    summary="Confirm a new email address with the token of the link sent to it",
)
async def confirm_email(
    body: EmailConfirmation, conn: ConnDep, keyring: KeyringDep, outbox: OutboxDep
) -> Response:
    """Put the address the token was sent to in force; no sign-in needed, the token proves the mailbox.

    A token works once, until it expires, and only while no newer request replaced it.
    """
    await account_security.confirm_email(conn, keyring, outbox, token=body.token)
    return Response(status_code=204)


@router.put("/account/preferences", tags=["account"], summary="Set language and time zone")
async def set_preferences(principal: SignedIn, body: Preferences, conn: ConnDep) -> Preferences:
    """Set the display preferences; readings are shown and bucketed in this time zone."""
    await accounts.set_preferences(
        conn, user_id=principal.user_id, language=body.language, time_zone=body.time_zone
    )
    return body


@router.get("/account/sessions", tags=["account"], summary="Signed-in browsers and API clients")
async def sessions(principal: SignedIn, conn: ConnDep) -> list[SessionInfo]:
    """List the sessions that are open now, most recently used first."""
    return await accounts.sessions(conn, principal=principal)


@router.delete("/account/sessions/{session_id}", tags=["account"], status_code=204, summary="End a session")
async def end_session(principal: SignedIn, session_id: str, conn: ConnDep) -> Response:
    """End one of the signed-in person's sessions at once."""
    try:
        session_hash = bytes.fromhex(session_id)
    except ValueError:
        raise not_found(f"session {session_id}") from None
    if not await accounts.end_session(conn, user_id=principal.user_id, session_hash=session_hash):
        raise not_found(f"session {session_id}")
    return Response(status_code=204)


@router.delete("/account/sessions", tags=["account"], status_code=204, summary="Sign out everywhere")
async def end_all_sessions(principal: SignedIn, conn: ConnDep) -> Response:
    """End every session of the signed-in person, this one included."""
    await accounts.end_all_sessions(conn, user_id=principal.user_id)
    return Response(status_code=204)


@router.post("/account/password", tags=["account"], status_code=204, summary="Change the password")
async def change_password(change: SecurityChange, body: PasswordChange, conn: ConnDep) -> Response:
    """Change the password, with the current one and, with two factors on, `totp_code`.

    Every other session ends and the account's address is told.
    """
    await account_security.change_password(conn, change, _proof(body), new=body.new_password)
    return Response(status_code=204)


@router.post("/account/totp", tags=["account"], summary="Start setting up two-factor authentication")
async def start_totp(change: SecurityChange, body: SecurityProof, conn: ConnDep) -> TotpSetup:
    """Return a new TOTP secret (with the current password); in force once confirmed.

    Confirm it with POST /account/totp/confirm and the app's first code.
    """
    return await account_security.start_totp(conn, change, _proof(body))


@router.post("/account/totp/confirm", tags=["account"], summary="Confirm two-factor authentication")
async def confirm_totp(change: SecurityChange, body: TotpConfirm, conn: ConnDep) -> RecoveryCodes:
    """Turn two-factor authentication on with the new app's first code and the current password.

    Return recovery codes, shown only this once. Every other session ends and the account's address is told.
    """
    return await account_security.confirm_totp(
        conn, change, password=body.current_password, code=body.totp_code
    )


@router.post(
    "/account/totp/disable", tags=["account"], status_code=204, summary="Turn two-factor authentication off"
)
async def disable_totp(change: SecurityChange, body: SecurityProof, conn: ConnDep) -> Response:
    """Turn two-factor authentication off, where the role allows it, with the password and a current code.

    Every other session ends and the account's address is told.
    """
    await account_security.disable_totp(conn, change, _proof(body))
    return Response(status_code=204)


@router.post("/account/recovery-codes", tags=["account"], summary="New recovery codes")
async def renew_recovery_codes(change: SecurityChange, body: SecurityProof, conn: ConnDep) -> RecoveryCodes:
    """Replace the recovery codes (with the password and a current code), shown only this once.

    Every other session ends and the account's address is told.
    """
    return await account_security.renew_recovery_codes(conn, change, _proof(body))


def _proof(body: SecurityProof) -> Proof:
    """Return the proof a security change's body carries."""
    return Proof(body.current_password, body.totp_code)
