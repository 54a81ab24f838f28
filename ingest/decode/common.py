"""What every decoder returns, and the checks they share."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson

ReadingTable = Literal["energy_readings", "smart_home_readings"]
ENERGY: ReadingTable = "energy_readings"
SMART_HOME: ReadingTable = "smart_home_readings"
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Epoch milliseconds this far out are not a measurement time (year 9999 ends before 253402300800000).
MAX_EPOCH_MS = 253_402_300_799_999


class DecodeError(Exception):
    """A payload does not follow its documented format; the message says precisely how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value of one device, as it will be stored."""

    table: ReadingTable
    device_key: str
    device_kind: str
    metric: str
    measured_at: dt.datetime
    value: float


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A gateway saying it is online or offline."""

    online: bool
    occurred_at: dt.datetime | None
    firmware: str | None


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a message carried: readings, or a status report."""

    readings: tuple[Reading, ...] = ()
    status: StatusReport | None = None


def parse_json_object(payload: bytes) -> dict[str, Any]:
    """Parse a payload as a UTF-8 JSON object, or say exactly why it is not one."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"payload is not valid UTF-8 at byte {err.start}") from None
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise DecodeError(f"payload is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"payload must be a JSON object, not {json_type(document)}")
    return document


def json_type(value: object) -> str:
    """Name a decoded JSON value's type the way the payload documentation does."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case _:
            return "an object"


def require_fields(document: dict[str, Any], *, required: set[str], optional: set[str], where: str) -> None:
    """Refuse missing and unknown fields of an object."""
    missing = required - document.keys()
    if missing:
        raise DecodeError(f"{where}missing field {', '.join(repr(name) for name in sorted(missing))}")
    unknown = document.keys() - required - optional
    if unknown:
        raise DecodeError(f"{where}unknown field {', '.join(repr(name) for name in sorted(unknown))}")


def number(value: object, *, lower: float, upper: float, path: str) -> float:
    """Return a finite JSON number within bounds as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{path}: expected a number, got {json_type(value)}")
    as_float = float(value)
    if not math.isfinite(as_float) or not lower <= as_float <= upper:
        raise DecodeError(f"{path}: expected a number in {_bound(lower)}..{_bound(upper)}, got {value}")
    return as_float


def boolean(value: object, *, path: str) -> float:
    """Return a JSON boolean as 1.0 or 0.0."""
    if not isinstance(value, bool):
        raise DecodeError(f"{path}: expected true or false, got {json_type(value)}")
    return 1.0 if value else 0.0


def short_text(value: object, *, path: str, max_length: int = 64) -> str:
    """Return a short JSON string, such as a firmware version."""
    if not isinstance(value, str):
        raise DecodeError(f"{path}: expected a string, got {json_type(value)}")
    if not 0 < len(value) <= max_length or not value.isprintable():
        raise DecodeError(f"{path}: expected 1-{max_length} printable characters")
    return value


def epoch_milliseconds(value: object, *, path: str) -> dt.datetime:
    """Turn epoch milliseconds (an integer) into a UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{path}: expected integer milliseconds since the epoch, got {json_type(value)}")
    if not 0 <= value <= MAX_EPOCH_MS:
        raise DecodeError(f"{path}: {value} is not a time in milliseconds since the epoch")
    return UNIX_EPOCH + dt.timedelta(milliseconds=value)


def rfc3339(value: object, *, path: str) -> dt.datetime:
    """Turn an RFC 3339 timestamp with an offset into a UTC datetime."""
    if not isinstance(value, str):
        raise DecodeError(f"{path}: expected an RFC 3339 timestamp string, got {json_type(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError(f"{path}: {value[:40]!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise DecodeError(f"{path}: timestamp {value[:40]!r} has no UTC offset")
    return parsed.astimezone(dt.UTC)


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
