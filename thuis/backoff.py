"""The reconnect policy of the serve loops: delays with jitter, their settings, the loop using them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import asyncpg
from pydantic import Field, model_validator

from thuis.db import connect
from thuis.settings import ThuisSettings

log = logging.getLogger(__name__)

# What "the database failed us" looks like from asyncpg: a statement refused, the server gone (a restart,
# pg_terminate_backend), a connection refused or timed out. InternalClientError comes from a connection the
# server has just ended when asyncpg is asked to run a statement on it before it has noticed
# (MagicStack/asyncpg#784): a lost connection too.
DATABASE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)
# A connection attempt that hangs (a host that drops packets) counts as failed after this long; asyncpg's
# own default is a minute.
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Backoff:
    """How long to wait before the next attempt: decorrelated jitter, from `initial_s` up to `max_s`.

    Each delay is drawn between `initial_s` and `multiplier` times the previous delay, and capped at `max_s`
    ("decorrelated jitter", Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015). Unlike
    plain exponential back-off, processes that failed at the same moment (every worker, when the database
    restarts) do not come back at the same moment; unlike full jitter, no delay is shorter than `initial_s`,
    so a database that refuses at once is not asked again at once.
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 3.0
    # Jitter spreads retries; it protects nothing, so the ordinary generator will do.
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = field(default=0, init=False)
    _previous_s: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, not {self.initial_s} and {self.max_s}")
        if self.multiplier < 1:
            raise ValueError(f"the multiplier must be at least 1, not {self.multiplier}")
        self._previous_s = self.initial_s

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next attempt."""
        self.failures += 1
        ceiling = max(self.initial_s, self._previous_s * self.multiplier)
        self._previous_s = min(self.max_s, self.rng.uniform(self.initial_s, ceiling))
        return self._previous_s

    def reset(self) -> None:
        """Start again from `initial_s`: the last attempt succeeded."""
        self.failures = 0
        self._previous_s = self.initial_s


class ServeLoopSettings(ThuisSettings):
    """Settings of a process with a serve loop: the database, and how it connects again after a failure."""

    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    reconnect_multiplier: float = Field(default=3.0, ge=1)

    @model_validator(mode="after")
    def _initial_within_max(self) -> Self:
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError("THUIS_RECONNECT_INITIAL_S is above THUIS_RECONNECT_MAX_S")
        return self

    def reconnect_policy(self) -> Backoff:
        """Return a fresh reconnect policy with these settings."""
        return Backoff(self.reconnect_initial_s, self.reconnect_max_s, self.reconnect_multiplier)


def stop_on_signals() -> asyncio.Event:
    """Return an event that SIGTERM or SIGINT sets, on the running loop."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


async def serve_with_reconnect(
    work: Callable[[asyncpg.Connection], Awaitable[None]],
    *,
    settings: ServeLoopSettings,
    interval_s: float,
    stopping: asyncio.Event,
    name: str,
    on_connect: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> None:
    """Run `work` now and then every interval on one connection, until `stopping` is set.

    `on_connect` runs on every new connection before any work: an exception of its own (the database is
    not one this process may serve, say) ends the loop like any error that is not the database's.

    A database error, in a run or in connecting, is logged; the connection is dropped and opened again after
    the reconnect policy's delay, which grows with each failure in a row and starts over after a run that
    succeeded. Any other exception ends the loop. Waiting (between runs, before a retry, while connecting)
    ends as soon as `stopping` is set; a run in hand is left to watch `stopping` itself.
    """
    policy = settings.reconnect_policy()
    url = settings.database_url.get_secret_value()
    conn: asyncpg.Connection | None = None
    try:
        while not stopping.is_set():
            try:
                if conn is None:
                    conn = await _connect_unless_stopping(url, stopping, application_name=f"thuis {name}")
                    if conn is None:
                        break
                    if on_connect is not None:
                        await on_connect(conn)
                    if policy.failures:
                        log.info("%s: connected again after %d failed attempts", name, policy.failures)
                await work(conn)
            except DATABASE_ERRORS as err:
                delay = policy.next_delay()
                what = "could not connect" if conn is None else "run failed"
                log.warning(
                    "%s: %s (%s: %s); connecting again in %.1f s", name, what, type(err).__name__, err, delay
                )
                if conn is not None:
                    conn.terminate()  # whatever state it is in, it is not used again
                conn = None
            else:
                policy.reset()
                delay = interval_s
            await _sleep_unless_stopping(stopping, delay)
    finally:
        if conn is not None:
            await _close(conn)
    log.info("%s: stopped", name)


async def _connect_unless_stopping(
    url: str, stopping: asyncio.Event, *, application_name: str
) -> asyncpg.Connection | None:
    """Connect, or give up and return None once `stopping` is set."""
    connecting = asyncio.ensure_future(
        connect(url, application_name=application_name, timeout_s=CONNECT_TIMEOUT_S)
    )
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({connecting, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not stopping.is_set():
        return await connecting  # raises what connecting raised
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, *DATABASE_ERRORS):
        conn = await connecting
        await _close(conn)
    return None


async def _sleep_unless_stopping(stopping: asyncio.Event, delay_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), delay_s)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS:
        conn.terminate()
