"""Signing in and out, and the signed-in person's own account: preferences, sessions, password, TOTP."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response

from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.queries import portal as queries
from api.schemas.portal import (
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
from api.security import SignedIn, pool_of, settings_of
from api.services.credentials import (
    hash_password,
    new_recovery_codes,
    new_totp_secret,
    password_problem,
    totp_step,
    totp_uri,
    verify_password,
)
from api.services.personal import account_key, keyring_of
from api.services.signin import TWO_FACTOR_ROLES, sign_in
from privacy.keys.fields import USERS_EMAIL, USERS_TOTP_SECRET, open_text, seal_text
from privacy.keys.subject_keys import load_key

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)


def client_ip(request: Request) -> str | None:
    """Return the address the request came from."""
    return request.client.host if request.client else None


@router.post("/auth/sign-in", tags=["auth"], summary="Sign in; get a bearer token")
async def sign_in_for_token(request: Request, body: SignInRequest) -> SignInResponse:
    """Check the username, password and, where two factors apply, `totp_code`; return a bearer token."""
    session = await sign_in(
        pool_of(request),
        settings_of(request),
        keyring=keyring_of(request),
        username=body.username,
        password=body.password,
        second_factor=body.totp_code,
        kind="api",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return SignInResponse(token=session.token, expires_at=session.expires_at)


@router.post("/auth/sign-out", tags=["auth"], status_code=204, summary="End this session")
async def sign_out(request: Request, principal: SignedIn) -> Response:
    """End the session the request came with."""
    async with pool_of(request).acquire() as conn:
        await conn.execute(queries.DELETE_SESSION_OF_USER, principal.user_id, principal.session_hash)
    return Response(status_code=204)


@router.get("/account", tags=["account"], summary="Who is signed in")
async def account(request: Request, principal: SignedIn) -> Account:
    """Return the signed-in person's account and display preferences."""
    async with pool_of(request).acquire() as conn:
        row = await conn.fetchrow(queries.SELECT_ACCOUNT, principal.user_id)
        if row is None:
            raise not_found("account")
        key = await load_key(conn, keyring_of(request), row["key_id"])
    fields = {name: value for name, value in dict(row).items() if name not in {"key_id", "email_ciphertext"}}
    return Account(**fields, email=open_text(key, row["email_ciphertext"], context=USERS_EMAIL))


@router.put("/account/email", tags=["account"], summary="Set or correct the email address")
async def set_email(request: Request, principal: SignedIn, body: EmailChange) -> Account:
    """Set the account's email address (stored encrypted; found by its keyed hash), or remove it."""
    keyring = keyring_of(request)
    async with pool_of(request).acquire() as conn:
        key = await account_key(conn, keyring, principal.user_id)
        email_hash = keyring.email_hash(body.email) if body.email is not None else None
        await conn.execute(
            queries.SET_EMAIL,
            principal.user_id,
            seal_text(key, body.email, context=USERS_EMAIL),
            email_hash,
        )
    return await account(request, principal)


@router.put("/account/preferences", tags=["account"], summary="Set language and time zone")
async def set_preferences(request: Request, principal: SignedIn, body: Preferences) -> Preferences:
    """Set the display preferences; readings are shown and bucketed in this time zone."""
    async with pool_of(request).acquire() as conn:
        await conn.execute(queries.UPSERT_PREFERENCES, principal.user_id, body.language, body.time_zone)
    return body


