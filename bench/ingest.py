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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import asyncpg
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.stack import BenchStack, CpuMeter, IngestRun, bench_stack, process_cpu_seconds
from gateway_sim.cli import command_line
from gateway_sim.fleet import build_fleet, generate_messages
from gateway_sim.messages import SimMessage
from gateway_sim.publisher import publish
from ingest.receiver import GATEWAY_TOPICS
from ingest.settings import IngestSettings
from ops.provision import provision
from thuis.identity import INGEST_IDENTITY, client_paths

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

    def purge(self, quiet_s: float = 2.0) -> int:
        """Take whatever a previous phase left queued for the session; return how many gateway messages."""
        self._expected = 1 << 62
        self.count = 0
        client = self._client()
        self._connect(client)
        client.loop_start()
        last, seen = time.monotonic(), -1
        while time.monotonic() - last < quiet_s:
            if self.count != seen:
                last, seen = time.monotonic(), self.count
            time.sleep(0.1)
        client.disconnect()
        client.loop_stop()
        return self.count

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
    fleet = build_fleet(benext=fleet_args["benext"], maxem=fleet_args["maxem"], seed=fleet_args["seed"])
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
    services = CpuMeter(stack)
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
        # Done when the last reading is stored. Counting messages would stop early: the committed messages
        # include the gateways' status messages and the broker's log lines, not only the backlog's.
        first_seen, first_count = 0.0, 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            stored = ingest.metric("thuis_ingest_readings_stored_total")
            now = time.perf_counter()
            if stored and not first_seen:
                first_seen, first_count = now, stored
                cpu_at_first = ingest.cpu_seconds()
                services.start()
            if stored >= readings:
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"ingest stored {stored:.0f} of {readings} readings in time")
        cpu = ingest.cpu_seconds() - cpu_at_first
        others = services.used()
        if stored != readings:
            raise RuntimeError(f"ingest stored {stored:.0f} readings, expected {readings}")
        share = (readings - first_count) / readings
        drain = Drain(messages, readings, (now - first_seen) / share)
        seconds = now - first_seen
        print(
            f"  CPU while draining, in cores: ingest {cpu / seconds:.2f}, "
            f"Mosquitto {others['broker'] / seconds:.2f}, PostgreSQL {others['database'] / seconds:.2f}",
            flush=True,
        )
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
            sequences = cast("list[Sequence[object]]", records)  # Records are sequences, untyped
            for offset in range(0, len(sequences), COPY_CHUNK_ROWS):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        table, records=sequences[offset : offset + COPY_CHUNK_ROWS], columns=READING_COLUMNS
                    )
        return total, time.perf_counter() - started
    finally:
        await conn.close()


