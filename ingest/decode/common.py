"""What every decoder returns, and the checks they share."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from thuis.metrics import ReadingTable

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Epoch milliseconds this far out are not a measurement time (year 9999 ends before 253402300800000).
MAX_EPOCH_MS = 253_402_300_799_999
# RFC 3339 date-time: full date, `T`, full time with optional fraction, `Z` or a numeric offset (RFC 3339
# allows `t` and `z` too).
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII | re.IGNORECASE
)
MAX_TIMESTAMP_LENGTH = 40
# A JSON string without escapes followed by a colon: an object key (rarely, the stretch between two strings).
KEY_TOKEN = re.compile(rb'"[^"\\]*"\s*:')
# How much of a value a reason quotes, and how many names it lists: a reason stays short whatever comes in.
QUOTE_CHARS = 40
MAX_NAMES_LISTED = 3

T = TypeVar("T")


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


def interpret_json_object(payload: bytes, interpret: Callable[[dict[str, Any]], T]) -> T:
    """Parse a payload as a JSON object, interpret it, and refuse it if it repeats a key."""
    document = parse_json_object(payload)
    result = interpret(document)
    # Only a document that passed every other check is looked at for repeated keys: it is small and
    # shallow, and a refused one already has its reason.
    refuse_duplicate_keys(payload, document)
    return result


def parse_json_object(payload: bytes) -> dict[str, Any]:
    """Parse a payload as a UTF-8 JSON object, or say exactly why it is not one."""
    if not payload:
        raise DecodeError("payload is empty")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"payload is not valid UTF-8 at byte {err.start}") from None
    try:
        # orjson refuses NaN, Infinity, numbers that overflow a double and nesting deeper than 1024.
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise DecodeError(f"payload is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"payload must be a JSON object, not {describe(document)}")
    return document


class _RepeatedKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def refuse_duplicate_keys(payload: bytes, document: dict[str, Any]) -> None:
    """Refuse an object that repeats a key: JSON parsers disagree on which value wins."""
    # Without escapes every key is written `"name":`, and the pattern finds each one, perhaps with a few
    # false ones; finding exactly as many as the parsed objects hold means no key was repeated. Otherwise
    # the standard library's parser, which is slower but hands over every pair, decides.
    if b"\\" not in payload and len(KEY_TOKEN.findall(payload)) == _key_total(document):
        return
    try:
        json.loads(payload, object_pairs_hook=_refuse_repeated_key)
    except _RepeatedKeyError as err:
        raise DecodeError(f"payload repeats the key {quote(err.key)} in one object") from None
    except ValueError as err:  # not expected after orjson accepted it, but a refusal all the same
        raise DecodeError(f"payload is not JSON: {err}") from None


def _key_total(document: dict[str, Any]) -> int:
    """Count the keys of every object in a document, without recursion."""
    total = 0
    nodes: list[object] = [document]
    for node in nodes:  # grows while it is read: a breadth-first walk
        if isinstance(node, dict):
            total += len(node)
            nodes += node.values()
        elif isinstance(node, list):
            nodes += node
    return total


def _refuse_repeated_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(key)
            seen.add(key)
    return document


def describe(value: object) -> str:
    """Describe a decoded JSON value briefly: its type and, for a scalar, the value itself."""
    match value:
        case None:
            return "null"
        case bool():
            return f"a boolean ({'true' if value else 'false'})"
        case int() | float():
            return f"a number ({value})"
        case str():
            return f"a string ({quote(value)})"
        case list():
            return f"an array of {len(value)}"
        case _:
            return "an object"


def quote(text: str) -> str:
    """Quote a string from a payload for a reason, cut to a readable length."""
    return repr(text[:QUOTE_CHARS]) + ("..." if len(text) > QUOTE_CHARS else "")


def check_version(
    document: dict[str, Any], *, field: str, format_name: str, supported: Collection[int]
) -> None:
    """Refuse a document without a supported format version; run before any other field is looked at."""
    version = document.get(field)
    if type(version) is int and version in supported:
        return
    listed = ", ".join(str(number) for number in supported)
    if field not in document:
        raise DecodeError(f"missing field {field!r}: the {format_name} version; supported: {listed}")
    if type(version) is not int:
        raise DecodeError(
            f"{field}: expected an integer {format_name} version, got {describe(version)}; "
            f"supported: {listed}"
        )
    raise DecodeError(f"unsupported {format_name} version {version}; supported: {listed}")


def require_fields(document: dict[str, Any], *, required: set[str], optional: set[str], where: str) -> None:
    """Refuse missing and unknown fields of an object."""
    missing = required - document.keys()
    if missing:
        raise DecodeError(f"{where}missing field {_names(missing)}")
    unknown = document.keys() - required - optional
    if unknown:
        raise DecodeError(f"{where}unknown field {_names(unknown)}")


def _names(names: Collection[str]) -> str:
    listed = ", ".join(quote(name) for name in sorted(names)[:MAX_NAMES_LISTED])
    more = len(names) - MAX_NAMES_LISTED
    return listed + (f" and {more} more" if more > 0 else "")


def number(value: object, *, lower: float, upper: float, path: str) -> float:
    """Return a finite JSON number within bounds as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{path}: expected a number, got {describe(value)}")
    as_float = float(value)
    if not math.isfinite(as_float) or not lower <= as_float <= upper:
        raise DecodeError(f"{path}: expected a number in {_bound(lower)}..{_bound(upper)}, got {value}")
    return as_float


