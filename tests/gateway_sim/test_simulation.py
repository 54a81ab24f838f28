"""The gateway simulator's messages: deterministic, within docs/payloads.md, and realistic where it matters.

These tests need no broker and no database. The payload checks below are written from docs/payloads.md,
independently of the simulator's own tables, so a drift on either side shows up here.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pytest

from gateway_sim.benext import BenextGateway
from gateway_sim.fleet import (
    FleetError,
    benext_serial,
    build_fleet,
    generate_messages,
    maxem_serial,
    simulate,
)
from gateway_sim.gateways import SimGateway
from gateway_sim.maxem import Channel, MaxemMeter
from gateway_sim.messages import ExpectedReading, SimMessage

UTC = dt.UTC
WINTER = dt.datetime(2026, 1, 14, tzinfo=UTC)
SUMMER = dt.datetime(2026, 6, 21, tzinfo=UTC)
SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
RFC3339_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
METER_MAX = 1e9

Table = Literal["energy_readings", "smart_home_readings"]
SH: Table = "smart_home_readings"
EN: Table = "energy_readings"


@dataclass(frozen=True)
class Spec:
    """One documented payload value: its stored metric and table, and its range (None: a boolean)."""

    metric: str
    bounds: tuple[float, float] | None
    table: Table = SH
    phased: bool = False  # a Maxem per-phase array: the metric has a {} for the phase number


def num(metric: str, lower: float, upper: float, table: Table = SH) -> Spec:
    return Spec(metric, (lower, upper), table)


def flag(metric: str, table: Table = SH) -> Spec:
    return Spec(metric, None, table)


# docs/payloads.md, BeNext schema 1: node type -> value -> spec
BENEXT: dict[str, dict[str, Spec]] = {
    "multisensor": {
        "temperature": num("temperature_c", -50, 100),
        "humidity": num("humidity_pct", 0, 100),
        "luminance": num("luminance_lux", 0, 100_000),
        "motion": flag("motion"),
        "battery": num("battery_pct", 0, 100),
    },
    "door": {"open": flag("door_open"), "battery": num("battery_pct", 0, 100)},
    "switch": {
        "on": flag("switch_on"),
        "power": num("power_w", -50_000, 50_000),
        "energy": num("energy_kwh", 0, METER_MAX),
    },
    "thermostat": {
        "temperature": num("temperature_c", -50, 100),
        "setpoint": num("setpoint_c", 0, 40),
        "valve": num("valve_pct", 0, 100),
        "battery": num("battery_pct", 0, 100),
    },
    "p1meter": {
        "import_energy": num("import_energy_kwh", 0, METER_MAX, EN),
        "export_energy": num("export_energy_kwh", 0, METER_MAX, EN),
        "import_power": num("import_power_w", 0, 100_000, EN),
        "export_power": num("export_power_w", 0, 100_000, EN),
        "gas": num("gas_m3", 0, METER_MAX, EN),
    },
}
# docs/payloads.md, Maxem version 1: channel -> field -> spec (every reading goes to energy_readings)
MAXEM: dict[str, dict[str, Spec]] = {
    "grid": {
        "import_kwh": num("import_energy_kwh", 0, METER_MAX, EN),
        "export_kwh": num("export_energy_kwh", 0, METER_MAX, EN),
        "power_w": Spec("power_l{}_w", (-100_000, 100_000), EN, phased=True),
        "current_a": Spec("current_l{}_a", (-100, 100), EN, phased=True),
    },
    "ev": {
        "power_w": num("power_w", 0, 100_000, EN),
        "energy_kwh": num("energy_kwh", 0, METER_MAX, EN),
        "charging": flag("charging", EN),
    },
    "heat_pump": {
        "power_w": num("power_w", 0, 100_000, EN),
        "energy_kwh": num("energy_kwh", 0, METER_MAX, EN),
    },
    "solar": {"power_w": num("power_w", 0, 100_000, EN), "energy_kwh": num("energy_kwh", 0, METER_MAX, EN)},
}
# Meter readings (never decreasing) per vendor: (device kind, metric)
BENEXT_METERS = {
    ("switch", "energy_kwh"),
    ("p1meter", "import_energy_kwh"),
    ("p1meter", "export_energy_kwh"),
    ("p1meter", "gas_m3"),
}
MAXEM_METERS = {
    ("grid", "import_energy_kwh"),
    ("grid", "export_energy_kwh"),
    ("ev", "energy_kwh"),
    ("heat_pump", "energy_kwh"),
    ("solar", "energy_kwh"),
}
ALL_CHANNELS: tuple[Channel, ...] = ("grid", "ev", "heat_pump", "solar")


def at_ms(epoch_ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=epoch_ms)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_number(value: object, lower: float, upper: float, where: str) -> float:
    assert is_number(value), f"{where}: {value!r} is not a finite JSON number"
    assert isinstance(value, int | float)
    assert lower <= value <= upper, f"{where}: {value} outside {lower}..{upper}"
    return float(value)


def stored_value(spec: Spec, value: object, where: str) -> float:
    """Check one JSON value against its spec and return what the ingest stores for it."""
    if spec.bounds is None:
        assert isinstance(value, bool), f"{where}: {value!r} is not a boolean"
        return 1.0 if value else 0.0
    return check_number(value, *spec.bounds, where)


def readings_from_benext(topic: str, payload: bytes) -> list[ExpectedReading]:
    """Check a BeNext node report against the documentation and derive what the ingest stores."""
    match = re.fullmatch(r"benext/([^/]+)/nodes/([^/]+)", topic)
    assert match, topic
    serial, node = match.groups()
    assert SERIAL.fullmatch(serial)
    assert re.fullmatch(r"[1-9][0-9]{0,2}", node), topic
    assert 1 <= int(node) <= 232, topic
    document: dict[str, Any] = orjson.loads(payload)
    assert set(document) == {"schema", "ts", "type", "values"}, document
    assert type(document["schema"]) is int
    assert document["schema"] == 1
    assert type(document["ts"]) is int
    assert document["ts"] > 0
    measured_at = at_ms(document["ts"])
    node_type = document["type"]
    specs = BENEXT[node_type]
    values = document["values"]
    assert isinstance(values, dict), document
    assert values, document
    assert set(values) <= set(specs), f"unknown values {set(values) - set(specs)} for {node_type}"
    return [
        ExpectedReading(
            specs[name].table,
            node,
            node_type,
            specs[name].metric,
            measured_at,
            stored_value(specs[name], value, f"{topic} {name}"),
        )
        for name, value in values.items()
    ]


def readings_from_maxem(topic: str, payload: bytes) -> list[ExpectedReading]:
    """Check a Maxem measurement against the documentation and derive what the ingest stores."""
    match = re.fullmatch(r"maxem/([^/]+)/measurement", topic)
    assert match, topic
    assert SERIAL.fullmatch(match.group(1))
    document: dict[str, Any] = orjson.loads(payload)
    assert type(document["v"]) is int
    assert document["v"] == 1
    assert RFC3339_MS_Z.fullmatch(document["t"]), document["t"]
    measured_at = dt.datetime.fromisoformat(document["t"]).astimezone(UTC)
    channels = set(document) - {"v", "t"}
    assert channels, document
    assert channels <= set(MAXEM), document
    readings = []
    for channel in ("grid", "ev", "heat_pump", "solar"):
        if channel not in document:
            continue
        fields = document[channel]
        assert isinstance(fields, dict), fields
        assert set(fields) <= set(MAXEM[channel]), fields
        for name, value in fields.items():
            spec = MAXEM[channel][name]
            where = f"{topic} {channel}.{name}"
            if spec.phased:
                assert isinstance(value, list), where
                assert len(value) in (1, 3), where
                readings += [
                    ExpectedReading(
                        spec.table,
                        channel,
                        channel,
                        spec.metric.format(phase),
                        measured_at,
                        stored_value(spec, item, where),
                    )
                    for phase, item in enumerate(value, start=1)
                ]
            else:
                stored = stored_value(spec, value, where)
                readings.append(
                    ExpectedReading(spec.table, channel, channel, spec.metric, measured_at, stored)
                )
    return readings


def derive_readings(message: SimMessage) -> list[ExpectedReading]:
    if message.topic.startswith("benext/"):
        return readings_from_benext(message.topic, message.payload)
    return readings_from_maxem(message.topic, message.payload)


def sort_key(reading: ExpectedReading) -> tuple[str, str, str, dt.datetime]:
    return (reading.table, reading.device_key, reading.metric, reading.measured_at)


def day_of_messages(
    fleet: Sequence[SimGateway], start: dt.datetime, *, hours: float = 24, interval_s: float = 300
) -> list[SimMessage]:
    ticks = int(hours * 3600 / interval_s)
    messages_per_tick = sum(len(gateway.tick(0)) for gateway in fleet)
    return list(generate_messages(fleet, start=start, interval_s=interval_s, count=ticks * messages_per_tick))


def test_same_seed_gives_identical_payloads_and_readings():
    first = list(simulate(benext=3, maxem=3, seed=7, start=WINTER, count=300))
    second = list(simulate(benext=3, maxem=3, seed=7, start=WINTER, count=300))
    assert first == second
    assert len(first) == 300


def test_different_seed_gives_different_payloads():
    seven = [message.payload for message in simulate(seed=7, start=WINTER, count=100)]
    eight = [message.payload for message in simulate(seed=8, start=WINTER, count=100)]
    assert seven != eight


def test_messages_do_not_depend_on_the_process_hash_seed():
    script = (
        "import datetime as dt, hashlib; from gateway_sim.fleet import simulate; "
        "start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC); "
        "digest = hashlib.sha256(); "
        "[digest.update(m.topic.encode() + m.payload) for m in simulate(seed=3, start=start, count=200)]; "
        "print(digest.hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "4242")
    }
    assert len(digests) == 1


def test_every_payload_follows_the_documented_format():
    for seed in (0, 1, 2):
        fleet = build_fleet(benext=4, maxem=4, seed=seed)
        for start in (WINTER, SUMMER):
            for message in day_of_messages(fleet, start, interval_s=900):
                derive_readings(message)
                assert orjson.dumps(orjson.loads(message.payload)) == message.payload, (
                    "payload is not compact"
                )


def test_expected_readings_are_what_the_payload_says():
    fleet = build_fleet(benext=3, maxem=3, seed=5)
    fleet.append(MaxemMeter("sim-mxm-single", seed=5, channels=ALL_CHANNELS, phases=1))
    messages = day_of_messages(fleet, SUMMER, interval_s=1800)
    assert messages
    for message in messages:
        assert sorted(message.readings, key=sort_key) == sorted(derive_readings(message), key=sort_key)
        for reading in message.readings:
            assert reading.measured_at.tzinfo == UTC
            assert reading.measured_at.microsecond % 1000 == 0
            assert type(reading.value) is float


def test_every_node_type_and_channel_appears():
    gateway = BenextGateway(
        "sim-bnx-full", node_types=["multisensor", "door", "switch", "thermostat", "p1meter"]
    )
    kinds = {reading.device_kind for message in gateway.messages_at(WINTER) for reading in message.readings}
    assert kinds == set(BENEXT)
    meter = MaxemMeter("sim-mxm-full", channels=ALL_CHANNELS)
    (message,) = meter.messages_at(SUMMER)
    metrics = {(reading.device_key, reading.metric) for reading in message.readings}
    assert ("grid", "power_l3_w") in metrics
    assert ("grid", "current_l1_a") in metrics
    assert {key for key, _ in metrics} == set(ALL_CHANNELS)


@pytest.mark.parametrize("seed", [0, 11])
def test_meter_readings_never_decrease_over_a_simulated_day(seed):
    fleet = build_fleet(benext=4, maxem=3, seed=seed)
    fleet.append(BenextGateway("sim-bnx-p1", seed=seed, node_types=["switch", "p1meter"]))
    fleet.append(MaxemMeter("sim-mxm-all", seed=seed, channels=ALL_CHANNELS))
    # Sunday 06:00 to Monday 18:00 UTC: two local midnights and the EV meter's Monday-noon week boundary.
    start = dt.datetime(2026, 3, 8, 6, tzinfo=UTC)
    series: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for message in day_of_messages(fleet, start, hours=36, interval_s=60):
        for reading in message.readings:
            if (reading.device_kind, reading.metric) in BENEXT_METERS | MAXEM_METERS:
                series[(message.gateway_serial, reading.device_key, reading.metric)].append(reading.value)
    assert len(series) >= 20
    for key, values in series.items():
        assert all(a <= b for a, b in itertools.pairwise(values)), f"{key} decreased"
    increasing = [key for key, values in series.items() if values[-1] > values[0]]
    assert len(increasing) >= len(series) // 2


def test_meters_never_decrease_whichever_times_are_asked_for():
    meter = MaxemMeter("sim-mxm-all", seed=4, channels=ALL_CHANNELS)
    gateway = BenextGateway("sim-bnx-p1", seed=4, node_types=["switch", "p1meter"])
    moments = sorted(
        SUMMER + dt.timedelta(milliseconds=(index * 7_919_993) % (40 * 86_400_000)) for index in range(400)
    )
    # Ask out of order first (caches must not change the answer), then compare in time order.
    shuffled = moments[1::2] + moments[::2]
    by_moment = {moment: meter.messages_at(moment) + gateway.messages_at(moment) for moment in shuffled}
    previous: dict[tuple[str, str, str], float] = {}
    for moment in moments:
        assert by_moment[moment] == meter.messages_at(moment) + gateway.messages_at(moment)
        for message in by_moment[moment]:
            for reading in message.readings:
                if (reading.device_kind, reading.metric) in BENEXT_METERS | MAXEM_METERS:
                    key = (message.gateway_serial, reading.device_key, reading.metric)
                    assert reading.value >= previous.get(key, 0.0), key
                    previous[key] = reading.value


def solar_power(meter: MaxemMeter, moment: dt.datetime) -> float:
    (message,) = meter.messages_at(moment)
    power_w: float = orjson.loads(message.payload)["solar"]["power_w"]
    return power_w


@pytest.mark.parametrize("month", [1, 4, 6, 10, 12])
def test_solar_is_zero_at_night_and_positive_at_noon(month):
    meter = MaxemMeter("sim-mxm-sun", seed=2, channels=("grid", "solar"))
    for day in (3, 17):
        midnight = dt.datetime(2026, month, day, tzinfo=UTC)
        for hour in (0, 1, 2, 21, 22, 23):
            assert solar_power(meter, midnight + dt.timedelta(hours=hour, minutes=30)) == 0.0
        assert solar_power(meter, midnight + dt.timedelta(hours=12)) > 0.0
    noon_in_june = solar_power(meter, dt.datetime(2026, 6, 21, 12, tzinfo=UTC))
    noon_in_december = solar_power(meter, dt.datetime(2026, 12, 21, 12, tzinfo=UTC))
    assert noon_in_june > noon_in_december


def test_grid_exports_on_a_sunny_summer_noon_and_imports_at_night():
    meter = MaxemMeter("sim-mxm-sun", seed=2, channels=("grid", "solar"))
    noon = [
        orjson.loads(meter.messages_at(SUMMER + dt.timedelta(hours=11, minutes=m))[0].payload)
        for m in range(60)
    ]
    assert min(sum(document["grid"]["power_w"]) for document in noon) < 0
    night = orjson.loads(meter.messages_at(SUMMER + dt.timedelta(hours=1))[0].payload)
    assert sum(night["grid"]["power_w"]) > 0
    assert night["grid"]["current_a"] == [round(watts / 230, 2) for watts in night["grid"]["power_w"]]


def test_ev_charges_in_evening_sessions_at_charger_power():
    meter = MaxemMeter("sim-mxm-ev", seed=1, channels=("grid", "ev"))
    start = dt.datetime(2026, 2, 2, 12, tzinfo=UTC)  # a Monday
    charging_hours = set()
    powers = set()
    for minute in range(0, 14 * 24 * 60, 15):
        (message,) = meter.messages_at(start + dt.timedelta(minutes=minute))
        ev = orjson.loads(message.payload)["ev"]
        assert ev["charging"] == (ev["power_w"] > 0)
        if ev["charging"]:
            charging_hours.add((start + dt.timedelta(minutes=minute, hours=1)).hour)  # local standard time
            powers.add(ev["power_w"])
    assert charging_hours, "no charging session in two weeks"
    assert charging_hours <= {*range(17, 24), *range(12)}
    assert min(powers) >= 7360.0


def test_thermostat_follows_a_night_and_day_schedule():
    gateway = BenextGateway("sim-bnx-heat", seed=3, node_types=["thermostat"])

    def values(moment: dt.datetime) -> dict[str, Any]:
        (message,) = gateway.messages_at(moment)
        node_values: dict[str, Any] = orjson.loads(message.payload)["values"]
        return node_values

    night = values(WINTER + dt.timedelta(hours=2))
    day = values(WINTER + dt.timedelta(hours=12))
    assert 15.0 <= night["setpoint"] <= 16.0
    assert 19.5 <= day["setpoint"] <= 21.0
    assert night["valve"] == 0
    assert abs(day["temperature"] - day["setpoint"]) < 1.5


def test_count_counts_reading_messages_in_round_robin_ticks():
    fleet = build_fleet(benext=2, maxem=2, seed=0)
    per_tick = [len(gateway.tick(0)) for gateway in fleet]
    total = sum(per_tick) * 2 + 3
    messages = list(generate_messages(fleet, start=WINTER, interval_s=10, count=total))
    assert len(messages) == total
    assert all(message.readings for message in messages)
    serial_order = [message.gateway_serial for message in messages[: sum(per_tick)]]
    expected_order = [gateway.serial for gateway, n in zip(fleet, per_tick, strict=True) for _ in range(n)]
    assert serial_order == expected_order
    times = sorted({reading.measured_at for message in messages for reading in message.readings})
    assert times == [WINTER + dt.timedelta(seconds=10 * k) for k in range(3)]


def test_live_mode_uses_the_clock_and_never_repeats_a_millisecond_per_gateway():
    fleet = build_fleet(benext=1, maxem=1, seed=0)
    frozen = 1_780_000_000.0
    messages = list(generate_messages(fleet, count=40, clock=lambda: frozen))
    per_gateway: dict[str, list[dt.datetime]] = defaultdict(list)
    for message in messages:
        moments = {reading.measured_at for reading in message.readings}
        assert len(moments) == 1
        if not per_gateway[message.gateway_serial] or per_gateway[message.gateway_serial][-1] != min(moments):
            per_gateway[message.gateway_serial].append(min(moments))
    for ticks in per_gateway.values():
        assert ticks[0] >= at_ms(int(frozen * 1000))
        assert all(a < b for a, b in itertools.pairwise(ticks))


def test_serials_are_valid_and_deterministic():
    fleet = build_fleet(benext=12, maxem=12, prefix="lab")
    serials = [gateway.serial for gateway in fleet]
    assert serials[0] == "lab-bnx-000"
    assert serials[-1] == "lab-mxm-011"
    assert len(set(serials)) == 24
    for gateway in fleet:
        assert SERIAL.fullmatch(gateway.serial)
        assert not gateway.serial.lower().startswith("thuis-")
        assert gateway.vendor == ("benext" if "-bnx-" in gateway.serial else "maxem")
    assert benext_serial("sim", 7) == "sim-bnx-007"
    assert maxem_serial("sim", 7) == "sim-mxm-007"


@pytest.mark.parametrize("prefix", ["thuis", "THUIS", "bad/prefix", "-x", "x" * 60])
def test_an_unusable_prefix_is_refused(prefix):
    with pytest.raises(FleetError):
        build_fleet(benext=1, maxem=1, prefix=prefix)


def test_status_messages_carry_no_readings():
    benext, maxem = build_fleet(benext=1, maxem=1)
    online = benext.status_message(online=True, epoch_ms=1_780_000_000_123)
    assert online.topic == "benext/sim-bnx-000/status"
    assert online.readings == ()
    assert orjson.loads(online.payload) == {
        "schema": 1,
        "ts": 1_780_000_000_123,
        "state": "online",
        "firmware": benext.firmware,
    }
    assert orjson.loads(benext.status_message(online=False, epoch_ms=None).payload) == {
        "schema": 1,
        "state": "offline",
    }
    online = maxem.status_message(online=True, epoch_ms=1_780_000_000_123)
    assert online.topic == "maxem/sim-mxm-000/status"
    assert online.readings == ()
    assert orjson.loads(online.payload) == {
        "v": 1,
        "t": "2026-05-28T20:26:40.123Z",
        "online": True,
        "fw": maxem.firmware,
    }
    assert orjson.loads(maxem.status_message(online=False, epoch_ms=None).payload) == {
        "v": 1,
        "online": False,
    }
