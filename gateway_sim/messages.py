"""What a simulated gateway publishes, and the readings the ingest must store for it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import orjson

ReadingTable = Literal["energy_readings", "smart_home_readings"]
ENERGY: ReadingTable = "energy_readings"
SMART_HOME: ReadingTable = "smart_home_readings"
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class ExpectedReading:
    """One reading as the ingest stores it for a message (docs/payloads.md)."""

    table: ReadingTable
    device_key: str
    device_kind: str
    metric: str
    measured_at: dt.datetime
    value: float


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT message of a simulated gateway and the readings it must produce (none for a status)."""

    topic: str
    payload: bytes
    readings: tuple[ExpectedReading, ...]

    @property
    def vendor(self) -> str:
        """Return the vendor, the topic's first level."""
        return self.topic.split("/", 2)[0]

    @property
    def gateway_serial(self) -> str:
        """Return the gateway serial, the topic's second level."""
        return self.topic.split("/", 2)[1]


def datetime_from_ms(epoch_ms: int) -> dt.datetime:
    """Turn epoch milliseconds into an exact UTC datetime (no float rounding)."""
    return UNIX_EPOCH + dt.timedelta(milliseconds=epoch_ms)


def ms_from_datetime(moment: dt.datetime) -> int:
    """Turn an aware datetime into epoch milliseconds, dropping sub-millisecond digits."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an aware datetime")
    delta = moment - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def rfc3339_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 in UTC with milliseconds and `Z`, as Maxem meters do."""
    moment = datetime_from_ms(epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_payload(document: dict[str, object]) -> bytes:
    """Serialise a payload as compact JSON (the profiles only produce finite numbers)."""
    return orjson.dumps(document)
