"""Deterministic daily profiles of a Dutch home: weather, daylight, occupancy, heating and household load.

Every value is a pure function of a stable key (seed and gateway serial) and the time, so the same
arguments give the same numbers in any process and in any order. Profiles follow Central European
standard time (UTC+1) all year; daylight saving time is ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from dataclasses import dataclass

LOCAL_OFFSET_MS = 3_600_000  # profiles run on UTC+1, the Netherlands' standard time
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SLOT_MS = 15 * 60_000  # meters and loads change level every quarter of an hour
SLOTS_PER_DAY = DAY_MS // SLOT_MS
YEAR_DAYS = 365.25
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
SOLAR_NOON_H = 12.67  # 5° east: the sun is highest at about 12:40 standard time
MAINS_VOLTAGE = 230.0


def stable_seed(*parts: object) -> int:
    """Hash the parts to a 64-bit integer that is the same in every process (unlike `hash()`)."""
    text = ":".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def unit(*parts: object) -> float:
    """Return a stable pseudo-random number in [0, 1) for the parts."""
    return stable_seed(*parts) / 2.0**64


def gateway_rng(seed: int, gateway_serial: str) -> random.Random:
    """Return the random generator that decides a gateway's fixed traits."""
    return random.Random(stable_seed(seed, gateway_serial))  # noqa: S311 - a simulation, not cryptography


def local_day(epoch_ms: int) -> int:
    """Return the local day number (days since 1970-01-01 in UTC+1)."""
    return (epoch_ms + LOCAL_OFFSET_MS) // DAY_MS


def local_hour(epoch_ms: int) -> float:
    """Return the local time of day in hours, 0 <= h < 24."""
    return ((epoch_ms + LOCAL_OFFSET_MS) % DAY_MS) / HOUR_MS


def slot_of(epoch_ms: int) -> tuple[int, int, float]:
    """Return the local day, the quarter-hour slot of that day and how far into the slot (0..1) a time is."""
    local_ms = epoch_ms + LOCAL_OFFSET_MS
    day, in_day = divmod(local_ms, DAY_MS)
    slot, in_slot = divmod(in_day, SLOT_MS)
    return day, slot, in_slot / SLOT_MS


def slot_start_ms(day: int, slot: int) -> int:
    """Return the epoch milliseconds at which a local quarter-hour slot starts."""
    return day * DAY_MS + slot * SLOT_MS - LOCAL_OFFSET_MS


def day_of_year(day: int) -> int:
    """Return the day of the year (1..366) of a local day number."""
    return dt.date.fromordinal(EPOCH_ORDINAL + day).timetuple().tm_yday


def is_weekend(day: int) -> bool:
    """Say whether a local day number is a Saturday or Sunday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7 >= 5


def seasonal(doy: float, peak_doy: float) -> float:
    """Return a yearly cosine, 1 on the peak day and -1 half a year later."""
    return math.cos(2 * math.pi * (doy - peak_doy) / YEAR_DAYS)


def daylight(epoch_ms: int) -> float:
    """Return the sun's strength (0 at night, 1 at a midsummer noon) at 52° north."""
    doy = day_of_year(local_day(epoch_ms))
    day_length = 12.0 + 4.5 * seasonal(doy, 172)  # 7.5 h at midwinter, 16.5 h at midsummer
    sunrise = SOLAR_NOON_H - day_length / 2
    since_sunrise = local_hour(epoch_ms) - sunrise
    if not 0.0 < since_sunrise < day_length:
        return 0.0
    height = 0.6 + 0.4 * seasonal(doy, 172)  # the winter sun stays low
    return height * math.sin(math.pi * since_sunrise / day_length)


def clamp(value: float, lower: float, upper: float) -> float:
    """Keep a value within bounds."""
    return min(upper, max(lower, value))


@dataclass(frozen=True)
class Weather:
    """The region's weather: one per seed, shared by every simulated home."""

    seed: int

    def outdoor_c(self, epoch_ms: int) -> float:
        """Return the outdoor temperature: season, day/night swing and a drifting weather anomaly."""
        day = local_day(epoch_ms)
        doy = day_of_year(day)
        summer = (1 - seasonal(doy, 15)) / 2
        hour = local_hour(epoch_ms)
        swing = (2.0 + 3.0 * summer) * math.cos(2 * math.pi * (hour - 15.0) / 24)
        return 10.5 - 7.5 * seasonal(doy, 15) + swing + self._anomaly(day, hour / 24)

    def clear_sky(self, epoch_ms: int) -> float:
        """Return how clear the sky is, 0.1 (overcast) to 1 (clear), varying by day and hour."""
        day = local_day(epoch_ms)
        hour = local_hour(epoch_ms)
        whole, part = divmod(hour, 1.0)
        day_clear = unit(self.seed, "sky", day)
        before = day_clear + 0.5 * (unit(self.seed, "sky", day, int(whole)) - 0.5)
        after = day_clear + 0.5 * (unit(self.seed, "sky", day, int(whole) + 1) - 0.5)
        return clamp(before + (after - before) * part, 0.1, 1.0)

    def _anomaly(self, day: int, fraction: float) -> float:
        today = 8.0 * (unit(self.seed, "temperature", day) - 0.5)
        tomorrow = 8.0 * (unit(self.seed, "temperature", day + 1) - 0.5)
        return today + (tomorrow - today) * fraction


WORKING_HOURS_END = 17.0
# (until hour, weekday activity, weekend activity): sleep, waking, breakfast, work/school, evening, bedtime
ACTIVITY = (
    (6.0, 0.02, 0.02),
    (7.0, 0.45, 0.15),
    (9.0, 0.85, 0.6),
    (WORKING_HOURS_END, 0.15, 0.5),
    (22.0, 0.85, 0.85),
    (23.0, 0.4, 0.4),
    (24.0, 0.1, 0.1),
)


