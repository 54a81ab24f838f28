"""The database connections of Thuis: one way to open each, one driver per kind of program.

asyncpg serves every long-running process (ingest, rollup, retention, portal) and every function they share
with the command line (data keys, accounts, exports): those functions take an asyncpg connection first.
psycopg serves only the synchronous operator tools that share nothing with the services (migrations, service
role passwords, the gateway registry and provisioning), through `connect_sync`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import psycopg
from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one borrowed from a pool: the statements we run work on both.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
SyncConnection: TypeAlias = psycopg.Connection[tuple[Any, ...]]


def session_settings(application_name: str) -> dict[str, str]:
    """Return the settings every Thuis session runs with: UTC (zones are applied per person) and its name."""
    return {"TimeZone": "UTC", "application_name": application_name}


async def connect(database_url: str, *, application_name: str, timeout_s: float = 60.0) -> asyncpg.Connection:
    """Open one asyncpg connection with the session settings; the caller closes it."""
    return await asyncpg.connect(
        database_url, timeout=timeout_s, server_settings=session_settings(application_name)
    )


@asynccontextmanager
async def connection(database_url: str, *, application_name: str) -> AsyncIterator[asyncpg.Connection]:
    """Open one asyncpg connection for a command or a worker, and close it whatever happens."""
    conn = await connect(database_url, application_name=application_name)
    try:
        yield conn
    finally:
        await conn.close()


async def create_pool(
    database_url: str, *, application_name: str, min_size: int = 1, max_size: int = 8, **options: Any
) -> asyncpg.Pool:
    """Open an asyncpg pool whose every connection runs with the session settings."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings=session_settings(application_name),
        **options,
    )
    if pool is None:  # only when the pool is created without awaiting it
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


def connect_sync(database_url: str, *, autocommit: bool = False) -> SyncConnection:
    """Open a psycopg connection for a synchronous operator tool (use it as a context manager)."""
    return psycopg.connect(database_url, autocommit=autocommit)
