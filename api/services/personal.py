"""Personal fields in the portal: the keyring as it is now, and the data key of an account."""

from __future__ import annotations

from fastapi import Request

from api.queries import portal as queries
from privacy.keys.crypto import Keyring, KeyringFile
from privacy.keys.subject_keys import SubjectKeyError, load_key
from thuis.db import Connection


def keyring_of(request: Request) -> Keyring:
    """Return the keyring as its file holds it now (rotation needs no restart)."""
    keyring_file: KeyringFile = request.app.state.keyring_file
    return keyring_file.get()


async def account_key(conn: Connection, keyring: Keyring, user_id: int) -> bytes:
    """Return the unwrapped data key of an account."""
    key_id = await conn.fetchval(queries.SELECT_KEY_OF_USER, user_id)
    if key_id is None:
        raise SubjectKeyError(f"there is no account {user_id}")
    return await load_key(conn, keyring, key_id)
