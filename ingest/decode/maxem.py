"""Decode Maxem meter messages, version 1 (docs/payloads.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ingest.decode.common import (
    ENERGY,
    Decoded,
    DecodeError,
    Reading,
    StatusReport,
    boolean,
    check_version,
    describe,
    interpret_json_object,
    number,
    quote,
    require_fields,
    rfc3339,
    short_text,
)

SUPPORTED_VERSIONS = (1,)
METER_MAX = 1e9
POWER_MAX = 100_000.0
CURRENT_MAX = 100.0
PHASE_COUNTS = (1, 3)

# channel -> field -> (metric, lower, upper); a None bound marks a boolean field.
SCALAR_FIELDS: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "grid": {
        "import_kwh": ("import_energy_kwh", 0, METER_MAX),
        "export_kwh": ("export_energy_kwh", 0, METER_MAX),
    },
    "ev": {
        "power_w": ("power_w", 0, POWER_MAX),
        "energy_kwh": ("energy_kwh", 0, METER_MAX),
        "charging": ("charging", None, None),
    },
    "heat_pump": {"power_w": ("power_w", 0, POWER_MAX), "energy_kwh": ("energy_kwh", 0, METER_MAX)},
    "solar": {"power_w": ("power_w", 0, POWER_MAX), "energy_kwh": ("energy_kwh", 0, METER_MAX)},
}
# grid fields that hold one value per phase: field -> (metric pattern, bound)
PHASE_FIELDS = {"power_w": ("power_l{}_w", POWER_MAX), "current_a": ("current_l{}_a", CURRENT_MAX)}
CHANNELS = tuple(SCALAR_FIELDS)


def decode(subtopic: tuple[str, ...], payload: bytes) -> Decoded:
    """Decode a message published under `maxem/<serial>/` with the rest of its topic given."""
    match subtopic:
        case ("measurement",):
            return Decoded(readings=interpret_json_object(payload, _measurement))
        case ("status",):
            return Decoded(status=interpret_json_object(payload, _status))
        case _:
            raise DecodeError(f"{quote('/'.join(subtopic))} is not a known Maxem topic after the serial")


def _check_version(document: dict[str, Any]) -> None:
    check_version(document, field="v", format_name="Maxem", supported=SUPPORTED_VERSIONS)


def _measurement(document: dict[str, Any]) -> tuple[Reading, ...]:
    _check_version(document)
    require_fields(document, required={"v", "t"}, optional=set(CHANNELS), where="")
    measured_at = rfc3339(document["t"], path="t")
    readings: list[Reading] = []
    for channel in CHANNELS:
        if channel in document:
            readings += _channel(channel, document[channel], measured_at)
    if not readings:
        raise DecodeError(f"measurement has no readings; expected at least one of {', '.join(CHANNELS)}")
    return tuple(readings)


def _channel(channel: str, fields: object, measured_at: dt.datetime) -> list[Reading]:
    if not isinstance(fields, dict):
        raise DecodeError(f"{channel}: expected an object, got {describe(fields)}")
    scalars = SCALAR_FIELDS[channel]
    phased = PHASE_FIELDS if channel == "grid" else {}
    require_fields(fields, required=set(), optional=set(scalars) | set(phased), where=f"{channel}: ")
    readings = []
    for name, raw in fields.items():
        path = f"{channel}.{name}"
        if name in phased:
            pattern, bound = phased[name]
            for phase, value in enumerate(_phases(raw, bound=bound, path=path), start=1):
                readings.append(Reading(ENERGY, channel, channel, pattern.format(phase), measured_at, value))
            continue
        metric, lower, upper = scalars[name]
        if lower is None or upper is None:
            value = boolean(raw, path=path)
        else:
            value = number(raw, lower=lower, upper=upper, path=path)
        readings.append(Reading(ENERGY, channel, channel, metric, measured_at, value))
    return readings


def _phases(raw: object, *, bound: float, path: str) -> list[float]:
    if not isinstance(raw, list) or len(raw) not in PHASE_COUNTS:
        raise DecodeError(f"{path}: expected an array of 1 or 3 numbers, got {describe(raw)}")
    return [
        number(value, lower=-bound, upper=bound, path=f"{path}[{index}]") for index, value in enumerate(raw)
    ]


def _status(document: dict[str, Any]) -> StatusReport:
    _check_version(document)
    require_fields(document, required={"v", "online"}, optional={"t", "fw"}, where="")
    online = boolean(document["online"], path="online") == 1.0
    occurred_at = rfc3339(document["t"], path="t") if "t" in document else None
    firmware = short_text(document["fw"], path="fw") if "fw" in document else None
    return StatusReport(online=online, occurred_at=occurred_at, firmware=firmware)
