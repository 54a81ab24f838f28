"""Check a batch of received messages and write it in one transaction: readings, events and quarantine."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ingest import queries
from ingest.broker_log import BROKER_LOG_TOPIC, BrokerConnectionEvent, EventSequencer
from ingest.decode import Decoded, DecodeError, Reading, TopicAddress, decode, parse_topic
from ingest.gateways import GatewayDirectory, GatewayRecord
from ingest.receiver import ReceivedMessage
from thuis.db import Connection

log = logging.getLogger(__name__)

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
# SQLSTATE classes that say "this data cannot be stored", as opposed to "the database is unavailable":
# data exception, integrity constraint violation, program limit exceeded.
DATA_ERROR_CLASSES = ("22", "23", "54")
MAX_QUARANTINE_TOPIC = 1000
MAX_LOGGED_TOPIC = 200
MAX_ERROR_TEXT = 200


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that passed every check, with the gateway that sent it."""

    message: ReceivedMessage
    gateway: GatewayRecord
    decoded: Decoded


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that goes to quarantine, and why."""

    message: ReceivedMessage
    reason: str
    gateway_serial: str | None
    known_gateway: bool


@dataclass
class GatewayTraffic:
    """What one registered gateway sent: counted per batch, summed and flushed by the service."""

    messages: int = 0
    bytes: int = 0
    decode_errors: int = 0
    last_seen: dt.datetime | None = None

    def add(self, other: GatewayTraffic) -> None:
        """Add another count of the same gateway."""
        self.messages += other.messages
        self.bytes += other.bytes
        self.decode_errors += other.decode_errors
        if other.last_seen is not None and (self.last_seen is None or other.last_seen > self.last_seen):
            self.last_seen = other.last_seen


@dataclass
class BatchResult:
    """What one committed batch did."""

    messages: int = 0
    readings_offered: int = 0
    readings_stored: int = 0
    quarantined: int = 0
    traffic: dict[str, GatewayTraffic] = field(default_factory=dict)


@dataclass
class _Rows:
    """Column arrays for the batch's multi-row statements."""

    energy: tuple[list[object], ...] = field(default_factory=lambda: ([], [], [], [], []))
    smart_home: tuple[list[object], ...] = field(default_factory=lambda: ([], [], [], [], []))
    events: tuple[list[object], ...] = field(default_factory=lambda: ([], [], [], [], []))
    # Per gateway: its firmware (from an online status) and address (from the broker), when a batch has them.
    firmware: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    traffic: dict[str, GatewayTraffic] = field(default_factory=dict)


def is_data_error(error: BaseException) -> bool:
    """Say whether a database error is about the data (retrying cannot help) rather than availability."""
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(error, asyncpg.PostgresError) and str(sqlstate)[:2] in DATA_ERROR_CLASSES