def boolean(value: object, *, path: str) -> float:
    """Return a JSON boolean as 1.0 or 0.0."""
    if not isinstance(value, bool):
        raise DecodeError(f"{path}: expected true or false, got {describe(value)}")
    return 1.0 if value else 0.0


def short_text(value: object, *, path: str, max_length: int = 64) -> str:
    """Return a short JSON string, such as a firmware version."""
    if not isinstance(value, str):
        raise DecodeError(f"{path}: expected a string, got {describe(value)}")
    if not 0 < len(value) <= max_length or not value.isprintable():
        raise DecodeError(
            f"{path}: expected 1-{max_length} printable characters, got {len(value)} characters "
            f"({quote(value)})"
        )
    return value


def epoch_milliseconds(value: object, *, path: str) -> dt.datetime:
    """Turn epoch milliseconds (an integer) into a UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{path}: expected integer milliseconds since the epoch, got {describe(value)}")
    if not 0 <= value <= MAX_EPOCH_MS:
        raise DecodeError(
            f"{path}: {value} is not a time in milliseconds since the epoch (0..{MAX_EPOCH_MS}, 1970 to 9999)"
        )
    return UNIX_EPOCH + dt.timedelta(milliseconds=value)


def rfc3339(value: object, *, path: str) -> dt.datetime:
    """Turn an RFC 3339 timestamp with an offset into a UTC datetime."""
    if not isinstance(value, str):
        raise DecodeError(f"{path}: expected an RFC 3339 timestamp string, got {describe(value)}")
    if len(value) > MAX_TIMESTAMP_LENGTH or not RFC3339.fullmatch(value):
        if len(value) <= MAX_TIMESTAMP_LENGTH and _local_time(value):
            raise DecodeError(f"{path}: timestamp {quote(value)} has no UTC offset")
        raise DecodeError(
            f"{path}: {quote(value)} is not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.fff]Z or ±HH:MM)"
        )
    try:
        parsed = dt.datetime.fromisoformat(value.upper())
        return parsed.astimezone(dt.UTC)
    except ValueError as err:
        raise DecodeError(f"{path}: {quote(value)} is not a valid date and time: {err}") from None
    except OverflowError:
        raise DecodeError(f"{path}: {quote(value)} is outside the years 1 to 9999 in UTC") from None


def _local_time(value: str) -> bool:
    """Say whether a string is an RFC 3339 date-time that only lacks its offset."""
    return RFC3339.fullmatch(value + "Z") is not None


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
