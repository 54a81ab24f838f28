"""`/metrics` and `/health` of a real `thuis ingest`, with the real broker and database behind it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet
from ops.localstack import MosquittoBroker
from ops.provision import provision
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess

COUNTERS = (
    "thuis_ingest_messages_received",
    "thuis_ingest_messages_committed",
    "thuis_ingest_messages_quarantined",
)
HISTOGRAMS = ("thuis_ingest_batch_messages", "thuis_ingest_commit_seconds")
BAD_PAYLOADS = (b"{broken", b"this is not json", b"\xc3\x28 not utf-8", b'{"schema": 99}')
HEALTHY = {"status": "ok", "broker": "connected", "database": "reachable"}


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def request(ingest: IngestProcess, raw: bytes) -> Response:
    """Send raw bytes to the status port; read the response until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(ingest.env["THUIS_STATUS_PORT"]))
    try:
        writer.write(raw)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return Response(int(status), headers, body)


async def get(ingest: IngestProcess, target: str) -> Response:
    return await request(ingest, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


async def metrics(ingest: IngestProcess) -> dict[str, Metric]:
    response = await get(ingest, "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.body.decode())}


def sample(families: dict[str, Metric], name: str, **labels: str) -> float:
    family_name = name.removesuffix("_total").removesuffix("_sum").removesuffix("_count")
    (value,) = [s.value for s in families[family_name].samples if s.name == name and s.labels == labels]
    return value


@dataclass(frozen=True)
class Totals:
    """The figures the test checks, at one moment."""

    received: float
    committed: float
    quarantined: float
    batches: float
    batched_messages: float
    commits: float
    queue_depth: float

    @classmethod
    def of(cls, families: dict[str, Metric]) -> Totals:
        return cls(
            received=sample(families, "thuis_ingest_messages_received_total"),
            committed=sample(families, "thuis_ingest_messages_committed_total"),
            quarantined=sample(families, "thuis_ingest_messages_quarantined_total"),
            batches=sample(families, "thuis_ingest_batch_messages_count"),
            batched_messages=sample(families, "thuis_ingest_batch_messages_sum"),
            commits=sample(families, "thuis_ingest_commit_seconds_count"),
            queue_depth=sample(families, "thuis_ingest_queue_depth"),
        )


async def settled_totals(ingest: IngestProcess, *, timeout_s: float = 20) -> Totals:
    """Wait until everything received is committed and the figures hold still for a moment."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while time.monotonic() < deadline:
        totals = Totals.of(await metrics(ingest))
        if totals.received == totals.committed and totals.queue_depth == 0 and totals == previous:
            return totals
        previous = totals
        await asyncio.sleep(0.3)
    raise AssertionError(f"the ingest's figures did not settle: {previous}")


async def until(condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 20, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_metrics_are_prometheus_text_with_the_ingest_counters_histograms_and_gauges(
    ingest: IngestProcess,
):
    response = await get(ingest, "/metrics")
    assert response.headers["cache-control"] == "no-store"
    families = await metrics(ingest)
    for name in COUNTERS:
        assert families[name].type == "counter", name
    for name in HISTOGRAMS:
        assert families[name].type == "histogram", name
        buckets = [s for s in families[name].samples if s.name == f"{name}_bucket"]
        assert buckets[-1].labels == {"le": "+Inf"}
        bounds = [float(s.labels["le"]) for s in buckets]
        assert bounds == sorted(bounds)
        counts = [s.value for s in buckets]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == sample(families, f"{name}_count")
    assert families["thuis_ingest_queue_depth"].type == "gauge"
    assert sample(families, "thuis_ingest_queue_depth") == 0
    assert sample(families, "thuis_ingest_broker_connected") == 1


async def test_counters_count_exactly_the_valid_and_invalid_messages_published(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with psycopg.connect(database.owner_url) as conn:
        provision(conn, certs_dir=certs_dir, benext=1, maxem=0, registered_at=now - dt.timedelta(days=1))
    (gateway,) = build_fleet(benext=1, maxem=0)
    valid = [
        message
        for minutes_ago in (3, 2, 1)
        for message in gateway.messages_at(now - dt.timedelta(minutes=minutes_ago))
    ]
    invalid = [(f"benext/{gateway.serial}/nodes/9", payload) for payload in BAD_PAYLOADS]
    sent = [(message.topic, message.payload) for message in valid] + invalid

    with GatewayConnection(
        gateway, host="localhost", port=broker.port, certs_dir=certs_dir, announce=False
    ) as connection:
        # Whatever the ingest may receive about the gateway connecting is counted before this point.
        before = await settled_totals(ingest)
        for topic, payload in sent:
            assert await asyncio.to_thread(connection.publish, topic, payload) < 0x80
        await until(
            lambda: _committed_at_least(ingest, before.committed + len(sent)), what=f"{len(sent)} commits"
        )
        after = await settled_totals(ingest)

    assert after.received - before.received == len(sent)
    assert after.committed - before.committed == len(sent)
    assert after.quarantined - before.quarantined == len(invalid)
    assert after.batched_messages - before.batched_messages == len(sent)
    assert after.batches > before.batches
    assert after.commits - before.commits == after.batches - before.batches  # one commit per batch
    assert after.queue_depth == 0
    with psycopg.connect(database.owner_url) as conn:
        quarantined = conn.execute("SELECT coalesce(sum(times_received), 0) FROM quarantine").fetchone()
    assert quarantined == (len(invalid),)


async def _committed_at_least(ingest: IngestProcess, total: float) -> bool:
    return sample(await metrics(ingest), "thuis_ingest_messages_committed_total") >= total


async def test_health_follows_the_broker(broker: MosquittoBroker, ingest: IngestProcess):
    response = await get(ingest, "/health")
    assert (response.status, response.headers["content-type"]) == (200, "application/json")
    assert orjson.loads(response.body) == HEALTHY

    await asyncio.to_thread(broker.stop)
    await until(lambda: _health_is(ingest, 503), what="/health to report the broker gone")
    assert orjson.loads((await get(ingest, "/health")).body) == {
        "status": "unavailable",
        "broker": "unreachable",
        "database": "reachable",
    }
    families = await metrics(ingest)
    assert sample(families, "thuis_ingest_broker_connected") == 0

    await asyncio.to_thread(broker.start)
    await until(lambda: _health_is(ingest, 200), what="/health to report the broker back")
    assert orjson.loads((await get(ingest, "/health")).body) == HEALTHY


async def _health_is(ingest: IngestProcess, status: int) -> bool:
    return (await get(ingest, "/health")).status == status


async def test_a_query_string_is_ignored_and_an_unknown_path_is_not_found(ingest: IngestProcess):
    assert (await get(ingest, "/health?verbose=1")).status == 200
    for target in ("/", "/metrics/", "/healthz", "/nothing?x=/health"):
        response = await get(ingest, target)
        assert response.status == 404, target
        assert response.headers["content-type"] == "text/plain"


async def test_only_get_is_allowed(ingest: IngestProcess):
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        response = await request(ingest, f"{method} /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())
        assert response.status == 405, method


async def test_a_malformed_request_line_is_a_bad_request(ingest: IngestProcess):
    for line in (b"GARBAGE", b"GET /metrics", b"GET /metrics HTTP/2.0", b"GET  /metrics HTTP/1.1", b""):
        response = await request(ingest, line + b"\r\nHost: localhost\r\n\r\n")
        assert response.status == 400, line
    # The server still answers properly afterwards.
    assert (await get(ingest, "/health")).status == 200


async def test_an_oversized_request_head_gets_no_answer(ingest: IngestProcess):
    padding = "x" * 9000  # over the server's 8 KiB limit for a request head
    port = int(ingest.env["THUIS_STATUS_PORT"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nX-Padding: {padding}\r\n\r\n".encode())
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
        await writer.wait_closed()
    padding = "x" * 7000
    response = await request(ingest, f"GET /health HTTP/1.1\r\nX-Padding: {padding}\r\n\r\n".encode())
    assert response.status == 200
