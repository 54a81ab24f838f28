"""Database helpers shared by the processes."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one borrowed from a pool: the statements we run work on both.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
