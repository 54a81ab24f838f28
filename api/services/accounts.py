"""The signed-in person's own account: who they are, preferences, sessions (security: account_security)."""

from __future__ import annotations

from api.problems import not_found
from api.queries import accounts as queries
from api.schemas.accounts import Account, SessionInfo
from api.security import Principal
from privacy.keys.crypto import Keyring
from privacy.keys.fields import EMAIL_CHANGES_EMAIL, USERS_EMAIL, open_text
from privacy.keys.subject_keys import load_key
from thuis.db import Connection


async def account(conn: Connection, keyring: Keyring, *, user_id: int) -> Account:
    """Return an account and its display preferences, its email opened with its own key."""
    row = await conn.fetchrow(queries.SELECT_ACCOUNT, user_id)
    if row is None:
        raise not_found("account")
    key = await load_key(conn, keyring, row["key_id"])
    fields = {name: value for name, value in dict(row).items() if name not in {"key_id", "email_ciphertext"}}
    pending = await conn.fetchrow(queries.SELECT_PENDING_EMAIL, user_id)
    pending_email = None
    if pending is not None:
        bound = EMAIL_CHANGES_EMAIL.at(user_id, pending["key_id"])
        pending_email = open_text(key, pending["email_ciphertext"], context=bound)
    return Account(
        **fields,
        email=open_text(key, row["email_ciphertext"], context=USERS_EMAIL.at(user_id, row["key_id"])),
        pending_email=pending_email,
        pending_email_expires_at=pending["expires_at"] if pending else None,
    )


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
