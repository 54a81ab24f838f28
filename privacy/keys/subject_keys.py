"""Data keys in the database: create one for a new data subject, load it to read their fields, re-wrap."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from privacy.keys.crypto import Keyring, new_data_key
from thuis.db import Connection as AsyncConnection

log = logging.getLogger(__name__)

INSERT_KEY = (
    "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) VALUES (%s, %s, %s) RETURNING key_id"
)
INSERT_KEY_ASYNC = (
    "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) VALUES ($1, $2, $3) RETURNING key_id"
)
SELECT_KEY = "SELECT scope, master_key_id, wrapped_key FROM subject_keys WHERE key_id = %s"
SELECT_KEY_ASYNC = "SELECT scope, master_key_id, wrapped_key FROM subject_keys WHERE key_id = $1"
# Rotation takes a batch of keys wrapped by an older master key; SKIP LOCKED lets two rotations share the
# work and never waits on a key an erasure is destroying.
SELECT_KEYS_TO_REWRAP = """
SELECT key_id, scope, master_key_id, wrapped_key FROM subject_keys
WHERE master_key_id <> %s
ORDER BY key_id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
REWRAP_KEY = (
    "UPDATE subject_keys SET master_key_id = %s, wrapped_key = %s, rewrapped_at = now() WHERE key_id = %s"
)
COUNT_KEYS_BY_MASTER = "SELECT master_key_id, count(*) FROM subject_keys GROUP BY master_key_id ORDER BY 1"


class SubjectKeyError(Exception):
    """A data key that should exist does not: the subject was erased, or the id is wrong."""


@dataclass(frozen=True)
class SubjectKey:
    """A data key, by its id in subject_keys, unwrapped for use."""

    key_id: int
    data_key: bytes


def create_key(conn: psycopg.Connection[Any], keyring: Keyring, *, scope: str) -> SubjectKey:
    """Make a data key for a new data subject and store it wrapped by the current master key."""
    data_key = new_data_key()
    master_key_id, wrapped = keyring.wrap(data_key, scope=scope)
    row = conn.execute(INSERT_KEY, (scope, master_key_id, wrapped)).fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return SubjectKey(int(row[0]), data_key)


def load_key(conn: psycopg.Connection[Any], keyring: Keyring, key_id: int) -> bytes:
    """Return the unwrapped data key."""
    row = conn.execute(SELECT_KEY, (key_id,)).fetchone()
    if row is None:
        raise SubjectKeyError(f"there is no data key {key_id}")
    return keyring.unwrap(row[1], bytes(row[2]), scope=row[0])


async def create_key_async(conn: AsyncConnection, keyring: Keyring, *, scope: str) -> SubjectKey:
    """Make a data key for a new data subject (asyncpg)."""
    data_key = new_data_key()
    master_key_id, wrapped = keyring.wrap(data_key, scope=scope)
    key_id = await conn.fetchval(INSERT_KEY_ASYNC, scope, master_key_id, wrapped)
    return SubjectKey(int(key_id), data_key)


async def load_key_async(conn: AsyncConnection, keyring: Keyring, key_id: int) -> bytes:
    """Return the unwrapped data key (asyncpg)."""
    row = await conn.fetchrow(SELECT_KEY_ASYNC, key_id)
    if row is None:
        raise SubjectKeyError(f"there is no data key {key_id}")
    return keyring.unwrap(row["master_key_id"], bytes(row["wrapped_key"]), scope=row["scope"])


def rewrap_all(conn: psycopg.Connection[Any], keyring: Keyring, *, batch_size: int = 1000) -> int:
    """Re-wrap every data key not yet under the current master key, one committed batch at a time.

    The data stays as it is; only the wrapped keys change, so the services keep running: whoever reads a
    key finds it wrapped by a master key their keyring holds (the old one until the batch commits, the
    new one after).
    """
    rewrapped = 0
    while True:
        with conn.transaction():
            rows = conn.execute(SELECT_KEYS_TO_REWRAP, (keyring.current, batch_size)).fetchall()
            for key_id, scope, master_key_id, wrapped in rows:
                data_key = keyring.unwrap(master_key_id, bytes(wrapped), scope=scope)
                new_master, new_wrapped = keyring.wrap(data_key, scope=scope)
                conn.execute(REWRAP_KEY, (new_master, new_wrapped, key_id))
        rewrapped += len(rows)
        if rows:
            log.info("re-wrapped %d data keys so far", rewrapped)
        if len(rows) < batch_size:
            return rewrapped


def keys_by_master(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Return how many data keys each master key wraps."""
    return {str(master): int(count) for master, count in conn.execute(COUNT_KEYS_BY_MASTER)}