class BatchWriter:
    """Turn batches of MQTT messages into committed rows."""

    def __init__(self, *, gateways: GatewayDirectory, max_payload_bytes: int) -> None:
        self._gateways = gateways
        self._max_payload_bytes = max_payload_bytes
        self._device_ids: dict[tuple[str, str], int] = {}
        self._sequencer = EventSequencer()

    async def write(self, conn: Connection, batch: Sequence[ReceivedMessage]) -> BatchResult:
        """Write a batch; a message the database refuses is isolated and quarantined, the rest stored."""
        try:
            return await self._write_once(conn, batch)
        except asyncpg.PostgresError as err:
            if not is_data_error(err):
                raise
            if len(batch) == 1:
                log.warning("database refused a message on %s: %s", batch[0].topic, err)
                rejected = Rejected(
                    batch[0], f"database refused the message: {err}", None, known_gateway=False
                )
                return await self._write_rejections(conn, [rejected])
            middle = len(batch) // 2
            first = await self.write(conn, batch[:middle])
            second = await self.write(conn, batch[middle:])
            return _combine(first, second)

    async def _write_once(self, conn: Connection, batch: Sequence[ReceivedMessage]) -> BatchResult:
        messages, broker_events = _split_broker_log(batch, self._sequencer)
        accepted, rejected, gateways = await self._classify(
            conn, messages, also_look_up={event.client_id for event in broker_events}
        )
        rows = _Rows()
        new_devices = self._collect_rows(accepted, rejected, rows)
        _collect_broker_events(broker_events, gateways, rows)
        result = BatchResult(messages=len(batch), quarantined=len(rejected), traffic=rows.traffic)
        async with conn.transaction():
            device_ids = await self._resolve_devices(conn, new_devices)
            if device_ids:
                _fill_device_ids(rows, device_ids)
            result.readings_offered = len(rows.energy[0]) + len(rows.smart_home[0])
            result.readings_stored = await _insert_readings(conn, rows)
            if rows.events[0]:
                await conn.execute(queries.INSERT_CONNECTIVITY_EVENTS, *rows.events)
            if rejected:
                await conn.execute(queries.UPSERT_QUARANTINE, *_quarantine_columns(rejected))
            if rows.firmware or rows.addresses:
                # Rare (status messages, connects), and in serial order so that batches in flight at the
                # same time lock gateway rows in the same order.
                serials = sorted(rows.firmware.keys() | rows.addresses.keys())
                await conn.execute(
                    queries.UPDATE_GATEWAY_FACTS,
                    serials,
                    [rows.firmware.get(serial) for serial in serials],
                    [rows.addresses.get(serial) for serial in serials],
                )
        # Only now that the rows exist may their ids serve later batches.
        self._device_ids.update(device_ids)
        return result

    async def _write_rejections(self, conn: Connection, rejected: list[Rejected]) -> BatchResult:
        async with conn.transaction():
            await conn.execute(queries.UPSERT_QUARANTINE, *_quarantine_columns(rejected))
        return BatchResult(messages=len(rejected), quarantined=len(rejected))

    async def _classify(
        self, conn: Connection, batch: Sequence[ReceivedMessage], *, also_look_up: set[str]
    ) -> tuple[list[Accepted], list[Rejected], dict[str, GatewayRecord | None]]:
        addresses: list[TopicAddress | DecodeError] = []
        for message in batch:
            try:
                addresses.append(parse_topic(message.topic))
            except DecodeError as err:
                addresses.append(err)
        serials = {address.gateway_serial for address in addresses if isinstance(address, TopicAddress)}
        serials |= also_look_up
        gateways = await self._gateways.lookup(conn, serials) if serials else {}
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        for message, address in zip(batch, addresses, strict=True):
            if isinstance(address, DecodeError):
                rejected.append(Rejected(message, address.reason, None, known_gateway=False))
                continue
            known = gateways.get(address.gateway_serial) is not None
            try:
                gateway, decoded = self._check(message, address, gateways.get(address.gateway_serial))
            except DecodeError as err:
                rejected.append(Rejected(message, err.reason, address.gateway_serial, known_gateway=known))
                continue
            except Exception as err:
                # A decoder bug must not turn one message into a crash loop: the broker would redeliver it
                # for ever. It is quarantined byte for byte, to be replayed once the decoder is fixed.
                log.exception("decoder failed on a message on %s", message.topic[:MAX_LOGGED_TOPIC])
                reason = f"decoder failed: {type(err).__name__}: {str(err)[:MAX_ERROR_TEXT]}"
                rejected.append(Rejected(message, reason, address.gateway_serial, known_gateway=known))
                continue
            accepted.append(Accepted(message, gateway, decoded))
        return accepted, rejected, gateways

    def _check(
        self, message: ReceivedMessage, address: TopicAddress, gateway: GatewayRecord | None
    ) -> tuple[GatewayRecord, Decoded]:
        if gateway is None:
            raise DecodeError(f"unknown gateway serial {address.gateway_serial!r}")
        if gateway.vendor != address.vendor:
            raise DecodeError(
                f"gateway {address.gateway_serial!r} is registered as {gateway.vendor}, not {address.vendor}"
            )
        size = len(message.payload)
        if size > self._max_payload_bytes:
            raise DecodeError(f"payload of {size} bytes exceeds the {self._max_payload_bytes}-byte limit")
        decoded = decode(address, message.payload)
        times = [reading.measured_at for reading in decoded.readings]
        if decoded.status is not None and decoded.status.occurred_at is not None:
            times.append(decoded.status.occurred_at)
        for measured_at in times:
            _check_time(measured_at, received_at=message.received_at, gateway=gateway)
        return gateway, decoded

    def _collect_rows(
        self, accepted: list[Accepted], rejected: list[Rejected], rows: _Rows
    ) -> dict[tuple[str, str], str]:
        """Fill the column arrays; return the devices not yet known, with their kind."""
        new_devices: dict[tuple[str, str], str] = {}
        for item in accepted:
            serial = item.gateway.gateway_serial
            received_at = item.message.received_at
            status = item.decoded.status
            _count(rows, serial, item.message, decode_error=False)
            if status is not None:
                if status.online and status.firmware is not None:
                    rows.firmware[serial] = status.firmware
                occurred_at = status.occurred_at or received_at
                event = "online" if status.online else "offline"
                _append(rows.events, occurred_at, serial, event, None, None)
            for reading in item.decoded.readings:
                key = (serial, reading.device_key)
                device_id = self._device_ids.get(key)
                if device_id is None:
                    new_devices[key] = reading.device_kind
                _append_reading(rows, reading, device_id, key, item.gateway.site_id)
        # Messages read off the socket together share a receive time: each decode error of a gateway is
        # stamped a microsecond after the previous one, so that every one is its own event.
        stamped: dict[tuple[str, dt.datetime], int] = {}
        for refused in rejected:
            if refused.known_gateway and refused.gateway_serial is not None:
                serial = refused.gateway_serial
                moment = (serial, refused.message.received_at)
                earlier = stamped[moment] = stamped.get(moment, -1) + 1
                occurred_at = refused.message.received_at + dt.timedelta(microseconds=earlier)
                _append(rows.events, occurred_at, serial, "decode_error", refused.reason, None)
                _count(rows, serial, refused.message, decode_error=True)
        return new_devices

    async def _resolve_devices(
        self, conn: Connection, new_devices: dict[tuple[str, str], str]
    ) -> dict[tuple[str, str], int]:
        if not new_devices:
            return {}
        keys = list(new_devices)
        records = await conn.fetch(
            queries.UPSERT_DEVICES,
            [serial for serial, _ in keys],
            [device_key for _, device_key in keys],
            list(new_devices.values()),
        )
        return {(row["gateway_serial"], row["device_key"]): row["device_id"] for row in records}


