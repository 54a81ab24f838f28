"""The signed-in person's own account: who they are, email, preferences, sessions, password, two factors."""

from __future__ import annotations

import datetime as dt

from api.problems import Problem, not_found
from api.queries import accounts as queries
from api.schemas.accounts import Account, RecoveryCodes, SessionInfo, TotpSetup
from api.security import Principal
from api.services.credentials import (
    hash_password,
    new_recovery_codes,
    new_totp_secret,
    password_problem,
    totp_step,
    totp_uri,
    verify_password,
)
from api.services.signin import TWO_FACTOR_ROLES
from privacy.keys.crypto import Keyring
from privacy.keys.fields import USERS_EMAIL, USERS_TOTP_SECRET, open_text, seal_text
from privacy.keys.subject_keys import SubjectKeyError, load_key
from thuis.db import Connection


async def account_key(conn: Connection, keyring: Keyring, user_id: int) -> tuple[int, bytes]:
    """Return the id of an account's data key and the key, unwrapped."""
    key_id = await conn.fetchval(queries.SELECT_KEY_OF_USER, user_id)
    if key_id is None:
        raise SubjectKeyError(f"there is no account {user_id}")
    return int(key_id), await load_key(conn, keyring, key_id)


async def account(conn: Connection, keyring: Keyring, *, user_id: int) -> Account:
    """Return an account and its display preferences, its email opened with its own key."""
    row = await conn.fetchrow(queries.SELECT_ACCOUNT, user_id)
    if row is None:
        raise not_found("account")
    key = await load_key(conn, keyring, row["key_id"])
    fields = {name: value for name, value in dict(row).items() if name not in {"key_id", "email_ciphertext"}}
    email = open_text(key, row["email_ciphertext"], context=USERS_EMAIL.at(user_id, row["key_id"]))
    return Account(**fields, email=email)


async def set_email(conn: Connection, keyring: Keyring, *, user_id: int, email: str | None) -> None:
    """Set (or, with None, remove) an account's email: sealed with its key, found by its keyed hash."""
    key_id, key = await account_key(conn, keyring, user_id)
    email_hash = keyring.email_hash(email) if email is not None else None
    sealed = seal_text(key, email, context=USERS_EMAIL.at(user_id, key_id))
    await conn.execute(queries.SET_EMAIL, user_id, sealed, email_hash)


async def set_preferences(conn: Connection, *, user_id: int, language: str, time_zone: str) -> None:
    """Set the display preferences: the language and the time zone readings are shown and bucketed in."""
    await conn.execute(queries.UPSERT_PREFERENCES, user_id, language, time_zone)


async def sessions(conn: Connection, *, principal: Principal) -> list[SessionInfo]:
    """Return the person's open sessions, most recently used first, marking the one they came with."""
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


async def end_session(conn: Connection, *, user_id: int, session_hash: bytes) -> bool:
    """End one of a person's sessions at once; say whether there was one."""
    status = await conn.execute(queries.DELETE_SESSION_OF_USER, user_id, session_hash)
    return status != "DELETE 0"


async def end_all_sessions(conn: Connection, *, user_id: int) -> None:
    """End every session of a person."""
    await conn.execute(queries.DELETE_SESSIONS_OF_USER, user_id)


async def change_password(conn: Connection, *, principal: Principal, current: str, new: str) -> None:
    """Change the password after checking the current one; every other session of the person ends."""
    problem = password_problem(new, username=principal.username)
    if problem is not None:
        raise Problem(422, f"body field new_password: {problem}")
    async with conn.transaction():
        stored = await conn.fetchval(queries.SELECT_PASSWORD_HASH, principal.user_id)
        if not verify_password(stored, current):
            raise Problem(403, "body field current_password: the current password is wrong")
        await conn.execute(queries.CHANGE_PASSWORD, principal.user_id, hash_password(new))
        await conn.execute(queries.DELETE_OTHER_SESSIONS, principal.user_id, principal.session_hash)


async def start_totp(conn: Connection, keyring: Keyring, *, principal: Principal) -> TotpSetup:
    """Store a new TOTP secret, sealed; it is in force once confirmed with a first code."""
    secret = new_totp_secret()
    key_id, key = await account_key(conn, keyring, principal.user_id)
    sealed = seal_text(key, secret, context=USERS_TOTP_SECRET.at(principal.user_id, key_id))
    if await conn.execute(queries.SET_TOTP_SECRET, principal.user_id, sealed) == "UPDATE 0":
        raise Problem(409, "two-factor authentication is already on; turn it off first to set up a new app")
    return TotpSetup(secret=secret, otpauth_uri=totp_uri(secret, username=principal.username))


async def confirm_totp(conn: Connection, keyring: Keyring, *, user_id: int, code: str) -> RecoveryCodes:
    """Turn two-factor authentication on with a first code; return recovery codes, shown only this once."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.SELECT_TOTP, user_id)
        if row is None or row["totp_secret_ciphertext"] is None:
            raise Problem(409, "start with POST /api/v1/account/totp")
        if row["totp_confirmed_at"] is not None:
            raise Problem(409, "two-factor authentication is already on")
        key = await load_key(conn, keyring, row["key_id"])
        bound = USERS_TOTP_SECRET.at(user_id, row["key_id"])
        secret = open_text(key, row["totp_secret_ciphertext"], context=bound) or ""
        step = totp_step(secret, code, now=dt.datetime.now(dt.UTC), last_step=None)
        if step is None:
            raise Problem(422, "body field totp_code: the code does not match; check the app's clock")
        codes, hashes = new_recovery_codes()
        await conn.execute(queries.CONFIRM_TOTP, user_id, step, hashes)
    return RecoveryCodes(recovery_codes=codes)


async def disable_totp(conn: Connection, *, principal: Principal) -> None:
    """Turn two-factor authentication off, where the role allows it."""
    if principal.role in TWO_FACTOR_ROLES:
        role = principal.role.replace("_", " ")
        raise Problem(403, f"{'an' if role[0] in 'aeiou' else 'a'} {role} must sign in with two factors")
    await conn.execute(queries.DISABLE_TOTP, principal.user_id)


async def renew_recovery_codes(conn: Connection, *, user_id: int) -> RecoveryCodes:
    """Replace the recovery codes with new ones, shown only this once."""
    if not await conn.fetchval(queries.SELECT_TOTP_ENABLED, user_id):
        raise Problem(409, "recovery codes come with two-factor authentication, which is off")
    codes, hashes = new_recovery_codes()
    await conn.execute(queries.SET_RECOVERY_CODES, user_id, hashes)
    return RecoveryCodes(recovery_codes=codes)
