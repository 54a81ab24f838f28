"""Signing in and out, and the signed-in person's own account: preferences, sessions, password, TOTP."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import ConnDep, KeyringDep, PoolDep, SettingsDep, SignedIn
from api.problems import PROBLEM_RESPONSES, not_found
from api.schemas.accounts import (
    Account,
    EmailChange,
    PasswordChange,
    Preferences,
    RecoveryCodes,
    SessionInfo,
    SignInRequest,
    SignInResponse,
    TotpConfirm,
    TotpSetup,
)
from api.services import accounts
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


@router.put("/account/email", tags=["account"], summary="Set or correct the email address")
async def set_email(principal: SignedIn, body: EmailChange, conn: ConnDep, keyring: KeyringDep) -> Account:
    """Set the account's email address (stored encrypted; found by its keyed hash), or remove it."""
    await accounts.set_email(conn, keyring, user_id=principal.user_id, email=body.email)
    return await accounts.account(conn, keyring, user_id=principal.user_id)


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
async def change_password(principal: SignedIn, body: PasswordChange, conn: ConnDep) -> Response:
    """Change the password; every other session ends."""
    await accounts.change_password(
        conn, principal=principal, current=body.current_password, new=body.new_password
    )
    return Response(status_code=204)


@router.post("/account/totp", tags=["account"], summary="Start setting up two-factor authentication")
async def start_totp(principal: SignedIn, conn: ConnDep, keyring: KeyringDep) -> TotpSetup:
    """Return a new TOTP secret; it is in force once confirmed with POST /account/totp/confirm."""
    return await accounts.start_totp(conn, keyring, principal=principal)


@router.post("/account/totp/confirm", tags=["account"], summary="Confirm two-factor authentication")
async def confirm_totp(
    principal: SignedIn, body: TotpConfirm, conn: ConnDep, keyring: KeyringDep
) -> RecoveryCodes:
    """Turn two-factor authentication on with a first code; return recovery codes, shown only this once."""
    return await accounts.confirm_totp(conn, keyring, user_id=principal.user_id, code=body.totp_code)


@router.delete(
    "/account/totp", tags=["account"], status_code=204, summary="Turn two-factor authentication off"
)
async def disable_totp(principal: SignedIn, conn: ConnDep) -> Response:
    """Turn two-factor authentication off, where the role allows it."""
    await accounts.disable_totp(conn, principal=principal)
    return Response(status_code=204)


@router.post("/account/recovery-codes", tags=["account"], summary="New recovery codes")
async def renew_recovery_codes(principal: SignedIn, conn: ConnDep) -> RecoveryCodes:
    """Replace the recovery codes with new ones, shown only this once."""
    return await accounts.renew_recovery_codes(conn, user_id=principal.user_id)