def _check_time(measured_at: dt.datetime, *, received_at: dt.datetime, gateway: GatewayRecord) -> None:
    ahead = measured_at - received_at
    if ahead > FUTURE_TOLERANCE:
        raise DecodeError(
            f"measurement time {measured_at.isoformat()} is {ahead.total_seconds():.0f} s ahead of the "
            f"ingest clock (at most {FUTURE_TOLERANCE.total_seconds():.0f} s allowed)"
        )
    if measured_at < gateway.registered_at:
        raise DecodeError(
            f"measurement time {measured_at.isoformat()} is before gateway {gateway.gateway_serial!r} was "
            f"registered ({gateway.registered_at.isoformat()})"
        )


def _append(columns: tuple[list[object], ...], *values: object) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


# A reading whose device has no id yet carries its device key; the id is filled in after the upsert.
def _append_reading(
    rows: _Rows, reading: Reading, device_id: int | None, key: tuple[str, str], site_id: int
) -> None:
    columns = rows.energy if reading.table == "energy_readings" else rows.smart_home
    _append(
        columns,
        reading.measured_at,
        device_id if device_id is not None else key,
        site_id,
        reading.value,
        reading.metric,
    )


def _fill_device_ids(rows: _Rows, device_ids: dict[tuple[str, str], int]) -> None:
    for columns in (rows.energy, rows.smart_home):
        ids = columns[1]
        for index, device in enumerate(ids):
            if isinstance(device, tuple):
                ids[index] = device_ids[device]