@router.get("/account/sessions", tags=["account"], summary="Signed-in browsers and API clients")
async def sessions(request: Request, principal: SignedIn) -> list[SessionInfo]:
    """List the sessions that are open now, most recently used first."""
    async with pool_of(request).acquire() as conn:
        rows = await conn.fetch(queries.SELECT_SESSIONS_OF_USER, principal.user_id)
    return [
        SessionInfo(
            session_id=row["token_sha256"].hex(),
            kind=row["kind"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            expires_at=row["expires_at"],
            ip=str(row["ip"]) if row["ip"] is not None else None,
            user_agent=row["user_agent"],
            current=row["token_sha256"] == principal.session_hash,
        )
        for row in rows
    ]


@router.delete("/account/sessions/{session_id}", tags=["account"], status_code=204, summary="End a session")
async def end_session(request: Request, principal: SignedIn, session_id: str) -> Response:
    """End one of the signed-in person's sessions at once."""
    try:
        session_hash = bytes.fromhex(session_id)
    except ValueError:
        raise not_found(f"session {session_id}") from None
    async with pool_of(request).acquire() as conn:
        status = await conn.execute(queries.DELETE_SESSION_OF_USER, principal.user_id, session_hash)
    if status == "DELETE 0":
        raise not_found(f"session {session_id}")
    return Response(status_code=204)


@router.delete("/account/sessions", tags=["account"], status_code=204, summary="Sign out everywhere")
async def end_all_sessions(request: Request, principal: SignedIn) -> Response:
    """End every session of the signed-in person, this one included."""
    async with pool_of(request).acquire() as conn:
        await conn.execute(queries.DELETE_SESSIONS_OF_USER, principal.user_id)
    return Response(status_code=204)


@router.post("/account/password", tags=["account"], status_code=204, summary="Change the password")
async def change_password(request: Request, principal: SignedIn, body: PasswordChange) -> Response:
    """Change the password; every other session ends."""
    problem = password_problem(body.new_password, username=principal.username)
    if problem is not None:
        raise Problem(422, f"body field new_password: {problem}")
    async with pool_of(request).acquire() as conn, conn.transaction():
        current = await conn.fetchval(queries.SELECT_PASSWORD_HASH, principal.user_id)
        if not verify_password(current, body.current_password):
            raise Problem(403, "body field current_password: the current password is wrong")
        await conn.execute(queries.CHANGE_PASSWORD, principal.user_id, hash_password(body.new_password))
        await conn.execute(queries.DELETE_OTHER_SESSIONS, principal.user_id, principal.session_hash)
    return Response(status_code=204)


@router.post("/account/totp", tags=["account"], summary="Start setting up two-factor authentication")
async def start_totp(request: Request, principal: SignedIn) -> TotpSetup:
    """Return a new TOTP secret; it is in force once confirmed with POST /account/totp/confirm."""
    secret = new_totp_secret()
    async with pool_of(request).acquire() as conn:
        key = await account_key(conn, keyring_of(request), principal.user_id)
        sealed = seal_text(key, secret, context=USERS_TOTP_SECRET)
        status = await conn.execute(queries.SET_TOTP_SECRET, principal.user_id, sealed)
    if status == "UPDATE 0":
        raise Problem(409, "two-factor authentication is already on; turn it off first to set up a new app")
    return TotpSetup(secret=secret, otpauth_uri=totp_uri(secret, username=principal.username))


@router.post("/account/totp/confirm", tags=["account"], summary="Confirm two-factor authentication")
async def confirm_totp(request: Request, principal: SignedIn, body: TotpConfirm) -> RecoveryCodes:
    """Turn two-factor authentication on with a first code; return recovery codes, shown only this once."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        row = await conn.fetchrow(queries.SELECT_TOTP, principal.user_id)
        if row is None or row["totp_secret_ciphertext"] is None:
            raise Problem(409, "start with POST /api/v1/account/totp")
        if row["totp_confirmed_at"] is not None:
            raise Problem(409, "two-factor authentication is already on")
        key = await load_key(conn, keyring_of(request), row["key_id"])
        secret = open_text(key, row["totp_secret_ciphertext"], context=USERS_TOTP_SECRET) or ""
        step = totp_step(secret, body.totp_code, now=dt.datetime.now(dt.UTC), last_step=None)
        if step is None:
            raise Problem(422, "body field totp_code: the code does not match; check the app's clock")
        codes, hashes = new_recovery_codes()
        await conn.execute(queries.CONFIRM_TOTP, principal.user_id, step, hashes)
    return RecoveryCodes(recovery_codes=codes)


@router.delete(
    "/account/totp", tags=["account"], status_code=204, summary="Turn two-factor authentication off"
)
async def disable_totp(request: Request, principal: SignedIn) -> Response:
    """Turn two-factor authentication off, where the role allows it."""
    if principal.role in TWO_FACTOR_ROLES:
        role = principal.role.replace("_", " ")
        raise Problem(403, f"{'an' if role[0] in 'aeiou' else 'a'} {role} must sign in with two factors")
    async with pool_of(request).acquire() as conn:
        await conn.execute(queries.DISABLE_TOTP, principal.user_id)
    return Response(status_code=204)


@router.post("/account/recovery-codes", tags=["account"], summary="New recovery codes")
async def renew_recovery_codes(request: Request, principal: SignedIn) -> RecoveryCodes:
    """Replace the recovery codes with new ones, shown only this once."""
    async with pool_of(request).acquire() as conn:
        enabled = await conn.fetchval(queries.SELECT_TOTP_ENABLED, principal.user_id)
        if not enabled:
            raise Problem(409, "recovery codes come with two-factor authentication, which is off")
        codes, hashes = new_recovery_codes()
        await conn.execute(queries.SET_RECOVERY_CODES, principal.user_id, hashes)
    return RecoveryCodes(recovery_codes=codes)
