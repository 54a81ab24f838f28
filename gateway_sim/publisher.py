"""Publish a fleet's messages, one TLS connection per gateway, paced, bounded, and counted by PUBACK."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway_sim.connection import (
    DEFAULT_KEEPALIVE_S,
    DEFAULT_MAX_OUTSTANDING,
    DEFAULT_SESSION_EXPIRY_S,
    GatewayConnection,
    MqttConnectionError,
)
from gateway_sim.gateways import SimGateway
from gateway_sim.messages import SimMessage

log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PublishReport:
    """What a run delivered. Counts are of reading messages; status messages are not counted."""

    gateways: int
    sent: int  # handed to a connection
    acknowledged: int  # PUBACK with a success reason code (< 0x80)
    refused: int  # PUBACK with a failure reason code (>= 0x80), e.g. 0x87 not authorized
    unacknowledged: int  # no PUBACK before the drain timeout
    readings: int  # readings carried by acknowledged messages
    elapsed_s: float  # from the first publish until the last PUBACK (or the drain timeout)
    messages_per_s: float  # acknowledged messages per second of elapsed time
    interrupted: bool  # stopped by a signal or the stop event rather than by count, duration or input
    refusals: Mapping[str, int] = field(default_factory=dict)  # reason code -> how many

    def as_dict(self) -> dict[str, object]:
        """Return the report as plain JSON-ready data."""
        return asdict(self) | {"refusals": dict(self.refusals)}


class _Tally:
    """Counters updated from paho's network threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.acknowledged = 0
        self.refused = 0
        self.readings = 0
        self.refusals: Counter[str] = Counter()
        self.last_ack = time.monotonic()

    def on_ack(self, readings: int, reason_code: int) -> None:
        with self.lock:
            if reason_code >= 0x80:
                self.refused += 1
                self.refusals[_reason_name(reason_code)] += 1
            else:
                self.acknowledged += 1
                self.readings += readings
            self.last_ack = time.monotonic()


def _reason_name(reason_code: int) -> str:
    try:
        name = ReasonCode(PacketTypes.PUBACK, identifier=reason_code).getName()
    except KeyError:
        name = "unknown"
    return f"0x{reason_code:02X} {name}"


class FleetPublisher:
    """Open one MQTT connection per simulated gateway and publish their messages through them."""

    def __init__(
        self,
        gateways: Sequence[SimGateway],
        *,
        host: str,
        port: int,
        certs_dir: Path,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        connect_timeout_s: float = 10.0,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        announce: bool = True,
    ) -> None:
        self.connections = {
            gateway.serial: GatewayConnection(
                gateway,
                host=host,
                port=port,
                certs_dir=certs_dir,
                max_outstanding=max_outstanding,
                session_expiry_s=session_expiry_s,
                keepalive_s=keepalive_s,
                connect_timeout_s=connect_timeout_s,
                announce=announce,
            )
            for gateway in gateways
        }
        self.drain_timeout_s = drain_timeout_s
        self.stop_event = threading.Event()
        self._opened: list[GatewayConnection] = []

    def __enter__(self) -> Self:
        try:
            for connection in self.connections.values():
                connection.open()
                self._opened.append(connection)
        except BaseException:
            self.close()
            raise
        log.info("connected %d simulated gateways", len(self._opened))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def stop(self) -> None:
        """Ask a running `run` to stop publishing; safe from a signal handler or another thread."""
        self.stop_event.set()

    def close(self) -> None:
        """Announce `offline` and disconnect every open connection, stopping their threads."""
        deadline = time.monotonic() + self.drain_timeout_s
        while self._opened:
            connection = self._opened.pop()
            try:
                connection.close(drain_timeout_s=max(0.0, deadline - time.monotonic()))
            except MqttConnectionError as err:
                log.warning("%s", err)

    def run(
        self,
        messages: Iterable[SimMessage],
        *,
        rate: float = 0.0,
        count: int | None = None,
        duration_s: float | None = None,
    ) -> PublishReport:
        """Publish until the messages end, `count` are sent, `duration_s` passes or `stop()`; then drain."""
        if rate < 0:
            raise ValueError("rate cannot be negative")
        tally = _Tally()
        started = time.monotonic()
        deadline = started + duration_s if duration_s is not None else None

        def should_stop() -> bool:
            return self.stop_event.is_set() or (deadline is not None and time.monotonic() >= deadline)

        for index, message in enumerate(itertools.islice(messages, count)):
            if rate > 0:
                self._pace(started + index / rate, deadline)
            if should_stop():
                break
            connection = self._connection_for(message)
            on_ack = _AckCounter(tally, len(message.readings))
            if not connection.submit(message.topic, message.payload, on_ack, should_stop=should_stop):
                break
            with tally.lock:
                tally.sent += 1
        interrupted = self.stop_event.is_set()
        self._drain()
        with tally.lock:
            finished = (
                tally.last_ack if tally.acknowledged + tally.refused == tally.sent else time.monotonic()
            )
            elapsed = max(finished - started, 1e-9)
            return PublishReport(
                gateways=len(self.connections),
                sent=tally.sent,
                acknowledged=tally.acknowledged,
                refused=tally.refused,
                unacknowledged=tally.sent - tally.acknowledged - tally.refused,
                readings=tally.readings,
                elapsed_s=round(elapsed, 3),
                messages_per_s=round(tally.acknowledged / elapsed, 1),
                interrupted=interrupted,
                refusals=dict(tally.refusals),
            )

    def _connection_for(self, message: SimMessage) -> GatewayConnection:
        try:
            return self.connections[message.gateway_serial]
        except KeyError:
            raise MqttConnectionError(
                f"no connection for gateway {message.gateway_serial!r} ({message.topic})"
            ) from None

    def _pace(self, due: float, deadline: float | None) -> None:
        wait_until = due if deadline is None else min(due, deadline)
        remaining = wait_until - time.monotonic()
        if remaining > 0:
            self.stop_event.wait(remaining)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        for connection in self.connections.values():
            if not connection.wait_for_acks(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "%s: %d publishes still unacknowledged after %.0f s",
                    connection.gateway_serial,
                    connection.outstanding,
                    self.drain_timeout_s,
                )


@dataclass(frozen=True, slots=True)
class _AckCounter:
    tally: _Tally
    readings: int

    def __call__(self, reason_code: int) -> None:
        self.tally.on_ack(self.readings, reason_code)


def publish(
    messages: Iterable[SimMessage],
    *,
    gateways: Sequence[SimGateway],
    host: str,
    port: int,
    certs_dir: Path,
    rate: float = 0.0,
    count: int | None = None,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    announce: bool = True,
) -> PublishReport:
    """Connect the gateways, publish the messages, drain, announce offline and disconnect."""
    publisher = FleetPublisher(
        gateways,
        host=host,
        port=port,
        certs_dir=certs_dir,
        max_outstanding=max_outstanding,
        drain_timeout_s=drain_timeout_s,
        announce=announce,
    )
    if stop_event is not None:
        publisher.stop_event = stop_event
    with publisher:
        return publisher.run(messages, rate=rate, count=count, duration_s=duration_s)