def _count(rows: _Rows, serial: str, message: ReceivedMessage, *, decode_error: bool) -> None:
    traffic = rows.traffic.get(serial)
    if traffic is None:
        traffic = rows.traffic[serial] = GatewayTraffic(last_seen=message.received_at)
    traffic.messages += 1
    traffic.bytes += len(message.payload)
    traffic.decode_errors += decode_error
    if traffic.last_seen is None or message.received_at > traffic.last_seen:
        traffic.last_seen = message.received_at


def _split_broker_log(
    batch: Sequence[ReceivedMessage], sequencer: EventSequencer
) -> tuple[Sequence[ReceivedMessage], list[BrokerConnectionEvent]]:
    """Separate the broker's log lines from gateway messages; keep only connects and disconnects.

    Runs before the batch's first await, so batches are sequenced in the order they were received; a batch
    written again (retried, or split) finds its lines already stamped.
    """
    if all(message.topic != BROKER_LOG_TOPIC for message in batch):
        return batch, []
    messages = [message for message in batch if message.topic != BROKER_LOG_TOPIC]
    events = [
        sequencer.event_of(message, message.payload) for message in batch if message.topic == BROKER_LOG_TOPIC
    ]
    return messages, [event for event in events if event is not None]


def _collect_broker_events(
    events: list[BrokerConnectionEvent], gateways: dict[str, GatewayRecord | None], rows: _Rows
) -> None:
    """Record connects and disconnects of registered gateways (other clients, such as the ingest, are not)."""
    for event in events:
        if gateways.get(event.client_id) is None:
            continue
        _append(rows.events, event.occurred_at, event.client_id, event.event, event.detail, event.ip)
        if event.ip is not None:
            rows.addresses[event.client_id] = event.ip


async def _insert_readings(conn: Connection, rows: _Rows) -> int:
    stored = 0
    for statement, columns in (
        (queries.INSERT_ENERGY_READINGS, rows.energy),
        (queries.INSERT_SMART_HOME_READINGS, rows.smart_home),
    ):
        if columns[0]:
            status = await conn.execute(statement, *columns)
            stored += int(status.rsplit(" ", 1)[1])
    return stored


def _quarantine_columns(rejected: list[Rejected]) -> tuple[list[object], ...]:
    """Merge identical bad messages (same topic and bytes) into one row that counts them."""
    merged: dict[tuple[str, bytes], _QuarantineRow] = {}
    for item in rejected:
        # An MQTT topic may be 64 KiB long; keep enough to recognise it and stay within index limits.
        # PostgreSQL text cannot hold NUL (the broker refuses it in topics, but the writer must not depend
        # on that: a message it cannot quarantine would be redelivered for ever).
        topic = item.message.topic[:MAX_QUARANTINE_TOPIC].replace("\x00", "\ufffd")
        digest = hashlib.sha256(item.message.payload).digest()
        received_at = item.message.received_at
        row = merged.get((topic, digest))
        if row is None:
            merged[(topic, digest)] = _QuarantineRow(
                topic,
                item.gateway_serial,
                item.message.payload,
                digest,
                item.reason,
                received_at,
                received_at,
            )
        else:
            row.last_received_at = max(row.last_received_at, received_at)
            row.times_received += 1
    rows = list(merged.values())
    return (
        [row.topic for row in rows],
        [row.gateway_serial for row in rows],
        [row.payload for row in rows],
        [row.payload_sha256 for row in rows],
        [len(row.payload) for row in rows],
        [row.reason for row in rows],
        [row.received_at for row in rows],
        [row.last_received_at for row in rows],
        [row.times_received for row in rows],
    )


@dataclass
class _QuarantineRow:
    topic: str
    gateway_serial: str | None
    payload: bytes
    payload_sha256: bytes
    reason: str
    received_at: dt.datetime
    last_received_at: dt.datetime
    times_received: int = 1


def _combine(first: BatchResult, second: BatchResult) -> BatchResult:
    return BatchResult(
        messages=first.messages + second.messages,
        readings_offered=first.readings_offered + second.readings_offered,
        readings_stored=first.readings_stored + second.readings_stored,
        quarantined=first.quarantined + second.quarantined,
    )
