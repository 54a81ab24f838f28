"""Benchmark MQTT subscribers side by side: paho-mqtt 2.x on asyncio, our mqttv5, and the raw paho ceiling.

    .venv/bin/python -m bench.mqtt_subscriber [--runs 5] [--messages 100000] [--benext 40] [--maxem 40]

Every subscriber drains the same backlog, over mutual TLS at QoS 1, from the same Mosquitto, on the
ingest's persistent session (client id from the ingest certificate, Receive Maximum 2,000):
  (a) paho-asyncio: paho-mqtt 2.x driven by an asyncio event loop through its documented integration
      (add_reader/add_writer calling loop_read/loop_write, loop_misc on a timer), manual_ack_set(True),
      acknowledging each message itself in on_message;
  (b) mqttv5: our library on an asyncio event loop, acknowledging each message itself on receipt
      (`acknowledge` per message); (b') the same, with the acknowledgements of one read in one write;
  (c) ceiling: paho with its own network thread (loop_start), acknowledging automatically, doing nothing
      else: the raw MQTT ceiling bench/ingest.py measures.
Each drain runs in a fresh child process, which reports its wall time and CPU time (user + system, all
threads) from its first to its last message; the order of the subscribers rotates from run to run.
Printed: per run, then the median of the runs, CPU seconds per 1,000 messages, and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt import __version__ as paho_version
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway_sim.fleet import build_fleet, generate_messages
from gateway_sim.messages import SimMessage
from gateway_sim.publisher import publish
from ingest.receiver import GATEWAY_TOPICS
from mqttv5 import ClientOptions, Connection, Publish, Session, TlsFiles
from ops.certs import init_certificates, issue_gateway_certificate
from ops.localstack import MosquittoBroker, free_port
from thuis.identity import INGEST_IDENTITY, client_paths

RECEIVE_MAXIMUM = 2000
SESSION_EXPIRY_S = 3600
DRAIN_TIMEOUT_S = 600
KINDS = ("paho-asyncio", "mqttv5", "mqttv5-per-read", "paho-threaded")
LABELS = {
    "paho-asyncio": "(a)  paho 2.x on asyncio, manual ack per message",
    "mqttv5": "(b)  mqttv5, ack per message",
    "mqttv5-per-read": "(b') mqttv5, acks of one read in one write",
    "paho-threaded": "(c)  ceiling: paho thread, automatic ack",
}


def cpu_seconds() -> float:
    """Return this process's CPU time, user + system, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU time at the first and the last message."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first_wall = self.first_cpu = self.last_wall = self.last_cpu = 0.0
        self.done = threading.Event()

    def tick(self, messages: int = 1) -> None:
        """Count messages; note the times at the first and at the last one."""
        if self.count == 0:
            self.first_wall, self.first_cpu = time.perf_counter(), cpu_seconds()
        self.count += messages
        if self.count >= self.expected and not self.done.is_set():
            self.last_wall, self.last_cpu = time.perf_counter(), cpu_seconds()
            self.done.set()

    def report(self) -> dict[str, float]:
        """Return the figures of the drain."""
        return {
            "messages": self.count,
            "seconds": self.last_wall - self.first_wall,
            "cpu_s": self.last_cpu - self.first_cpu,
        }


@dataclass(frozen=True)
class Target:
    """Where the broker is and who we are."""

    port: int
    certs_dir: Path

    def tls_files(self) -> TlsFiles:
        identity = client_paths(self.certs_dir, INGEST_IDENTITY)
        return TlsFiles(self.certs_dir / "ca.crt", identity.cert, identity.key)


# --- the subscribers, each run in a child process ---------------------------------------------------


def paho_client(target: Target) -> paho.Client:
    files = target.tls_files()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=INGEST_IDENTITY,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.tls_set(
        ca_certs=str(files.ca_file),
        certfile=str(files.cert_file),
        keyfile=str(files.key_file),
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    return client


def paho_connect(client: paho.Client, target: Target) -> None:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect("localhost", target.port, clean_start=False, properties=properties)


def drain_paho_threaded(target: Target, clock: Clock) -> None:
    """(c): paho's own network thread, automatic acks, nothing else."""
    client = paho_client(target)

    def on_message(_client: paho.Client, _userdata: object, _message: paho.MQTTMessage) -> None:
        clock.tick()

    client.on_message = on_message
    paho_connect(client, target)
    client.loop_start()
    try:
        if not clock.done.wait(DRAIN_TIMEOUT_S):
            raise RuntimeError(f"paho threaded got {clock.count} of {clock.expected}")
    finally:
        client.disconnect()
        client.loop_stop()


class PahoOnAsyncio:
    """paho-mqtt 2.x on an asyncio loop, as its documentation's loop_asyncio example wires it.

    The socket callbacks register the socket with the event loop; the reader calls loop_read and, since
    TLS may hold decrypted bytes that select() does not see, reads again while the SSL object has some
    pending; loop_misc runs once a second for keep-alive.
    """

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.disconnected = loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_disconnect = self._on_disconnect

    def _on_socket_open(self, client: paho.Client, _userdata: object, sock: paho.SocketLike) -> None:
        self.loop.add_reader(sock, self._readable, sock)
        self._misc = self.loop.create_task(self._loop_misc())

    def _readable(self, sock: paho.SocketLike) -> None:
        self.client.loop_read()
        pending = getattr(sock, "pending", None)
        while pending is not None and self.client.socket() is sock and pending() > 0:
            self.client.loop_read()

    def _on_socket_close(self, _client: paho.Client, _userdata: object, sock: paho.SocketLike) -> None:
        self.loop.remove_reader(sock)
        if self._misc is not None:
            self._misc.cancel()

    def _on_register_write(self, client: paho.Client, _userdata: object, sock: paho.SocketLike) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: paho.Client, _userdata: object, sock: paho.SocketLike) -> None:
        self.loop.remove_writer(sock)

    def _on_disconnect(self, *_args: object) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(None)

    async def _loop_misc(self) -> None:
        # A timer, as paho's example has it: keep-alive and retries, whatever arrives.
        while self.client.loop_misc() == paho.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1)


