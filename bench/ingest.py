"""Benchmark `thuis ingest` against the raw ceilings of its two sides, measured in the same run.

    .venv/bin/python -m bench.ingest [--runs 3] [--messages 150000] [--benext 40] [--maxem 40]

Each run:
  (a) MQTT ceiling: a backlog of N messages waits at the broker for the ingest's session; a bare paho
      subscriber (QoS 1, mutual TLS, same Receive Maximum, no processing) drains it.
  (c) end to end: the same N messages wait again; `thuis ingest` drains them into TimescaleDB,
      acknowledging each batch after its commit. Measured from its first to its last commit.
  (b) database ceiling: the rows (c) stored are copied back into the same hypertables with asyncpg COPY.
Then a live phase: simulated gateways publish continuously while the ingest runs (its steady-state
rate), the ingest is stopped while they go on publishing, and restarted: its catch-up rate is compared
with the steady-state rate. The figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.stack import BenchStack, IngestRun, bench_stack
from gateway_sim.fleet import build_fleet, generate_messages
from gateway_sim.messages import SimMessage
from gateway_sim.provision import provision
from gateway_sim.publisher import publish
from ingest.mqtt import GATEWAY_TOPICS
from thuis.certs import INGEST_IDENTITY, client_paths
from thuis.settings import IngestSettings

RECEIVE_MAXIMUM = IngestSettings.model_fields["receive_maximum"].default
READING_COLUMNS = ("measured_at", "device_id", "site_id", "value", "metric")
COPY_CHUNK_ROWS = 10_000
POLL_S = 0.05


@dataclass
class Drain:
    """A backlog drained: how many messages and readings, and how long from first to last."""

    messages: int
    readings: int
    seconds: float

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds


class RawSubscriber:
    """A bare paho subscriber on the ingest's session: counts messages, acknowledges them, nothing else."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._done = threading.Event()
        self._expected = 0
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def _client(self) -> paho.Client:
        identity = client_paths(self._stack.certs_dir, INGEST_IDENTITY)
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=INGEST_IDENTITY,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.tls_set(
            ca_certs=str(self._stack.certs_dir / "ca.crt"),
            certfile=str(identity.cert),
            keyfile=str(identity.key),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.on_message = self._on_message
        client.on_subscribe = lambda *_: self._subscribed.set()
        return client

    def _connect(self, client: paho.Client) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect("localhost", self._stack.broker.port, clean_start=False, properties=properties)

    def create_session(self) -> None:
        """Subscribe once on a persistent session, so the broker queues for it while it is away."""
        client = self._client()
        self._connect(client)
        client.loop_start()
        client.subscribe([(topic, 1) for topic in GATEWAY_TOPICS])
        if not self._subscribed.wait(10):
            raise RuntimeError("raw subscriber: no SUBACK")
        client.disconnect()
        client.loop_stop()

    def drain(self, expected: int, readings: int) -> Drain:
        """Connect, take `expected` messages off the session's backlog, and time it."""
        self._expected = expected
        self.count = 0
        self._done.clear()
        client = self._client()
        self._connect(client)
        client.loop_start()
        if not self._done.wait(600):
            raise RuntimeError(f"raw subscriber got {self.count} of {expected} messages")
        client.disconnect()
        client.loop_stop()
        return Drain(expected, readings, self.last - self.first)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if message.topic.startswith("$SYS/"):
            return  # the broker's log lines, which the ingest's session also subscribes to
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self._expected:
            self._done.set()


def fill_backlog(stack: BenchStack, messages: list[SimMessage], fleet_args: dict[str, int]) -> float:
    """Publish the messages from their gateways while no subscriber is connected; return msgs/s."""
    fleet = build_fleet(**fleet_args)
    report = publish(
        messages,
        gateways=fleet,
        host="localhost",
        port=stack.broker.port,
        certs_dir=stack.certs_dir,
        announce=False,
        max_outstanding=500,
        drain_timeout_s=120,
    )
    if report.acknowledged != len(messages):
        raise RuntimeError(f"broker acknowledged {report.acknowledged} of {len(messages)} messages")
    return report.messages_per_s


def ingest_drain(
    stack: BenchStack, messages: int, readings: int, log_path: Path, profile: Path | None = None
) -> tuple[Drain, float]:
    """Start the ingest on a waiting backlog; time it from its first to its last commit."""
    ingest = IngestRun(stack, log_path)
    profiler = None
    try:
        ingest.wait_subscribed()
        if profile is not None:
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(ingest.process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--output",
                    str(profile),
                    "--gil",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        first_seen, first_count = 0.0, 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            committed = ingest.metric("thuis_ingest_messages_committed_total")
            now = time.perf_counter()
            if committed and not first_seen:
                first_seen, first_count = now, committed
                cpu_at_first = ingest.cpu_seconds()
            if committed >= messages:
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError("ingest did not drain the backlog in time")
        cpu = ingest.cpu_seconds() - cpu_at_first
        stored = ingest.metric("thuis_ingest_readings_stored_total")
        if stored != readings:
            raise RuntimeError(f"ingest stored {stored:.0f} readings, expected {readings}")
        share = (messages - first_count) / messages
        drain = Drain(messages, readings, (now - first_seen) / share)
        print(f"  ingest CPU {cpu / (now - first_seen):.0%} of one core while draining", flush=True)
        peak = ingest.peak_rss_mib()
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait()
        code = ingest.stop()
    if code != 0:
        raise RuntimeError(f"ingest exited with {code}")
    return drain, peak


async def copy_ceiling(stack: BenchStack) -> tuple[int, float]:
    """Copy the rows the ingest stored back into the same hypertables with COPY; return rows, seconds."""
    conn = await asyncpg.connect(stack.owner_url)
    try:
        tables = ("energy_readings", "smart_home_readings")
        columns = ", ".join(READING_COLUMNS)
        rows = {table: await conn.fetch(f"SELECT {columns} FROM {table}") for table in tables}  # noqa: S608
        await conn.execute("TRUNCATE energy_readings, smart_home_readings")
        total = sum(len(r) for r in rows.values())
        started = time.perf_counter()
        for table, records in rows.items():
            for offset in range(0, len(records), COPY_CHUNK_ROWS):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        table, records=records[offset : offset + COPY_CHUNK_ROWS], columns=READING_COLUMNS
                    )
        return total, time.perf_counter() - started
    finally:
        await conn.close()


def truncate_readings(stack: BenchStack) -> None:
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        conn.execute("TRUNCATE energy_readings, smart_home_readings, gateway_connectivity_events, quarantine")


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=150_000)
    parser.add_argument("--benext", type=int, default=40)
    parser.add_argument("--maxem", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="record the ingest with py-spy (--gil) into this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    fleet_args = {"benext": args.benext, "maxem": args.maxem, "seed": args.seed}
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=6)
    messages = list(generate_messages(build_fleet(**fleet_args), start=start, count=args.messages))
    readings = sum(len(m.readings) for m in messages)
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(messages)} messages carrying {readings} readings "
        f"({readings / len(messages):.2f} per message) from {args.benext} BeNext + {args.maxem} Maxem"
    )
    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with bench_stack() as stack:
        with psycopg.connect(stack.owner_url) as conn:
            provision(
                conn,
                certs_dir=stack.certs_dir,
                registered_at=start - dt.timedelta(days=1),
                **{k: v for k, v in fleet_args.items() if k != "seed"},
            )
        raw = RawSubscriber(stack)
        raw.create_session()
        for run in range(1, args.runs + 1):
            truncate_readings(stack)
            fill_rate = fill_backlog(stack, messages, fleet_args)
            mqtt = raw.drain(len(messages), readings)
            fill_backlog(stack, messages, fleet_args)
            profile = args.profile / f"ingest-{run}.txt" if args.profile else None
            e2e, peak = ingest_drain(
                stack, len(messages), readings, stack.workdir / f"ingest-{run}.log", profile
            )
            rows, seconds = asyncio.run(copy_ceiling(stack))
            copy_rate = rows / seconds
            print(
                f"run {run}: (a) MQTT {mqtt.messages_per_s:,.0f} msg/s | (c) ingest "
                f"{e2e.messages_per_s:,.0f} msg/s, {e2e.readings_per_s:,.0f} readings/s, "
                f"peak RSS {peak:.0f} MiB"
                f" | (b) COPY {copy_rate:,.0f} rows/s | fill {fill_rate:,.0f} msg/s",
                flush=True,
            )
            record("mqtt_msgs", mqtt.messages_per_s)
            record("mqtt_readings", mqtt.readings_per_s)
            record("e2e_msgs", e2e.messages_per_s)
            record("e2e_readings", e2e.readings_per_s)
            record("copy_rows", copy_rate)
            record("ratio_mqtt", e2e.messages_per_s / mqtt.messages_per_s)
            record("ratio_copy", e2e.readings_per_s / copy_rate)
            record("peak_rss", peak)

    m = {name: median(values) for name, values in results.items()}
    print(f"\nmedian of {args.runs} runs:")
    print(
        f"  (a) raw MQTT ceiling      {m['mqtt_msgs']:>10,.0f} msg/s  {m['mqtt_readings']:>10,.0f} readings/s"
    )
    print(f"  (b) raw COPY ceiling      {'':>16}  {m['copy_rows']:>10,.0f} rows/s")
    print(
        f"  (c) thuis ingest          {m['e2e_msgs']:>10,.0f} msg/s  {m['e2e_readings']:>10,.0f} readings/s"
    )
    print(f"  (c)/(a) messages          {m['ratio_mqtt']:>10.0%}")
    print(f"  (c)/(b) rows              {m['ratio_copy']:>10.0%}")
    print(f"  ingest peak RSS           {m['peak_rss']:>10.0f} MiB")
    print(json.dumps({name: round(value, 3) for name, value in m.items()}))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
