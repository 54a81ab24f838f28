"""The registered gateways, looked up in the database and cached for a short while."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ingest import queries
from thuis.db import Connection


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """What the ingest needs to know of a registered gateway."""

    gateway_serial: str
    vendor: str
    site_id: int
    registered_at: dt.datetime


class GatewayDirectory:
    """Answer "is this a registered gateway, and where is it?" with few database round trips.

    Entries, including "not registered", expire after `ttl_s`, so a newly registered gateway or one moved
    to another site is picked up within that time.
    """

    def __init__(self, *, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, GatewayRecord | None]] = {}

    async def lookup(self, conn: Connection, serials: Iterable[str]) -> dict[str, GatewayRecord | None]:
        """Return the record of each serial, or None for serials that are not registered."""
        now = time.monotonic()
        found: dict[str, GatewayRecord | None] = {}
        stale = []
        for serial in set(serials):
            entry = self._entries.get(serial)
            if entry is not None and now - entry[0] < self._ttl_s:
                found[serial] = entry[1]
            else:
                stale.append(serial)
        if stale:
            rows = await conn.fetch(queries.SELECT_GATEWAYS, stale)
            fetched = {row["gateway_serial"]: GatewayRecord(**dict(row)) for row in rows}
            for serial in stale:
                record = fetched.get(serial)
                self._entries[serial] = (now, record)
                found[serial] = record
        return found
