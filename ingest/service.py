"""Run the ingest: take batches from the MQTT receiver, commit them, then acknowledge them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from ingest import queries
from ingest.broker_log import BROKER_LOG_TOPIC
from ingest.gateways import GatewayDirectory
from ingest.receiver import (
    GATEWAY_TOPICS,
    SHARE_GROUP,
    MqttReceiver,
    ReceivedMessage,
    client_options,
    shared,
)
from ingest.settings import IngestSettings
from ingest.status import Health, IngestMetrics, StatusServer
from ingest.writer import BatchResult, BatchWriter, GatewayTraffic
from mqttv5 import BrokerRefusedError
from privacy.keys.ledger import ErasureLedger, require_erasures_applied
from thuis.backoff import DATABASE_ERRORS, Backoff
from thuis.db import create_pool
from thuis.settings import MqttClientSettings

log = logging.getLogger(__name__)

# Batches whose commit is under way, oldest first: acknowledgements must go out in this order.
InFlight = collections.deque[tuple[list[ReceivedMessage], "asyncio.Task[BatchResult | None]"]]
# Deadlock detected, serialization failure: the transaction can simply run again.
RETRY_AT_ONCE_SQLSTATES = frozenset({"40P01", "40001"})

POLL_TIMEOUT_S = 0.2
HEALTH_CHECK_TIMEOUT_S = 2.0
TRAFFIC_FLUSH_TIMEOUT_S = 10.0
# A retiring worker stops once nothing more has come for this long after it left the subscription.
RETIRE_IDLE_S = 2.0
# Waiting for the database: from half a second up to 5 s, with jitter, so that ingest workers that lost the
# database together do not all come back at the same moment (thuis/backoff.py).
RETRY_INITIAL_S, RETRY_MAX_S, RETRY_MULTIPLIER = 0.5, 5.0, 2.0
STATS_INTERVAL_S = 10.0
# What "the database is unavailable" looks like from asyncpg (thuis/backoff.py says why each).
DATABASE_UNAVAILABLE = DATABASE_ERRORS


@dataclass
class IngestTotals:
    """Running totals since start, logged every few seconds."""

    messages: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    quarantined: int = 0

    def add(self, result: BatchResult) -> None:
        """Add one committed batch."""
        self.messages += result.messages
        self.readings_stored += result.readings_stored
        self.readings_duplicate += result.readings_offered - result.readings_stored
        self.quarantined += result.quarantined


class StoppedWhileWaitingError(Exception):
    """Asked to stop before the database could be reached."""


async def stop_requested_within(stopping: asyncio.Event, delay_s: float) -> bool:
    """Wait `delay_s` seconds, or less if asked to stop; say whether asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), delay_s)
    return stopping.is_set()


def retry_policy() -> Backoff:
    """Return a fresh policy for waiting on the database."""
    return Backoff(RETRY_INITIAL_S, RETRY_MAX_S, RETRY_MULTIPLIER)


@contextlib.asynccontextmanager
async def open_pool(settings: IngestSettings, stopping: asyncio.Event) -> AsyncIterator[asyncpg.Pool]:
    """Open the database pool, waiting for the database to come up; close it on the way out."""
    policy = retry_policy()
    while True:
        try:
            pool = await create_pool(
                settings.database_url.get_secret_value(),
                application_name="thuis-ingest",
                min_size=1,
                # One connection per batch in flight, and one for lookups and health checks.
                max_size=max(settings.database_pool_size, settings.commit_pipeline + 1),
                command_timeout=60,
            )
            try:
                # A database restored from a backup made before an erasure is not served until erased again.
                async with pool.acquire() as conn:
                    await require_erasures_applied(conn, ErasureLedger(settings.erasure_ledger_file))
            except BaseException:
                await pool.close()
                raise
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            delay = policy.next_delay()
            log.warning("database not reachable (%s); retrying in %.1f s", type(err).__name__, delay)
            if await stop_requested_within(stopping, delay):
                raise StoppedWhileWaitingError from None
    try:
        yield pool
    finally:
        await pool.close()


