"""What the ingest tells operators: Prometheus metrics at `/metrics` and reachability at `/health`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mqttv5 import SessionStats

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_HEAD_BYTES = 8192
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
COMMIT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class IngestMetrics:
    """The ingest's counters, in a registry of its own so that tests can run several side by side."""

    def __init__(self, *, mqtt: SessionStats | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if mqtt is not None:
            self.registry.register(MqttSessionCollector(mqtt))
        self.received = Counter(
            "thuis_ingest_messages_received",
            "MQTT messages taken off the receive queue",
            registry=self.registry,
        )
        self.received_bytes = Counter(
            "thuis_ingest_received_bytes", "Payload bytes of received messages", registry=self.registry
        )
        self.committed = Counter(
            "thuis_ingest_messages_committed",
            "Messages whose readings, events or quarantine rows are committed and acknowledged",
            registry=self.registry,
        )
        self.readings_stored = Counter(
            "thuis_ingest_readings_stored", "Readings inserted into the hypertables", registry=self.registry
        )
        self.readings_duplicate = Counter(
            "thuis_ingest_readings_duplicate",
            "Readings already stored (redelivered or repeated messages)",
            registry=self.registry,
        )
        self.quarantined = Counter(
            "thuis_ingest_messages_quarantined", "Messages sent to quarantine", registry=self.registry
        )
        self.commit_failures = Counter(
            "thuis_ingest_commit_failures",
            "Batch commits that failed because the database was unavailable (and were retried)",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "thuis_ingest_batch_messages",
            "Messages per committed batch",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "thuis_ingest_commit_seconds",
            "Time to write and commit one batch",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "thuis_ingest_queue_depth", "Received messages waiting for the writer", registry=self.registry
        )
        self.broker_connected = Gauge(
            "thuis_ingest_broker_connected", "1 while subscribed at the broker", registry=self.registry
        )
        self.database_reachable = Gauge(
            "thuis_ingest_database_reachable",
            "1 when the last database check or commit succeeded",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Return the metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class MqttSessionCollector(Collector):
    """The MQTT session's own counts, read when `/metrics` is rendered (they are kept in mqttv5)."""

    def __init__(self, stats: SessionStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the session's counters."""
        stats = self._stats
        yield CounterMetricFamily(
            "thuis_ingest_mqtt_connections", "Connections the broker accepted", value=stats.connections
        )
        yield CounterMetricFamily(
            "thuis_ingest_mqtt_sessions_lost",
            "Connections where the broker had lost the session it should have kept (Session Present 0)",
            value=stats.sessions_lost,
        )
        yield CounterMetricFamily(
            "thuis_ingest_mqtt_sessions_taken_over",
            "Connections ended by the broker because another client took the session over (0x8E)",
            value=stats.taken_over,
        )
        disconnects = CounterMetricFamily(
            "thuis_ingest_mqtt_disconnects", "DISCONNECTs from the broker, by reason code", labels=["reason"]
        )
        for code, count in sorted(stats.disconnects.items()):
            disconnects.add_metric([f"0x{code:02X}"], count)
        yield disconnects


@dataclass(frozen=True)
class Health:
    """Whether the ingest can do its work right now."""

    broker: bool
    database: bool

    @property
    def ok(self) -> bool:
        """Say whether both the broker and the database are reachable."""
        return self.broker and self.database

    def as_json(self) -> bytes:
        """Return the health report as a JSON document."""
        return orjson.dumps(
            {
                "status": "ok" if self.ok else "unavailable",
                "broker": "connected" if self.broker else "unreachable",
                "database": "reachable" if self.database else "unreachable",
            }
        )


class StatusServer:
    """A minimal HTTP/1.1 server for `GET /metrics` and `GET /health`, on the ingest's own event loop."""

    def __init__(
        self,
        metrics: IngestMetrics,
        health: Callable[[], Awaitable[Health]],
        before_render: Callable[[], None],
        *,
        host: str,
        port: int,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._before_render = before_render
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """Return the port the server listens on (useful when it was asked for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the status server is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen; log where."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_REQUEST_HEAD_BYTES
        )
        log.info("metrics and health on http://%s:%d/metrics and /health", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=REQUEST_TIMEOUT_S)
            status, content_type, body = await self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _respond(self, head: bytes) -> tuple[str, str, bytes]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", "text/plain", b"malformed request line\n"
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET is supported\n"
        if path == "/metrics":
            self._before_render()
            return "200 OK", CONTENT_TYPE_LATEST, self._metrics.render()
        if path == "/health":
            health = await self._health()
            status = "200 OK" if health.ok else "503 Service Unavailable"
            return status, "application/json", health.as_json()
        return "404 Not Found", "text/plain", b"not found; try /metrics or /health\n"
