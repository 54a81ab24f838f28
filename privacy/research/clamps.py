"""How much one household may add to one statistic of a release: the clamps, with their reasons.

Differential privacy bounds each household's influence, so every household value is clamped before it is
summed: a meter's consumption in a bucket to [0, C] and a gauge's mean in a bucket to [lower, upper]. A
household's most in a sum is then C (or the larger of |lower| and |upper|) per bucket, and the noise is
scaled to it. A clamp too wide buys noise for everyone; too narrow and the sums of the largest households
come out too low. Each is set a little above what a Dutch household with that equipment reaches, and the
release says so: a sum is of clamped values.

Meters get a bound per hour and a bound per day; a bucket of L hours is clamped to the smaller of L times
the hourly bound and the days it covers times the daily bound (a week 7 days, a month 31).
"""

from __future__ import annotations

from dataclasses import dataclass

from thuis.metrics import Metric, energy_measures

HOURS = {"15min": 0.25, "hour": 1.0, "day": 24.0, "week": 168.0, "month": 744.0}


@dataclass(frozen=True, slots=True)
class MeterBound:
    """A meter's most per hour and per day, and why."""

    per_hour: float
    per_day: float
    reason: str


@dataclass(frozen=True, slots=True)
class GaugeBound:
    """A gauge's range of a bucket's mean, and why."""

    lower: float
    upper: float
    reason: str


Bound = MeterBound | GaugeBound

GRID_IMPORT = MeterBound(
    4.0,
    30.0,
    "a Dutch home uses about 8 kWh a day (2,900 kWh a year); 30 kWh covers a heat pump on a cold day, 4 kWh "
    "in an hour is 4 kW all hour; an electric car charging at home exceeds both and is clamped",
)
GRID_EXPORT = MeterBound(
    5.0, 35.0, "a roof of 6 to 8 kWp exports at most about 5 kWh in an hour and 35 kWh on a clear June day"
)
BOUNDS: dict[str, Bound] = {
    "grid.import_energy_kwh": GRID_IMPORT,
    "p1meter.import_energy_kwh": GRID_IMPORT,
    "grid.export_energy_kwh": GRID_EXPORT,
    "p1meter.export_energy_kwh": GRID_EXPORT,
    "p1meter.gas_m3": MeterBound(
        2.0,
        15.0,
        "a poorly insulated house burns 10 to 15 m³ of gas on the coldest day, 2 m³ in its worst hour",
    ),
    "solar.energy_kwh": MeterBound(6.0, 40.0, "6 kWh an hour and 40 kWh a day: a large roof at its best"),
    "ev.energy_kwh": MeterBound(11.0, 50.0, "an 11 kW charger for an hour; 50 kWh fills most car batteries"),
    "heat_pump.energy_kwh": MeterBound(4.0, 40.0, "a heat pump of a home draws at most about 4 kW"),
    "p1meter.import_power_w": GaugeBound(0.0, 4_000.0, "as the grid import: 4 kW mean in a bucket"),
    "p1meter.export_power_w": GaugeBound(0.0, 5_000.0, "as the grid export: 5 kW mean in a bucket"),
    "solar.power_w": GaugeBound(0.0, 6_000.0, "as solar production: 6 kW"),
    "ev.power_w": GaugeBound(0.0, 11_000.0, "an 11 kW charger"),
    "heat_pump.power_w": GaugeBound(0.0, 4_000.0, "as the heat pump's energy: 4 kW"),
    "ev.charging": GaugeBound(0.0, 1.0, "the share of the bucket the car was charging"),
    **{
        f"grid.power_l{phase}_w": GaugeBound(-5_000.0, 5_000.0, "a 25 A phase at 230 V, either way")
        for phase in (1, 2, 3)
    },
    **{
        f"grid.current_l{phase}_a": GaugeBound(-25.0, 25.0, "a 25 A fuse per phase, either way")
        for phase in (1, 2, 3)
    },
}


@dataclass(frozen=True, slots=True)
class Clamp:
    """What a household's value of one measure is clamped to in a bucket of one resolution."""

    measure: Metric
    lower: float
    upper: float
    reason: str

    @property
    def contribution(self) -> float:
        """Return a household's most in one bucket's sum: the larger of |lower| and |upper|."""
        return max(abs(self.lower), abs(self.upper))


def clamp(measure: Metric, resolution: str) -> Clamp:
    """Return the clamp of a measure at a resolution."""
    bound = BOUNDS[measure.measure]
    if isinstance(bound, GaugeBound):
        return Clamp(measure, bound.lower, bound.upper, bound.reason)
    hours = HOURS[resolution]
    upper = min(bound.per_hour * hours, bound.per_day * max(1.0, hours / 24.0))
    return Clamp(measure, 0.0, upper, bound.reason)


def unbounded_measures() -> list[str]:
    """Return the energy measures without a clamp (a test keeps this empty)."""
    return [name for name in energy_measures() if name not in BOUNDS]