@dataclass(frozen=True)
class Occupancy:
    """When people are at home and active: busy mornings and evenings, quiet nights and working hours."""

    key: str
    works_away: bool

    def activity(self, epoch_ms: int) -> float:
        """Return how active the household is, 0..1."""
        hour = local_hour(epoch_ms)
        weekend = is_weekend(local_day(epoch_ms))
        for until, weekday_level, weekend_level in ACTIVITY:
            if hour < until:
                if until == WORKING_HOURS_END and not self.works_away:
                    return weekend_level
                return weekend_level if weekend else weekday_level
        return ACTIVITY[-1][1]


@dataclass(frozen=True)
class Heating:
    """A thermostat schedule and the room temperature it produces, in closed form."""

    comfort_c: float
    setback_c: float
    on_hour: float
    off_hour: float
    weekend_on_hour: float

    def setpoint(self, epoch_ms: int) -> float:
        """Return the scheduled setpoint: comfort by day, setback at night."""
        return self.comfort_c if self._comfort_hours(epoch_ms) is not None else self.setback_c

    def free_c(self, weather: Weather, epoch_ms: int) -> float:
        """Return the temperature the house drifts to unheated: outdoor plus sun through the windows."""
        sun = daylight(epoch_ms) * weather.clear_sky(epoch_ms)
        return 0.3 * weather.outdoor_c(epoch_ms) + 12.5 + 3.0 * sun

    def room_c(self, weather: Weather, epoch_ms: int) -> float:
        """Return the room temperature: warming towards comfort after switch-on, cooling slowly at night."""
        free = self.free_c(weather, epoch_ms)
        comfort = max(self.comfort_c, free)
        floor = max(self.setback_c, free)
        hour = local_hour(epoch_ms)
        on_hour = self._on_hour(local_day(epoch_ms))
        since_on = self._comfort_hours(epoch_ms)
        if since_on is not None:
            night = on_hour + 24.0 - self.off_hour
            morning = floor + (comfort - floor) * math.exp(-night / 5.0)
            return comfort + (morning - comfort) * math.exp(-since_on / 0.75)
        since_off = hour - self.off_hour if hour >= self.off_hour else hour + 24.0 - self.off_hour
        return floor + (comfort - floor) * math.exp(-since_off / 5.0)

    def valve_pct(self, weather: Weather, epoch_ms: int) -> float:
        """Return the radiator valve opening: wide open while warming up, a steady share in the cold."""
        setpoint = self.setpoint(epoch_ms)
        gap = setpoint - self.room_c(weather, epoch_ms)
        loss = max(0.0, setpoint - self.free_c(weather, epoch_ms))
        return clamp(50.0 * gap + 5.0 * loss, 0.0, 100.0)

    def demand(self, weather: Weather, epoch_ms: int) -> float:
        """Return the heat demand, in proportion to what a boiler or heat pump must deliver."""
        return self.valve_pct(weather, epoch_ms) / 100.0

    def _on_hour(self, day: int) -> float:
        return self.weekend_on_hour if is_weekend(day) else self.on_hour

    def _comfort_hours(self, epoch_ms: int) -> float | None:
        hour = local_hour(epoch_ms)
        on_hour = self._on_hour(local_day(epoch_ms))
        return hour - on_hour if on_hour <= hour < self.off_hour else None


def random_heating(rng: random.Random) -> Heating:
    """Choose a household's thermostat schedule, e.g. 15.5 °C at night and 20.5 °C by day."""
    return Heating(
        comfort_c=rng.choice((19.5, 20.0, 20.5, 20.5, 21.0)),
        setback_c=rng.choice((15.0, 15.5, 15.5, 16.0)),
        on_hour=rng.choice((6.0, 6.5, 7.0)),
        off_hour=rng.choice((22.0, 22.5, 23.0)),
        weekend_on_hour=rng.choice((7.5, 8.0, 8.5)),
    )


@dataclass(frozen=True)
class HouseholdLoad:
    """The electricity a home uses besides its heat pump and car: standby, activity and cooking."""

    key: str
    occupancy: Occupancy
    standby_kw: float
    active_kw: float

    def slot_kw(self, day: int, slot: int) -> float:
        """Return the mean load of a quarter-hour slot in kW."""
        start = slot_start_ms(day, slot)
        hour = local_hour(start)
        cooking = 1.2 if 17.5 <= hour < 19.0 else 0.0
        level = self.standby_kw + self.active_kw * self.occupancy.activity(start) + cooking
        return level * (0.7 + 0.6 * unit(self.key, "load", day, slot))

    def kw(self, epoch_ms: int) -> float:
        """Return the load at a moment: its slot's level with some flicker."""
        day, slot, _ = slot_of(epoch_ms)
        return self.slot_kw(day, slot) * (0.92 + 0.16 * unit(self.key, "flicker", epoch_ms))


def random_household(key: str, rng: random.Random) -> HouseholdLoad:
    """Choose a household's standby and activity load."""
    occupancy = Occupancy(key=key, works_away=rng.random() < 0.7)
    return HouseholdLoad(
        key=key,
        occupancy=occupancy,
        standby_kw=round(rng.uniform(0.12, 0.3), 3),
        active_kw=round(rng.uniform(0.3, 0.8), 3),
    )


def solar_kw(weather: Weather, peak_kw: float, epoch_ms: int) -> float:
    """Return a solar installation's output: a bell over the daylight hours, dimmed by clouds, 0 at night."""
    sun = daylight(epoch_ms)
    if sun <= 0.0:
        return 0.0
    return peak_kw * 0.85 * sun * weather.clear_sky(epoch_ms)
