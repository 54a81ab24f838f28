"""Cumulative meters (kWh, m³) whose reading is a closed-form, never decreasing function of time.

A meter's reading at the start of each day (or week) is known in closed form: a seasonal trend plus a
bounded day-to-day wobble. Within the day the increase is spread over quarter-hour slots in proportion
to a profile (solar follows the sun, heating the cold mornings), so the reading and the mean power
agree, and the reading never goes down, whichever times are asked for and in whatever order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway_sim.profiles import (
    DAY_MS,
    HOUR_MS,
    LOCAL_OFFSET_MS,
    SLOT_MS,
    SLOTS_PER_DAY,
    YEAR_DAYS,
    slot_of,
    unit,
)

REFERENCE_DAY = 19_723  # 2024-01-01: the meters show their initial reading then
REFERENCE_WEEK_START_MS = 4 * DAY_MS + 12 * HOUR_MS  # Monday 1970-01-05 12:00 local: weeks run noon to noon
WEEK_MS = 7 * DAY_MS
WOBBLE = 0.45  # the day-to-day wobble stays below this share of the slowest day's increase
CACHED_PERIODS = 3

SlotShape = Callable[[int, int], float]


@dataclass(frozen=True, slots=True)
class _MeterDay:
    start: float
    total: float
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]
    weight_sum: float


class DailyMeter:
    """A meter whose day total follows the seasons and whose increase within the day follows a profile."""

    def __init__(
        self,
        *,
        key: str,
        initial: float,
        mean_per_day: float,
        seasonal_amplitude: float = 0.0,
        peak_day_of_year: float = 15.0,
        shape: SlotShape,
    ) -> None:
        if mean_per_day < 0 or abs(seasonal_amplitude) > mean_per_day * 0.9:
            raise ValueError("a meter needs mean_per_day >= 0 and |seasonal_amplitude| <= 0.9 * mean_per_day")
        self.key = key
        self.initial = initial
        self.mean_per_day = mean_per_day
        self.seasonal_amplitude = seasonal_amplitude
        # Day number of a peak day near the reference day, so the seasonal phase is a plain cosine.
        self._peak_day = REFERENCE_DAY + peak_day_of_year - 1
        self._shape = shape
        self._days: dict[int, _MeterDay] = {}

    def reading(self, epoch_ms: int) -> float:
        """Return the meter reading at a moment."""
        day, slot, part = slot_of(epoch_ms)
        meter_day = self._day(day)
        if meter_day.weight_sum <= 0.0:
            return meter_day.start
        done = meter_day.cumulative[slot] + meter_day.weights[slot] * part
        value = meter_day.start + meter_day.total * min(1.0, done / meter_day.weight_sum)
        # Never past the next day's start, so float rounding cannot make the reading go down at midnight.
        return min(value, meter_day.start + meter_day.total)

    def rate_per_hour(self, epoch_ms: int) -> float:
        """Return how fast the meter runs in its current slot, in units per hour (kW for a kWh meter)."""
        day, slot, _ = slot_of(epoch_ms)
        meter_day = self._day(day)
        if meter_day.weight_sum <= 0.0:
            return 0.0
        share = meter_day.weights[slot] / meter_day.weight_sum
        return meter_day.total * share * HOUR_MS / SLOT_MS

    def day_start(self, day: int) -> float:
        """Return the reading at the start of a local day, in closed form."""
        days = day - REFERENCE_DAY
        trend = self.mean_per_day * days
        if self.seasonal_amplitude:
            omega = 2 * math.pi / YEAR_DAYS
            phase_now = omega * (day - self._peak_day)
            phase_ref = omega * (REFERENCE_DAY - self._peak_day)
            trend += self.seasonal_amplitude / omega * (math.sin(phase_now) - math.sin(phase_ref))
        slowest = self.mean_per_day - abs(self.seasonal_amplitude)
        wobble = WOBBLE * slowest * unit(self.key, "wobble", day)
        # Before the meter was installed it shows 0; max() keeps the reading non-decreasing there too.
        return max(0.0, self.initial + trend + wobble)

    def _day(self, day: int) -> _MeterDay:
        cached = self._days.get(day)
        if cached is not None:
            return cached
        start = self.day_start(day)
        total = max(0.0, self.day_start(day + 1) - start)
        weights = tuple(max(0.0, self._shape(day, slot)) for slot in range(SLOTS_PER_DAY))
        weight_sum = math.fsum(weights)
        if weight_sum <= 0.0 and total > 0.0:
            # A profile with nothing to do that day still has to deliver the day's total: spread it evenly.
            weights = (1.0,) * SLOTS_PER_DAY
            weight_sum = float(SLOTS_PER_DAY)
        cumulative = [0.0]
        for weight in weights[:-1]:
            cumulative.append(cumulative[-1] + weight)
        meter_day = _MeterDay(start, total, weights, tuple(cumulative), weight_sum)
        if len(self._days) >= CACHED_PERIODS:
            self._days.pop(next(iter(self._days)))
        self._days[day] = meter_day
        return meter_day


@dataclass(frozen=True, slots=True)
class ChargingSession:
    """One car charging session: when it starts and ends (epoch ms), its power and energy."""

    start_ms: int
    end_ms: int
    power_kw: float
    energy_kwh: float


@dataclass(frozen=True, slots=True)
class _ChargingWeek:
    start: float
    end: float
    sessions: tuple[ChargingSession, ...]


class ChargingMeter:
    """An EV charge point's meter: evening sessions at a fixed power, a weekly total that follows a trend."""

    def __init__(
        self,
        *,
        key: str,
        initial: float,
        mean_per_day: float,
        charge_power_kw: float,
        evening_probability: tuple[float, ...],
    ) -> None:
        if len(evening_probability) != 7:
            raise ValueError("evening_probability needs one chance per weekday, Monday first")
        self.key = key
        self.initial = initial
        self.mean_per_day = mean_per_day
        self.charge_power_kw = charge_power_kw
        self.evening_probability = evening_probability
        self._weeks: dict[int, _ChargingWeek] = {}

    def state(self, epoch_ms: int) -> tuple[float, ChargingSession | None]:
        """Return the meter reading and the session charging at a moment, if any."""
        week = self._week(self._week_of(epoch_ms))
        reading = week.start
        for session in week.sessions:
            if epoch_ms >= session.end_ms:
                reading += session.energy_kwh
            elif epoch_ms >= session.start_ms:
                charged = session.power_kw * (epoch_ms - session.start_ms) / HOUR_MS
                reading += min(session.energy_kwh, charged)
                return min(reading, week.end), session
            else:
                break
        return min(reading, week.end), None

    def week_start(self, week: int) -> float:
        """Return the reading at the start of a week (Monday noon, local), in closed form."""
        reference_week = self._week_of(REFERENCE_DAY * DAY_MS)
        trend = 7 * self.mean_per_day * (week - reference_week)
        wobble = WOBBLE * 7 * self.mean_per_day * unit(self.key, "wobble", week)
        return max(0.0, self.initial + trend + wobble)

    @staticmethod
    def _week_of(epoch_ms: int) -> int:
        return (epoch_ms + LOCAL_OFFSET_MS - REFERENCE_WEEK_START_MS) // WEEK_MS

    def _week(self, week: int) -> _ChargingWeek:
        cached = self._weeks.get(week)
        if cached is not None:
            return cached
        start = self.week_start(week)
        end = max(start, self.week_start(week + 1))
        charged = self._week_sessions(week, end - start)
        if len(self._weeks) >= CACHED_PERIODS:
            self._weeks.pop(next(iter(self._weeks)))
        self._weeks[week] = _ChargingWeek(start, end, charged)
        return self._weeks[week]

    def _week_sessions(self, week: int, total_kwh: float) -> tuple[ChargingSession, ...]:
        evenings = [
            day for day in range(7) if unit(self.key, "charges", week, day) < self.evening_probability[day]
        ]
        if not evenings:
            evenings = [int(unit(self.key, "only evening", week) * 7)]
        shares = [0.4 + unit(self.key, "share", week, day) for day in evenings]
        week_start_ms = REFERENCE_WEEK_START_MS + week * WEEK_MS - LOCAL_OFFSET_MS
        sessions = []
        for index, (day, share) in enumerate(zip(evenings, shares, strict=True)):
            energy = total_kwh * share / sum(shares)
            # Plug in between 17:00 and 21:00 (5 to 9 hours after the week's noon start), on the quarter hour.
            start_ms = week_start_ms + day * DAY_MS + 5 * HOUR_MS
            start_ms += int(unit(self.key, "plug in", week, day) * 17) * SLOT_MS
            next_ms = (
                week_start_ms + evenings[index + 1] * DAY_MS + 5 * HOUR_MS
                if index + 1 < len(evenings)
                else week_start_ms + WEEK_MS
            )
            # A big session charges faster rather than running into the next one.
            power = max(self.charge_power_kw, energy * HOUR_MS / max(1, next_ms - start_ms))
            end_ms = start_ms + math.ceil(energy / power * HOUR_MS)
            sessions.append(ChargingSession(start_ms, min(end_ms, next_ms), power, energy))
        return tuple(sessions)
