"""Decode Maxem meter messages, version 1 (docs/payloads.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ingest.decode.common import (
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
from thuis.metrics import PHASES, Metric, metric

SUPPORTED_VERSIONS = (1,)
PHASE_COUNTS = (1, 3)

# channel -> payload field -> the catalogue's metric (its unit, bounds and kind come from there)
FIELD_NAMES: dict[str, dict[str, str]] = {
    "grid": {"import_kwh": "import_energy_kwh", "export_kwh": "export_energy_kwh"},
    "ev": {"power_w": "power_w", "energy_kwh": "energy_kwh", "charging": "charging"},
    "heat_pump": {"power_w": "power_w", "energy_kwh": "energy_kwh"},
    "solar": {"power_w": "power_w", "energy_kwh": "energy_kwh"},
}
SCALAR_FIELDS: dict[str, dict[str, Metric]] = {
    channel: {name: metric(channel, metric_name) for name, metric_name in names.items()}
    for channel, names in FIELD_NAMES.items()
}
# grid fields that hold one value per phase: field -> metric name pattern (phase 1, 2 or 3)
PHASE_FIELDS = {"power_w": "power_l{}_w", "current_a": "current_l{}_a"}
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
            phases = [metric(channel, phased[name].format(phase)) for phase in PHASES]
            for spec, value in zip(phases, _phases(raw, specs=phases, path=path), strict=False):
                readings.append(Reading(spec.table, channel, channel, spec.name, measured_at, value))
            continue
        spec = scalars[name]
        if spec.kind == "flag":
            value = boolean(raw, path=path)
        else:
            value = number(raw, lower=spec.lower, upper=spec.upper, path=path)
        readings.append(Reading(spec.table, channel, channel, spec.name, measured_at, value))
    return readings


def _phases(raw: object, *, specs: list[Metric], path: str) -> list[float]:
    if not isinstance(raw, list) or len(raw) not in PHASE_COUNTS:
        raise DecodeError(f"{path}: expected an array of 1 or 3 numbers, got {describe(raw)}")
    return [
        number(value, lower=spec.lower, upper=spec.upper, path=f"{path}[{index}]")
        for index, (value, spec) in enumerate(zip(raw, specs, strict=False))
    ]


def _status(document: dict[str, Any]) -> StatusReport:
    _check_version(document)
    require_fields(document, required={"v", "online"}, optional={"t", "fw"}, where="")
    online = boolean(document["online"], path="online") == 1.0
    occurred_at = rfc3339(document["t"], path="t") if "t" in document else None
    firmware = short_text(document["fw"], path="fw") if "fw" in document else None
    return StatusReport(online=online, occurred_at=occurred_at, firmware=firmware)
