"""Run the ingest: take batches from the MQTT receiver, commit them, then acknowledge them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from ingest.gateways import GatewayDirectory
from ingest.mqtt import MqttReceiver, ReceivedMessage
from ingest.writer import BatchResult, BatchWriter
from thuis.settings import IngestSettings, MqttClientSettings

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.2
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)
STATS_INTERVAL_S = 10.0


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


@contextlib.asynccontextmanager
async def open_pool(settings: IngestSettings) -> AsyncIterator[asyncpg.Pool]:
    """Open the database pool, waiting for the database to come up; close it on the way out."""
    delays = iter(RETRY_DELAYS_S)
    while True:
        try:
            pool = await asyncpg.create_pool(
                settings.database_url.get_secret_value(),
                min_size=1,
                max_size=settings.database_pool_size,
                command_timeout=60,
            )
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            delay = next(delays, RETRY_DELAYS_S[-1])
            log.warning("database not reachable (%s); retrying in %.1f s", type(err).__name__, delay)
            await asyncio.sleep(delay)
    try:
        yield pool
    finally:
        await pool.close()


class IngestService:
    """The ingest's main loop, stopped by `stop()` (SIGTERM or SIGINT in `run`)."""

    def __init__(self, settings: IngestSettings, mqtt: MqttClientSettings, *, client_id: str) -> None:
        self.settings = settings
        self.receiver = MqttReceiver(
            mqtt,
            client_id=client_id,
            session_expiry_s=settings.session_expiry_s,
            receive_maximum=settings.receive_maximum,
        )
        self.writer = BatchWriter(
            gateways=GatewayDirectory(ttl_s=settings.gateway_cache_ttl_s),
            max_payload_bytes=settings.max_payload_bytes,
        )
        self.totals = IngestTotals()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, acknowledge it, and disconnect."""
        self._stopping.set()

    async def run(self) -> None:
        """Receive, commit and acknowledge until stopped."""
        async with open_pool(self.settings) as pool:
            self.receiver.start()
            last_stats = time.monotonic()
            try:
                while not self._stopping.is_set():
                    batch = await asyncio.to_thread(
                        self.receiver.get_batch,
                        max_messages=self.settings.batch_max_messages,
                        linger_s=self.settings.batch_linger_s,
                        timeout_s=POLL_TIMEOUT_S,
                    )
                    if batch:
                        await self._commit_and_ack(pool, batch)
                    if time.monotonic() - last_stats >= STATS_INTERVAL_S:
                        self._log_totals()
                        last_stats = time.monotonic()
            finally:
                self.receiver.stop()
                self._log_totals()

    async def _commit_and_ack(self, pool: asyncpg.Pool, batch: list[ReceivedMessage]) -> None:
        """Commit a batch, retrying while the database is unavailable; acknowledge only after the commit."""
        delays = iter(RETRY_DELAYS_S)
        while True:
            try:
                async with pool.acquire() as conn:
                    result = await self.writer.write(conn, batch)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as err:
                if self._stopping.is_set():
                    # Unacknowledged, the batch stays with the broker and comes back after a restart.
                    log.warning("stopping with an uncommitted batch of %d messages: %s", len(batch), err)
                    return
                delay = next(delays, RETRY_DELAYS_S[-1])
                log.warning(
                    "database write failed (%s: %s); retrying in %.1f s", type(err).__name__, err, delay
                )
                await asyncio.sleep(delay)
        self.receiver.ack(batch)
        self.totals.add(result)

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


async def serve(settings: IngestSettings, mqtt: MqttClientSettings, *, client_id: str) -> None:
    """Run the ingest until SIGTERM or SIGINT."""
    service = IngestService(settings, mqtt, client_id=client_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