class IngestService:
    """The ingest's main loop, stopped by `stop()` (SIGTERM or SIGINT in `run`)."""

    def __init__(
        self, settings: IngestSettings, mqtt: MqttClientSettings, *, client_id: str, retire: bool = False
    ) -> None:
        self.settings = settings
        self.retire = retire
        options = client_options(
            mqtt,
            client_id=client_id,
            session_expiry_s=settings.session_expiry_s,
            receive_maximum=settings.receive_maximum,
            maximum_packet_size=settings.max_packet_bytes,
        )
        self.receiver = MqttReceiver(
            options,
            topic_filters=(*_gateway_filters(settings), BROKER_LOG_TOPIC),
            former_filters=_former_gateway_filters(settings),
        )
        self.writer = BatchWriter(
            gateways=GatewayDirectory(ttl_s=settings.gateway_cache_ttl_s),
            max_payload_bytes=settings.max_payload_bytes,
        )
        self.totals = IngestTotals()
        self.metrics = IngestMetrics(mqtt=self.receiver.stats)
        self._pool: asyncpg.Pool | None = None
        # Traffic per gateway since the last flush; at most one entry per registered gateway.
        self._traffic: dict[str, GatewayTraffic] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, acknowledge it, and disconnect."""
        self._stopping.set()

    async def run(self) -> None:
        """Receive, commit and acknowledge until stopped."""
        status = StatusServer(
            self.metrics,
            self.health,
            self._refresh_gauges,
            host=self.settings.status_host,
            port=self.settings.status_port,
        )
        await status.start()
        try:
            async with open_pool(self.settings, self._stopping) as pool:
                self._pool = pool
                await self._receive_until_stopped(pool)
        except StoppedWhileWaitingError:
            log.info("stopped before the database could be reached")
        finally:
            self._pool = None
            await status.stop()

    async def health(self) -> Health:
        """Check that the broker session is up and the database answers."""
        database = False
        if self._pool is not None:
            try:
                async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S), self._pool.acquire() as conn:
                    database = await conn.fetchval("SELECT true")
            except DATABASE_UNAVAILABLE:
                database = False
        self.metrics.database_reachable.set(database)
        return Health(broker=self.receiver.subscribed.is_set(), database=database)

    def _refresh_gauges(self) -> None:
        self.metrics.queue_depth.set(self.receiver.queued())
        self.metrics.broker_connected.set(self.receiver.subscribed.is_set())

    async def _receive_until_stopped(self, pool: asyncpg.Pool) -> None:
        """Pipeline: while one batch commits, the next is received and checked; acks go out in order."""
        self.receiver.start()
        in_flight: InFlight = collections.deque()
        depth = self.settings.commit_pipeline
        last_traffic = time.monotonic()
        # On its own timer: during a database outage the loop below waits for the oldest commit.
        stats = asyncio.create_task(self._log_totals_periodically())
        left_at: float | None = None  # when a retiring worker left the subscription
        last_batch = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self.retire and left_at is None and self.receiver.subscribed.is_set():
                    try:
                        await self.receiver.unsubscribe()
                    except (BrokerRefusedError, ConnectionError, TimeoutError) as err:
                        log.warning("retiring: could not leave the subscription yet (%s)", err)
                    else:
                        left_at = last_batch = time.monotonic()
                        log.info("retiring: left the subscription; storing what is still queued for it")
                if left_at is not None and not in_flight and time.monotonic() - last_batch > RETIRE_IDLE_S:
                    log.info("retiring: nothing more queued for this worker; ending its session")
                    break
                batch = await self.receiver.get_batch(
                    max_messages=self.settings.batch_max_messages,
                    linger_s=self.settings.batch_linger_s,
                    timeout_s=POLL_TIMEOUT_S,
                )
                if batch:
                    last_batch = time.monotonic()
                    self.metrics.received.inc(len(batch))
                    self.metrics.received_bytes.inc(sum(len(message.payload) for message in batch))
                    in_flight.append((batch, asyncio.create_task(self._commit(pool, batch))))
                await self._acknowledge(in_flight, keep=depth - 1)
                if time.monotonic() - last_traffic >= self.settings.traffic_interval_s:
                    await self._flush_traffic(pool)
                    last_traffic = time.monotonic()
        finally:
            # Finish what is in flight (a commit that cannot finish gives up once stopping), acknowledge
            # what was committed, and only then disconnect.
            await self._acknowledge(in_flight, keep=0)
            await self.receiver.stop(end_session=left_at is not None and not in_flight)
            await self._flush_traffic(pool)
            stats.cancel()
            await asyncio.gather(stats, return_exceptions=True)
            self._log_totals()

    async def _acknowledge(self, in_flight: InFlight, *, keep: int) -> None:
        """Acknowledge finished batches in arrival order; wait until at most `keep` remain in flight."""
        while in_flight and (len(in_flight) > keep or in_flight[0][1].done()):
            batch, commit = in_flight.popleft()
            result = await commit
            if result is None:
                continue  # not committed: unacknowledged, the broker delivers it again
            self.receiver.ack(batch)
            self.totals.add(result)
            for serial, traffic in result.traffic.items():
                self._traffic.setdefault(serial, GatewayTraffic()).add(traffic)
            metrics = self.metrics
            metrics.batch_size.observe(len(batch))
            metrics.committed.inc(result.messages)
            metrics.readings_stored.inc(result.readings_stored)
            metrics.readings_duplicate.inc(result.readings_offered - result.readings_stored)
            metrics.quarantined.inc(result.quarantined)

    async def _flush_traffic(self, pool: asyncpg.Pool) -> None:
        """Write each gateway's traffic since the last flush, and when it was last seen."""
        traffic, self._traffic = self._traffic, {}
        if not traffic:
            return
        serials = sorted(traffic)
        counts = [traffic[serial] for serial in serials]
        occurred_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        try:
            async with (
                asyncio.timeout(HEALTH_CHECK_TIMEOUT_S * 5),
                pool.acquire() as conn,
                conn.transaction(),
            ):
                await conn.execute(
                    queries.UPSERT_TRAFFIC,
                    occurred_at,
                    serials,
                    [count.messages for count in counts],
                    [count.bytes for count in counts],
                    [count.decode_errors for count in counts],
                )
                await conn.execute(
                    queries.UPDATE_GATEWAYS_SEEN, serials, [count.last_seen for count in counts]
                )
        except DATABASE_UNAVAILABLE as err:
            log.warning("could not write traffic counters (%s); keeping them for the next flush", err)
            for serial, count in traffic.items():
                self._traffic.setdefault(serial, GatewayTraffic()).add(count)

    async def _commit(self, pool: asyncpg.Pool, batch: list[ReceivedMessage]) -> BatchResult | None:
        """Commit a batch, retrying while the database is unavailable; None if stopped before it could."""
        metrics = self.metrics
        policy = retry_policy()
        failures = 0
        while True:
            try:
                started = time.perf_counter()
                async with pool.acquire() as conn:
                    try:
                        result = await self.writer.write(conn, batch)
                    except asyncpg.InternalClientError:
                        conn.terminate()  # its state is unknown: it must not go back to the pool
                        raise
                metrics.commit_seconds.observe(time.perf_counter() - started)
                metrics.database_reachable.set(1)
                if failures:
                    log.info("database is back: committed a batch after %d failed attempts", failures)
                return result
            except DATABASE_UNAVAILABLE as err:
                metrics.commit_failures.inc()
                if self._stopping.is_set():
                    # Unacknowledged, the batch stays with the broker and comes back after a restart.
                    log.warning("stopping with an uncommitted batch of %d messages: %s", len(batch), err)
                    return None
                if _is_conflict(err):
                    # Two batches in flight met on the same new rows; the database chose one to retry.
                    log.info("batch commit conflicted with another (%s); retrying", err)
                    continue
                metrics.database_reachable.set(0)
                failures += 1
                delay = policy.next_delay()
                log.warning(
                    "database write failed (%s: %s); retrying in %.1f s", type(err).__name__, err, delay
                )
                # Asked to stop, it tries once more at once, then gives up (above).
                await stop_requested_within(self._stopping, delay)

    async def _log_totals_periodically(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self._log_totals()

    def _log_totals(self) -> None:
        totals = self.totals
        log.info(
            "messages %d, readings stored %d, duplicates %d, quarantined %d, queued %d",
            totals.messages,
            totals.readings_stored,
            totals.readings_duplicate,
            totals.quarantined,
            self.receiver.queued(),
        )


def _gateway_filters(settings: IngestSettings) -> tuple[str, ...]:
    """Plain subscriptions for one worker; a shared subscription when several workers share the load.

    Mosquitto 2.0 does not restore shared subscriptions from its persistence file: after a broker
    restart, gateway messages published before the workers subscribe again have no subscriber and are
    dropped (tests/test_faults.py). A plain subscription of a persistent session is restored and queues
    them. Each worker also reads every broker log line; the events they yield are stored once (same key).
    """
    if settings.share_group is None:
        return GATEWAY_TOPICS
    return shared(GATEWAY_TOPICS, settings.share_group)


def _former_gateway_filters(settings: IngestSettings) -> tuple[str, ...]:
    """The gateway subscriptions of the other mode, which a session may hold from before a change."""
    if settings.share_group is None:
        return shared(GATEWAY_TOPICS, SHARE_GROUP)
    return GATEWAY_TOPICS


def _is_conflict(error: BaseException) -> bool:
    return isinstance(error, asyncpg.PostgresError) and error.sqlstate in RETRY_AT_ONCE_SQLSTATES


async def serve(
    settings: IngestSettings, mqtt: MqttClientSettings, *, client_id: str, retire: bool = False
) -> None:
    """Run the ingest until SIGTERM or SIGINT (or, retiring, until this worker's queue is empty)."""
    service = IngestService(settings, mqtt, client_id=client_id, retire=retire)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
