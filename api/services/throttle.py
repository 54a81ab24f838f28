"""Limits on failed sign-ins: token buckets per (username, client address) and per client address.

An attempt takes a token from both buckets before it is checked, in a transaction of its own, so that
parallel attempts cannot slip past an empty bucket; one that succeeds gives its tokens back (and a
success resets its pair's bucket). An attempt finding a bucket empty is answered 429 unchecked. Buckets
are keyed by the username as typed, so an unknown name is limited exactly like a known one; they live in
the database (`sign_in_throttle`) so every portal worker counts the same. Nothing locks an account: an
attacker's failures empty the buckets of the attacker's address, not the owner's at another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from api.problems import Problem
from api.queries import accounts as queries
from api.settings import ApiSettings
from thuis.db import Connection

THROTTLED_DETAIL = "too many failed sign-ins from this address: try again in {seconds} s"


@dataclass(frozen=True)
class Bucket:
    """One token bucket: its key, its owner's name (if any) and address, its burst and refill rate."""

    key: str
    username: str | None
    ip: str | None
    burst: int
    per_second: float


def buckets(settings: ApiSettings, *, username: str, ip: str | None) -> tuple[Bucket, Bucket]:
    """Return the (username, address) bucket and the address's bucket of an attempt."""
    address = ip or "unknown"
    return (
        Bucket(
            f"name:{username} from:{address}",
            username,
            ip,
            settings.sign_in_burst,
            1 / settings.sign_in_refill_s,
        ),
        Bucket(
            f"from:{address}", None, ip, settings.sign_in_address_burst, 1 / settings.sign_in_address_refill_s
        ),
    )


async def take(conn: Connection, attempt: tuple[Bucket, Bucket]) -> int | None:
    """Take a token from both buckets and commit; return None, or the seconds to wait if one is empty."""
    async with conn.transaction():
        for taken, bucket in enumerate(attempt):
            row = await conn.fetchrow(
                queries.TAKE_THROTTLE_TOKEN,
                bucket.key,
                bucket.username,
                bucket.ip,
                bucket.burst,
                bucket.per_second,
            )
            if row is None:
                for earlier in attempt[:taken]:
                    await conn.execute(queries.RETURN_THROTTLE_TOKEN, earlier.key, earlier.burst)
                seconds = await conn.fetchval(
                    queries.THROTTLE_WAIT, bucket.key, bucket.burst, bucket.per_second
                )
                return max(1, math.ceil(seconds or 1))
    return None


async def succeeded(conn: Connection, attempt: tuple[Bucket, Bucket]) -> None:
    """Give back what a successful attempt took: its pair starts afresh, its address gets its token back."""
    pair, address = attempt
    await conn.execute(queries.DELETE_THROTTLE_BUCKET, pair.key)
    await conn.execute(queries.RETURN_THROTTLE_TOKEN, address.key, address.burst)


def throttled(seconds: int) -> Problem:
    """Return the answer to an attempt refused unchecked."""
    return Problem(429, THROTTLED_DETAIL.format(seconds=seconds), headers={"Retry-After": str(seconds)})
