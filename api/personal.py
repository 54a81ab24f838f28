"""Personal fields in the portal: open them with their subject's data key, seal new values with it."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from privacy.crypto import Keyring, KeyringFile, open_json, open_sealed, seal
from privacy.subject_keys import SubjectKeyError, load_key_async
from thuis.db import Connection

# The context each sealed column is bound to: a value cannot be moved to another column and still open.
USERS_EMAIL = "users.email"
USERS_TOTP_SECRET = "users.totp_secret"  # noqa: S105 - a column name, not a secret
CONTRACTS_HOLDER = "contracts.holder"
SITES_ADDRESS = "sites.address"
SUBJECT_REQUESTS_DETAILS = "subject_requests.details"


def keyring_of(request: Request) -> Keyring:
    """Return the keyring as its file holds it now (rotation needs no restart)."""
    keyring_file: KeyringFile = request.app.state.keyring_file
    return keyring_file.get()


async def data_key(conn: Connection, keyring: Keyring, key_id: int) -> bytes:
    """Return a subject's unwrapped data key."""
    return await load_key_async(conn, keyring, key_id)


async def account_key(conn: Connection, keyring: Keyring, user_id: int) -> bytes:
    """Return the unwrapped data key of an account."""
    key_id = await conn.fetchval("SELECT key_id FROM users WHERE user_id = $1", user_id)
    if key_id is None:
        raise SubjectKeyError(f"there is no account {user_id}")
    return await load_key_async(conn, keyring, key_id)


def open_text(key: bytes, sealed: bytes | None, *, context: str) -> str | None:
    """Return a sealed text field in the clear (None stays None)."""
    return None if sealed is None else open_sealed(key, bytes(sealed), context=context)


def open_document(key: bytes, sealed: bytes | None, *, context: str) -> dict[str, Any]:
    """Return a sealed JSON document in the clear ({} for none)."""
    return {} if sealed is None else open_json(key, bytes(sealed), context=context)


def seal_text(key: bytes, value: str | None, *, context: str) -> bytes | None:
    """Seal a text field (None stays None)."""
    return None if value is None else seal(key, value, context=context)
