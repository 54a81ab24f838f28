"""The metric catalogue: every kind of device Thuis stores readings of, what each measures, and where it goes.

This is the one place that knows the metrics. The decoders (ingest/decode/) map the fields of each vendor's
payload to these metrics and check values against their bounds; the rollups read the energy metrics; the
portal picks the table of a device's readings and the grid meter of a home; research exports offer the
energy measures. A test holds the decoders to the catalogue, field by field, in both directions.

The simulated gateways (gateway_sim/) keep a copy of their own on purpose: the rows the tests expect are
derived from it independently of the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ReadingTable = Literal["energy_readings", "smart_home_readings"]
ENERGY: ReadingTable = "energy_readings"
SMART_HOME: ReadingTable = "smart_home_readings"
MetricKind = Literal["meter", "gauge", "flag"]

METER_MAX = 1e9  # a cumulative meter in kWh or m³; far beyond any household's lifetime
POWER_MAX = 100_000.0  # W: a large home connection (3 x 80 A)
CURRENT_MAX = 100.0  # A per phase
PHASES = (1, 2, 3)
# Where a home's grid import and export come from, in order of preference: a Maxem meter's grid channel
# (measured at the connection) when the home has one, else the P1 dongle of a BeNext gateway. A home with
# both counts the first only, so nothing is counted twice.
GRID_METER_KINDS = ("grid", "p1meter")
GRID_IMPORT = "import_energy_kwh"
GRID_EXPORT = "export_energy_kwh"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of one kind of device, as stored: its table, unit, kind and plausible bounds."""

    device_kind: str
    name: str
    table: ReadingTable
    unit: str  # "" for a flag (0 or 1)
    kind: MetricKind  # meter: cumulative (consumption is the advance); gauge: instantaneous; flag: 0/1
    lower: float = 0.0
    upper: float = 1.0

    @property
    def measure(self) -> str:
        """Return the name a researcher asks for it by: `<device kind>.<metric>`."""
        return f"{self.device_kind}.{self.name}"

    @property
    def is_meter(self) -> bool:
        """Say whether it is a cumulative meter reading, whose consumption per bucket is its advance."""
        return self.kind == "meter"


def _meter(kind: str, name: str, table: ReadingTable, unit: str = "kWh") -> Metric:
    return Metric(kind, name, table, unit, "meter", 0.0, METER_MAX)


def _gauge(kind: str, name: str, table: ReadingTable, unit: str, *bounds: float) -> Metric:
    lower, upper = bounds
    return Metric(kind, name, table, unit, "gauge", lower, upper)


def _flag(kind: str, name: str, table: ReadingTable = SMART_HOME) -> Metric:
    return Metric(kind, name, table, "", "flag")


def _climate(kind: str) -> list[Metric]:
    return [
        _gauge(kind, "temperature_c", SMART_HOME, "°C", -50, 100),
        _gauge(kind, "battery_pct", SMART_HOME, "%", 0, 100),
    ]


def _maxem_device(kind: str) -> list[Metric]:
    return [_gauge(kind, "power_w", ENERGY, "W", 0, POWER_MAX), _meter(kind, "energy_kwh", ENERGY)]


CATALOGUE: tuple[Metric, ...] = (
    # BeNext gateways: Z-Wave nodes, by node type.
    *_climate("multisensor"),
    _gauge("multisensor", "humidity_pct", SMART_HOME, "%", 0, 100),
    _gauge("multisensor", "luminance_lux", SMART_HOME, "lx", 0, 100_000),
    _flag("multisensor", "motion"),
    _flag("door", "door_open"),
    _gauge("door", "battery_pct", SMART_HOME, "%", 0, 100),
    _flag("switch", "switch_on"),
    # A smart plug measures one appliance: smart-home data, not the home's energy monitoring.
    _gauge("switch", "power_w", SMART_HOME, "W", -50_000, 50_000),
    _meter("switch", "energy_kwh", SMART_HOME),
    *_climate("thermostat"),
    _gauge("thermostat", "setpoint_c", SMART_HOME, "°C", 0, 40),
    _gauge("thermostat", "valve_pct", SMART_HOME, "%", 0, 100),
    _meter("p1meter", GRID_IMPORT, ENERGY),
    _meter("p1meter", GRID_EXPORT, ENERGY),
    _gauge("p1meter", "import_power_w", ENERGY, "W", 0, POWER_MAX),
    _gauge("p1meter", "export_power_w", ENERGY, "W", 0, POWER_MAX),
    _meter("p1meter", "gas_m3", ENERGY, "m³"),
    # Maxem meters: channels of the home's connection and its large appliances.
    _meter("grid", GRID_IMPORT, ENERGY),
    _meter("grid", GRID_EXPORT, ENERGY),
    *(_gauge("grid", f"power_l{phase}_w", ENERGY, "W", -POWER_MAX, POWER_MAX) for phase in PHASES),
    *(_gauge("grid", f"current_l{phase}_a", ENERGY, "A", -CURRENT_MAX, CURRENT_MAX) for phase in PHASES),
    *_maxem_device("ev"),
    _flag("ev", "charging", ENERGY),
    *_maxem_device("heat_pump"),
    *_maxem_device("solar"),
)
_BY_KEY = {(m.device_kind, m.name): m for m in CATALOGUE}


def metric(device_kind: str, name: str) -> Metric:
    """Return a metric of the catalogue; KeyError if the device kind does not measure it."""
    return _BY_KEY[(device_kind, name)]


def metrics_of(device_kind: str) -> tuple[Metric, ...]:
    """Return what a kind of device measures."""
    return tuple(m for m in CATALOGUE if m.device_kind == device_kind)


def device_kinds() -> tuple[str, ...]:
    """Return every kind of device, in catalogue order."""
    return tuple(dict.fromkeys(m.device_kind for m in CATALOGUE))


def energy_device_kinds() -> frozenset[str]:
    """Return the kinds of device whose readings are energy monitoring (energy_readings, kept 10 years)."""
    kinds = set(device_kinds())
    return frozenset(k for k in kinds if all(m.table == ENERGY for m in metrics_of(k)))


def table_of(device_kind: str) -> ReadingTable:
    """Return the table a kind of device's readings are stored in."""
    return ENERGY if device_kind in energy_device_kinds() else SMART_HOME


def energy_metrics() -> tuple[str, ...]:
    """Return the names of every metric stored in energy_readings, sorted.

    The rollup queries name the metrics they read, so that each (device, metric, hour) is one exact index
    range of `energy_readings (device_id, metric, measured_at)` rather than a scan of all the device's
    readings in a chunk.
    """
    return tuple(sorted({m.name for m in CATALOGUE if m.table == ENERGY}))


def energy_measures() -> dict[str, Metric]:
    """Return every energy measure by the name a researcher asks for it (`<device kind>.<metric>`), sorted."""
    return {m.measure: m for m in sorted(CATALOGUE, key=lambda m: m.measure) if m.table == ENERGY}


def is_meter(name: str) -> bool:
    """Say whether a metric (by name) is a cumulative meter reading (kWh, m³) rather than a gauge or flag."""
    return any(m.name == name and m.is_meter for m in CATALOGUE)