async def drain_paho_asyncio(target: Target, clock: Clock) -> None:
    """(a): paho on asyncio, manual acks, each message acknowledged in on_message."""
    client = paho_client(target)
    client.manual_ack_set(True)

    def on_message(client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        clock.tick()
        client.ack(message.mid, message.qos)

    client.on_message = on_message
    driver = PahoOnAsyncio(client, asyncio.get_running_loop())
    paho_connect(client, target)
    await asyncio.wait_for(asyncio.to_thread(clock.done.wait), DRAIN_TIMEOUT_S)
    client.disconnect()
    await asyncio.wait_for(driver.disconnected, 10)


async def drain_mqttv5(target: Target, clock: Clock, *, per_read: bool) -> None:
    """(b), (b'): our library, acknowledging on receipt, per message or per read."""
    session: Session

    def each(publishes: list[Publish], connection: Connection) -> None:
        number = connection.number
        for publish_packet in publishes:
            clock.tick()
            session.acknowledge(number, [publish_packet.packet_id])

    def per_read_ack(publishes: list[Publish], connection: Connection) -> None:
        clock.tick(len(publishes))
        session.acknowledge(connection.number, [p.packet_id for p in publishes])

    options = ClientOptions(
        host="localhost",
        port=target.port,
        client_id=INGEST_IDENTITY,
        tls=target.tls_files(),
        session_expiry_s=SESSION_EXPIRY_S,
        receive_maximum=RECEIVE_MAXIMUM,
    )
    session = Session(options, topic_filters=GATEWAY_TOPICS, on_publish=per_read_ack if per_read else each)
    session.start()
    try:
        await asyncio.wait_for(asyncio.to_thread(clock.done.wait), DRAIN_TIMEOUT_S)
    finally:
        await session.stop()


def drain(kind: str, target: Target, expected: int) -> dict[str, float]:
    """Drain `expected` messages with one kind of subscriber; return its figures."""
    clock = Clock(expected)
    if kind == "paho-threaded":
        drain_paho_threaded(target, clock)
    elif kind == "paho-asyncio":
        asyncio.run(drain_paho_asyncio(target, clock))
    else:
        asyncio.run(drain_mqttv5(target, clock, per_read=kind == "mqttv5-per-read"))
    return clock.report()


# --- the parent: broker, backlog, runs --------------------------------------------------------------


@contextlib.contextmanager
def broker_only() -> Iterator[tuple[MosquittoBroker, Path]]:
    """Start the project's TLS Mosquitto on a free port, with fresh certificates; remove it afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="thuis-bench-mqtt-"))
    workdir.chmod(0o755)
    certs_dir = workdir / "certs"
    init_certificates(certs_dir)
    state = workdir / "broker"
    state.mkdir()
    broker = MosquittoBroker(state, certs_dir, free_port())
    try:
        broker.configure()
        broker.start()
        yield broker, certs_dir
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_child(kind: str, target: Target, expected: int) -> dict[str, float]:
    """Run one drain in a fresh interpreter; return what it reports."""
    command = [
        sys.executable,
        "-m",
        "bench.mqtt_subscriber",
        "--drain",
        kind,
        "--port",
        str(target.port),
        "--certs",
        str(target.certs_dir),
        "--messages",
        str(expected),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=DRAIN_TIMEOUT_S + 60
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def create_session(target: Target) -> None:
    """Subscribe once on the persistent session, so that the broker queues the backlog for it."""

    async def subscribe() -> None:
        options = ClientOptions(
            host="localhost",
            port=target.port,
            client_id=INGEST_IDENTITY,
            tls=target.tls_files(),
            session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=RECEIVE_MAXIMUM,
        )
        session = Session(options, topic_filters=GATEWAY_TOPICS, on_publish=lambda _p, _c: None)
        session.start()
        await asyncio.wait_for(session.subscribed.wait(), 10)
        await session.stop()

    asyncio.run(subscribe())


def fill_backlog(target: Target, messages: list[SimMessage], fleet_args: dict[str, int]) -> None:
    """Publish the backlog from its gateways while no subscriber is connected."""
    report = publish(
        messages,
        gateways=build_fleet(benext=fleet_args["benext"], maxem=fleet_args["maxem"], seed=fleet_args["seed"]),
        host="localhost",
        port=target.port,
        certs_dir=target.certs_dir,
        announce=False,
        max_outstanding=500,
        drain_timeout_s=120,
    )
    if report.acknowledged != len(messages):
        raise RuntimeError(f"broker acknowledged {report.acknowledged} of {len(messages)} messages")


def broker_cpu(broker: MosquittoBroker) -> float:
    """Return the broker process's CPU seconds so far."""
    fields = Path(f"/proc/{broker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(
    run: int,
    broker: MosquittoBroker,
    target: Target,
    messages: list[SimMessage],
    fleet_args: dict[str, int],
) -> dict[str, dict[str, float]]:
    """Drain the same backlog once with each subscriber, in an order rotated by the run number."""
    order = KINDS[run % len(KINDS) :] + KINDS[: run % len(KINDS)]
    figures: dict[str, dict[str, float]] = {}
    for kind in order:
        fill_backlog(target, messages, fleet_args)
        before = broker_cpu(broker)
        result = run_child(kind, target, len(messages))
        result["broker_cpu_s"] = broker_cpu(broker) - before
        if result["messages"] != len(messages):
            raise RuntimeError(f"{kind} counted {result['messages']} of {len(messages)} messages")
        figures[kind] = result
        rate = result["messages"] / result["seconds"]
        print(
            f"run {run}: {kind:16} {rate:>9,.0f} msg/s  CPU "
            f"{result['cpu_s'] / result['messages'] * 1000:.4f} s per 1000 msgs  "
            f"({result['cpu_s'] / result['seconds']:.2f} cores; Mosquitto "
            f"{result['broker_cpu_s']:.2f} CPU s over the whole drain)",
            flush=True,
        )
    return figures


def print_medians(results: list[dict[str, dict[str, float]]]) -> None:
    def median_of(kind: str, figure: Callable[[dict[str, float]], float]) -> float:
        return statistics.median(figure(run[kind]) for run in results)

    rates = {kind: median_of(kind, lambda f: f["messages"] / f["seconds"]) for kind in KINDS}
    cpu = {kind: median_of(kind, lambda f: f["cpu_s"] / f["messages"] * 1000) for kind in KINDS}
    print(f"\nmedian of {len(results)} runs ({int(results[0][KINDS[0]]['messages']):,} messages each):")
    print(f"  {'subscriber':46} {'msg/s':>9}  {'CPU s / 1000 msgs':>17}")
    for kind in KINDS:
        print(f"  {LABELS[kind]:46} {rates[kind]:>9,.0f}  {cpu[kind]:>17.4f}")
    print("ratios (throughput; CPU per message):")
    pairs = [
        ("mqttv5", "paho-asyncio", "(b)/(a)"),
        ("mqttv5-per-read", "paho-asyncio", "(b')/(a)"),
        ("mqttv5", "paho-threaded", "(b)/(c)"),
        ("paho-asyncio", "paho-threaded", "(a)/(c)"),
    ]
    for ours, theirs, label in pairs:
        print(
            f"  {label:9} throughput {rates[ours] / rates[theirs]:>6.0%}   CPU per message "
            f"{cpu[ours] / cpu[theirs]:>6.0%}"
        )
    print(json.dumps({"msgs_per_s": rates, "cpu_s_per_1000": cpu}))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--benext", type=int, default=40)
    parser.add_argument("--maxem", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain", choices=KINDS, help=argparse.SUPPRESS)  # a child's job
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_arguments()
    if args.drain:
        print(json.dumps(drain(args.drain, Target(args.port, args.certs), args.messages)))
        return 0
    fleet_args = {"benext": args.benext, "maxem": args.maxem, "seed": args.seed}
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=6)
    messages = list(generate_messages(build_fleet(**fleet_args), start=start, count=args.messages))
    sizes = [len(message.payload) for message in messages]
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"paho-mqtt {paho_version}; {len(messages)} messages, "
        f"median payload {statistics.median(sizes):.0f} bytes, "
        f"from {args.benext} BeNext + {args.maxem} Maxem",
        flush=True,
    )
    with broker_only() as (broker, certs_dir):
        for gateway in build_fleet(**fleet_args):
            issue_gateway_certificate(certs_dir, gateway.serial)
        target = Target(broker.port, certs_dir)
        create_session(target)
        results = [one_run(run, broker, target, messages, fleet_args) for run in range(1, args.runs + 1)]
    print_medians(results)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
