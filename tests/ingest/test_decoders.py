"""The vendor decoders accept what docs/payloads.md documents and refuse everything else precisely."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from ingest.decode import DecodeError, StatusReport, decode, parse_topic

UTC = dt.UTC


def decode_topic(topic: str, payload: bytes | dict):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decode(parse_topic(topic), raw)


def test_benext_multisensor_report_becomes_smart_home_readings():
    decoded = decode_topic(
        "benext/BNX-0001/nodes/12",
        {
            "schema": 1,
            "ts": 1764082800123,
            "type": "multisensor",
            "values": {"temperature": 21.5, "humidity": 48, "motion": True},
        },
    )
    measured_at = dt.datetime(2025, 11, 25, 15, 0, 0, 123000, tzinfo=UTC)
    assert [
        (r.table, r.device_key, r.device_kind, r.metric, r.measured_at, r.value) for r in decoded.readings
    ] == [
        ("smart_home_readings", "12", "multisensor", "temperature_c", measured_at, 21.5),
        ("smart_home_readings", "12", "multisensor", "humidity_pct", measured_at, 48.0),
        ("smart_home_readings", "12", "multisensor", "motion", measured_at, 1.0),
    ]


def test_benext_p1_meter_is_energy_monitoring():
    decoded = decode_topic(
        "benext/BNX-0001/nodes/2",
        {"schema": 1, "ts": 0, "type": "p1meter", "values": {"import_energy": 1200.5, "gas": 3.25}},
    )
    assert {(r.table, r.metric, r.value) for r in decoded.readings} == {
        ("energy_readings", "import_energy_kwh", 1200.5),
        ("energy_readings", "gas_m3", 3.25),
    }


def test_maxem_measurement_has_a_device_per_channel_and_a_metric_per_phase():
    decoded = decode_topic(
        "maxem/MX-77/measurement",
        {
            "v": 1,
            "t": "2026-11-25T15:00:00.250+01:00",
            "grid": {"import_kwh": 10, "export_kwh": 2, "power_w": [100, -50.5, 0], "current_a": [0.5]},
            "ev": {"power_w": 0, "energy_kwh": 5, "charging": False},
            "solar": {"power_w": 10, "energy_kwh": 7},
        },
    )
    measured_at = dt.datetime(2026, 11, 25, 14, 0, 0, 250000, tzinfo=UTC)
    assert {r.measured_at for r in decoded.readings} == {measured_at}
    assert {(r.device_key, r.metric, r.value) for r in decoded.readings} == {
        ("grid", "import_energy_kwh", 10.0),
        ("grid", "export_energy_kwh", 2.0),
        ("grid", "power_l1_w", 100.0),
        ("grid", "power_l2_w", -50.5),
        ("grid", "power_l3_w", 0.0),
        ("grid", "current_l1_a", 0.5),
        ("ev", "power_w", 0.0),
        ("ev", "energy_kwh", 5.0),
        ("ev", "charging", 0.0),
        ("solar", "power_w", 10.0),
        ("solar", "energy_kwh", 7.0),
    }
    assert {r.table for r in decoded.readings} == {"energy_readings"}


def test_status_messages_carry_no_readings():
    benext = decode_topic("benext/BNX-0001/status", {"schema": 1, "state": "offline"})
    maxem = decode_topic(
        "maxem/MX-77/status", {"v": 1, "online": True, "fw": "3.8.0", "t": "2026-01-01T00:00:00Z"}
    )
    assert benext.readings == ()
    assert benext.status == StatusReport(online=False, occurred_at=None, firmware=None)
    assert maxem.status is not None
    assert maxem.status.online
    assert maxem.status.firmware == "3.8.0"
    assert maxem.status.occurred_at == dt.datetime(2026, 1, 1, tzinfo=UTC)


GOOD_BENEXT = {"schema": 1, "ts": 1764082800123, "type": "door", "values": {"open": True}}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("benext/BNX-0001/nodes/5", b"{not json", "payload is not JSON"),
        ("benext/BNX-0001/nodes/5", b"\xff\xfe{}", "payload is not valid UTF-8 at byte 0"),
        ("benext/BNX-0001/nodes/5", b"[1, 2]", "payload must be a JSON object, not an array"),
        ("benext/BNX-0001/nodes/5", b'{"schema": 1, "ts": NaN}', "payload is not JSON"),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "schema": 2},
            "unsupported BeNext schema version 2; supported: 1",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "schema": "1"},
            "schema: expected an integer BeNext schema version, got a string ('1'); supported: 1",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "ts": "yesterday"},
            "ts: expected integer milliseconds since the epoch, got a string",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "values": {"open": 1}},
            "values.open: expected true or false, got a number",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "values": {"co2": 400}},
            "unknown value 'co2' for node type 'door'",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "values": {}},
            "values: expected an object with at least one value",
        ),
        ("benext/BNX-0001/nodes/5", {**GOOD_BENEXT, "type": "toaster"}, "type: unknown node type 'toaster'"),
        ("benext/BNX-0001/nodes/5", {**GOOD_BENEXT, "extra": 1}, "unknown field 'extra'"),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "type": "multisensor", "values": {"humidity": 140}},
            "values.humidity: expected a number in 0..100, got 140",
        ),
        (
            "benext/BNX-0001/nodes/5",
            {**GOOD_BENEXT, "type": "multisensor", "values": {"temperature": True}},
            "values.temperature: expected a number, got a boolean",
        ),
        ("benext/BNX-0001/nodes/0", GOOD_BENEXT, "topic node id '0' is not a Z-Wave node id 1..232"),
        ("benext/BNX-0001/firmware", GOOD_BENEXT, "'firmware' is not a known BeNext topic"),
        (
            "maxem/MX-77/measurement",
            {"v": 2, "t": "2026-01-01T00:00:00Z"},
            "unsupported Maxem version 2; supported: 1",
        ),
        ("maxem/MX-77/measurement", {"v": 1, "t": "2026-01-01T00:00:00"}, "has no UTC offset"),
        ("maxem/MX-77/measurement", {"v": 1, "t": "2026-01-01T00:00:00Z"}, "measurement has no readings"),
        (
            "maxem/MX-77/measurement",
            {"v": 1, "t": "2026-01-01T00:00:00Z", "grid": {"power_w": [1, 2]}},
            "grid.power_w: expected an array of 1 or 3 numbers, got an array of 2",
        ),
        (
            "maxem/MX-77/measurement",
            {"v": 1, "t": "2026-01-01T00:00:00Z", "solar": {"voltage": 230}},
            "solar: unknown field 'voltage'",
        ),
        (
            "maxem/MX-77/measurement",
            {"v": 1, "t": "2026-01-01T00:00:00Z", "battery": {}},
            "unknown field 'battery'",
        ),
    ],
)
def test_malformed_payloads_are_refused_with_a_precise_reason(topic: str, payload: bytes | dict, reason: str):
    with pytest.raises(DecodeError) as refused:
        decode_topic(topic, payload)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("zwave/BNX-0001/nodes/5", "does not start with a known vendor"),
        ("benext/a/nodes/5", "is not benext/<gateway serial>/..."),
        ("benext/BNX-0001", "is not benext/<gateway serial>/..."),
    ],
)
def test_malformed_topics_are_refused(topic: str, reason: str):
    with pytest.raises(DecodeError, match=reason):
        parse_topic(topic)