class Simulator:
    """`thuis sim` publishing as fast as it can in its own process, as gateways that keep sending."""

    def __init__(self, stack: BenchStack, fleet_args: dict[str, int], start: dt.datetime, seconds: float):
        self.process = subprocess.Popen(
            command_line(
                *["--benext", str(fleet_args["benext"]), "--maxem", str(fleet_args["maxem"])],
                *["--seed", str(fleet_args["seed"]), "--start", start.isoformat()],
                *["--rate", "0", "--duration", str(seconds)],
                port=stack.broker.port,
                certs_dir=stack.certs_dir,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> dict[str, float]:
        """Stop the simulator if it still runs; return its JSON summary."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        stdout, _ = self.process.communicate(timeout=900)
        summary: dict[str, float] = json.loads(stdout.decode().strip().splitlines()[-1])
        return summary


@dataclass
class Live:
    """Gateways publishing while the ingest runs, is stopped, and catches up."""

    publish_rate: float  # messages/s the simulated gateways published
    steady_rate: float  # messages/s the ingest committed while keeping up
    catch_up_rate: float  # messages/s the ingest committed right after a restart, with a backlog
    catch_up_s: float  # from the restart until it had caught up with the gateways


def rate_over(ingest: IngestRun, seconds: float) -> float:
    """Committed messages per second over the next `seconds`."""
    before, started = ingest.metric("thuis_ingest_messages_committed_total"), time.perf_counter()
    time.sleep(seconds)
    after = ingest.metric("thuis_ingest_messages_committed_total")
    return (after - before) / (time.perf_counter() - started)


def live_phase(
    stack: BenchStack, fleet_args: dict[str, int], start: dt.datetime, workdir: Path, run: int
) -> Live:
    """Steady state, then 10 s of outage while the gateways go on, then catch-up after the restart."""
    warmup_s, steady_s, outage_s, catch_up_window_s = 2.0, 10.0, 10.0, 4.0
    ingest = IngestRun(stack, workdir / f"ingest-live-{run}-a.log")
    ingest.wait_subscribed()
    simulator = Simulator(stack, fleet_args, start, 600)
    deadline = time.monotonic() + 120
    while not ingest.metric("thuis_ingest_messages_committed_total") and time.monotonic() < deadline:
        time.sleep(POLL_S)  # the gateways connect first
    time.sleep(warmup_s)
    steady = rate_over(ingest, steady_s)
    ingest.stop()
    time.sleep(outage_s)
    restarted_at = time.perf_counter()
    ingest = IngestRun(stack, workdir / f"ingest-live-{run}-b.log")
    try:
        ingest.wait_subscribed()
        while not ingest.metric("thuis_ingest_messages_committed_total"):
            time.sleep(POLL_S)
        catch_up = rate_over(ingest, catch_up_window_s)
        # Caught up: the ingest commits no faster than the gateways publish, i.e. the backlog is gone.
        while rate_over(ingest, 1.0) > steady * 1.1 and simulator.process.poll() is None:
            pass
        caught_up_s = time.perf_counter() - restarted_at
        summary = simulator.finish()
        # Leave nothing queued at the broker for the next run's drains.
        while rate_over(ingest, 1.0) > 0:
            pass
    finally:
        ingest.stop()
    return Live(summary["messages_per_s"], steady, catch_up, caught_up_s)


def soak(stack: BenchStack, fleet_args: dict[str, int], start: dt.datetime, seconds: float) -> None:
    """Gateways publish at full speed for `seconds` while the ingest runs; print its memory over time."""
    ingest = IngestRun(stack, stack.workdir / "ingest-soak.log")
    ingest.wait_subscribed()
    simulator = Simulator(stack, fleet_args, start, seconds)
    samples: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    try:
        while simulator.process.poll() is None:
            time.sleep(5)
            committed = ingest.metric("thuis_ingest_messages_committed_total")
            samples.append((time.perf_counter() - started, ingest.rss_mib(), committed))
        summary = simulator.finish()
    finally:
        ingest.stop()
    print(f"\nsoak: {seconds:.0f} s of gateways publishing {summary['messages_per_s']:,.0f} msg/s")
    for elapsed, rss, committed in samples[:: max(1, len(samples) // 12)]:
        print(f"  t={elapsed:5.0f} s  RSS {rss:6.1f} MiB  committed {committed:>12,.0f}")
    after_first_minute = [rss for elapsed, rss, _ in samples if elapsed >= 60]
    if after_first_minute:
        print(
            f"  RSS after the first minute: min {min(after_first_minute):.1f} MiB, "
            f"max {max(after_first_minute):.1f} MiB, last {after_first_minute[-1]:.1f} MiB; "
            f"peak {max(rss for _, rss, _ in samples):.1f} MiB"
        )


def truncate_readings(stack: BenchStack) -> None:
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        conn.execute("TRUNCATE energy_readings, smart_home_readings, gateway_connectivity_events, quarantine")


def median(values: list[float]) -> float:
    return statistics.median(values)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=150_000)
    parser.add_argument("--benext", type=int, default=40)
    parser.add_argument("--maxem", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--soak-s", type=float, default=0, help="then a live run this long, watching memory")
    parser.add_argument("--profile", type=Path, help="record the ingest with py-spy (--gil) into this folder")
    return parser.parse_args()


def one_run(
    stack: BenchStack,
    run: int,
    *,
    messages: list[SimMessage],
    fleet_args: dict[str, int],
    start: dt.datetime,
    raw: RawSubscriber,
    profile_dir: Path | None,
) -> dict[str, float]:
    """(a), (c), (b) and the live phase; print and return the run's figures."""
    readings = sum(len(m.readings) for m in messages)
    truncate_readings(stack)
    left_over = raw.purge()
    if left_over:
        print(f"  (took {left_over} messages a previous phase left at the broker)")
    fill_rate = fill_backlog(stack, messages, fleet_args)
    services = CpuMeter(stack)
    services.start()
    own_cpu = process_cpu_seconds(os.getpid())
    mqtt = raw.drain(len(messages), readings)
    print(
        f"  CPU while paho drained, in cores (whole drain incl. connect): paho subscriber "
        f"{(process_cpu_seconds(os.getpid()) - own_cpu) / mqtt.seconds:.2f}, "
        f"Mosquitto {services.used()['broker'] / mqtt.seconds:.2f}",
        flush=True,
    )
    fill_backlog(stack, messages, fleet_args)
    profile = profile_dir / f"ingest-{run}.txt" if profile_dir else None
    e2e, peak = ingest_drain(stack, len(messages), readings, stack.workdir / f"ingest-{run}.log", profile)
    rows, seconds = asyncio.run(copy_ceiling(stack))
    copy_rate = rows / seconds
    print(
        f"run {run}: (a) MQTT {mqtt.messages_per_s:,.0f} msg/s | (c) ingest "
        f"{e2e.messages_per_s:,.0f} msg/s, {e2e.readings_per_s:,.0f} readings/s, peak RSS {peak:.0f} MiB"
        f" | (b) COPY {copy_rate:,.0f} rows/s | fill {fill_rate:,.0f} msg/s",
        flush=True,
    )
    truncate_readings(stack)
    live = live_phase(stack, fleet_args, start + dt.timedelta(days=3), stack.workdir, run)
    print(
        f"  live: gateways {live.publish_rate:,.0f} msg/s, ingest steady {live.steady_rate:,.0f} msg/s, "
        f"catch-up after 10 s down {live.catch_up_rate:,.0f} msg/s, "
        f"caught up {live.catch_up_s:.0f} s after the restart",
        flush=True,
    )
    return {
        "mqtt_msgs": mqtt.messages_per_s,
        "mqtt_readings": mqtt.readings_per_s,
        "e2e_msgs": e2e.messages_per_s,
        "e2e_readings": e2e.readings_per_s,
        "copy_rows": copy_rate,
        "ratio_mqtt": e2e.messages_per_s / mqtt.messages_per_s,
        "ratio_copy": e2e.readings_per_s / copy_rate,
        "peak_rss": peak,
        "live_publish": live.publish_rate,
        "live_steady": live.steady_rate,
        "live_catch_up": live.catch_up_rate,
        "catch_up_over_steady": live.catch_up_rate / live.steady_rate,
        "catch_up_over_drain": live.catch_up_rate / e2e.messages_per_s,
    }


def print_medians(m: dict[str, float], runs: int) -> None:
    rates = "{:>10,.0f} msg/s  {:>10,.0f} readings/s"
    print(f"\nmedian of {runs} runs:")
    print("  (a) raw MQTT ceiling      " + rates.format(m["mqtt_msgs"], m["mqtt_readings"]))
    print(f"  (b) raw COPY ceiling      {'':>16}  {m['copy_rows']:>10,.0f} rows/s")
    print("  (c) thuis ingest          " + rates.format(m["e2e_msgs"], m["e2e_readings"]))
    print(f"  (c)/(a) messages          {m['ratio_mqtt']:>10.0%}")
    print(f"  (c)/(b) rows              {m['ratio_copy']:>10.0%}")
    print(f"  ingest peak RSS           {m['peak_rss']:>10.0f} MiB")
    print(f"  live: gateways publish    {m['live_publish']:>10,.0f} msg/s")
    print(f"        ingest steady       {m['live_steady']:>10,.0f} msg/s (keeping up with them)")
    print(f"        catch-up            {m['live_catch_up']:>10,.0f} msg/s after 10 s down")
    print(f"        catch-up / steady   {m['catch_up_over_steady']:>10.0%}")
    print(f"        catch-up / (c)      {m['catch_up_over_drain']:>10.0%} (its full drain rate)")
    print(json.dumps({name: round(value, 3) for name, value in m.items()}))


def main() -> int:
    args = parse_arguments()
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
    results: list[dict[str, float]] = []
    with bench_stack() as stack:
        with psycopg.connect(stack.owner_url) as conn:
            provision(
                conn,
                certs_dir=stack.certs_dir,
                registered_at=start - dt.timedelta(days=1),
                benext=args.benext,
                maxem=args.maxem,
            )
        raw = RawSubscriber(stack)
        raw.create_session()
        for run in range(1, args.runs + 1):
            figures = one_run(
                stack,
                run,
                messages=messages,
                fleet_args=fleet_args,
                start=start,
                raw=raw,
                profile_dir=args.profile,
            )
            results.append(figures)
        if args.soak_s:
            truncate_readings(stack)
            soak(stack, fleet_args, start + dt.timedelta(days=3), args.soak_s)
    if results:
        print_medians({name: median([r[name] for r in results]) for name in results[0]}, args.runs)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
