"""Data keys in the database: create one for a new data subject, load it to read their fields, re-wrap."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from privacy.keys import queries
from privacy.keys.crypto import Keyring, new_data_key
from privacy.keys.fields import SealedColumn
from thuis.db import Connection

log = logging.getLogger(__name__)


class SubjectKeyError(Exception):
    """A data key that should exist does not: the subject was erased, or the id is wrong."""


@dataclass(frozen=True)
class SubjectKey:
    """A data key, by its id in subject_keys, unwrapped for use."""

    key_id: int
    data_key: bytes


async def create_key(conn: Connection, keyring: Keyring, *, scope: str) -> SubjectKey:
    """Make a data key for a new data subject and store it wrapped by the current master key."""
    data_key = new_data_key()
    master_key_id, wrapped = keyring.wrap(data_key, scope=scope)
    key_id = await conn.fetchval(queries.INSERT_KEY, scope, master_key_id, wrapped)
    return SubjectKey(int(key_id), data_key)


async def load_key(conn: Connection, keyring: Keyring, key_id: int) -> bytes:
    """Return the unwrapped data key."""
    row = await conn.fetchrow(queries.SELECT_KEY, key_id)
    if row is None:
        raise SubjectKeyError(f"there is no data key {key_id}")
    return keyring.unwrap(row["master_key_id"], bytes(row["wrapped_key"]), scope=row["scope"])


async def reserve_row_key(conn: Connection, column: SealedColumn) -> int:
    """Reserve the key of a row about to be inserted, so that its sealed values can be bound to it."""
    row_key = await conn.fetchval(queries.NEXT_ROW_KEY, f"public.{column.table}", column.row_key)
    return int(row_key)


async def rewrap_all(conn: Connection, keyring: Keyring, *, batch_size: int = 1000) -> int:
    """Re-wrap every data key not yet under the current master key, one committed batch at a time.

    The data stays as it is; only the wrapped keys change, so the services keep running: whoever reads a
    key finds it wrapped by a master key their keyring holds (the old one until the batch commits, the
    new one after).
    """
    rewrapped = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(queries.SELECT_KEYS_TO_REWRAP, keyring.current, batch_size)
            for key_id, scope, master_key_id, wrapped in rows:
                data_key = keyring.unwrap(master_key_id, bytes(wrapped), scope=scope)
                new_master, new_wrapped = keyring.wrap(data_key, scope=scope)
                await conn.execute(queries.REWRAP_KEY, new_master, new_wrapped, key_id)
        rewrapped += len(rows)
        if rows:
            log.info("re-wrapped %d data keys so far", rewrapped)
        if len(rows) < batch_size:
            return rewrapped


async def keys_by_master(conn: Connection) -> dict[str, int]:
    """Return how many data keys each master key wraps."""
    return {str(master): int(count) for master, count in await conn.fetch(queries.COUNT_KEYS_BY_MASTER)}
