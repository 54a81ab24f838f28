"""A simulated Maxem meter: the grid connection per phase, and maybe an EV, a heat pump and solar panels."""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Literal

from gateway_sim.gateways import SimGateway, round_meter, round_power_w
from gateway_sim.messages import (
    ENERGY,
    ExpectedReading,
    SimMessage,
    datetime_from_ms,
    encode_payload,
    rfc3339_ms,
)
from gateway_sim.meters import ChargingMeter, DailyMeter
from gateway_sim.profiles import (
    MAINS_VOLTAGE,
    SLOT_MS,
    Weather,
    gateway_rng,
    local_hour,
    random_heating,
    random_household,
    slot_start_ms,
    solar_kw,
    unit,
)
from thuis.identity import Vendor

Channel = Literal["grid", "ev", "heat_pump", "solar"]
CHANNELS: tuple[Channel, ...] = ("grid", "ev", "heat_pump", "solar")
VERSION = 1
EV_SINGLE_PHASE_KW = 7.36  # 32 A at 230 V
EV_THREE_PHASE_KW = 11.04  # 3 x 16 A at 230 V
SINGLE_PHASE_SOLAR_MAX_KW = 3.68  # larger inverters feed all three phases

# channel -> payload field -> stored metric, as in docs/payloads.md (phase arrays are numbered l1..l3)
METRICS: dict[str, dict[str, str]] = {
    "grid": {
        "import_kwh": "import_energy_kwh",
        "export_kwh": "export_energy_kwh",
        "power_w": "power_l{}_w",
        "current_a": "current_l{}_a",
    },
    "ev": {"power_w": "power_w", "energy_kwh": "energy_kwh", "charging": "charging"},
    "heat_pump": {"power_w": "power_w", "energy_kwh": "energy_kwh"},
    "solar": {"power_w": "power_w", "energy_kwh": "energy_kwh"},
}

Field = bool | float | list[float]


def _phase_split(kilowatts: float, phase: int | None, phases: int) -> list[float]:
    """Split a load over the phases: all on one phase, or evenly over all of them."""
    if phases == 1:
        return [kilowatts]
    if phase is None:
        return [kilowatts / 3.0] * 3
    return [kilowatts if index == phase else 0.0 for index in range(3)]


class MaxemMeter(SimGateway):
    """A Maxem meter publishing one measurement with all its channels each tick."""

    vendor: Vendor = "maxem"

    def __init__(
        self,
        serial: str,
        *,
        seed: int = 0,
        channels: Collection[Channel] | None = None,
        phases: Literal[1, 3] = 3,
    ) -> None:
        rng = gateway_rng(seed, serial)
        self.serial = serial
        self.seed = seed
        self.phases = phases
        self.firmware = rng.choice(("3.8.0", "3.8.0", "3.9.2"))
        self.key = key = f"{seed}:{serial}"
        self.weather = Weather(seed)
        self.household = random_household(key, rng)
        self.heating = random_heating(rng)
        drawn = {
            "grid": True,
            "ev": rng.random() < 0.5,
            "heat_pump": rng.random() < 0.5,
            "solar": rng.random() < 0.6,
        }
        wanted = {name for name, present in drawn.items() if present} if channels is None else set(channels)
        self.channels: tuple[Channel, ...] = tuple(name for name in CHANNELS if name in wanted)
        self.load_shares = self._load_shares(rng)
        self.ev = self._ev_meter(rng) if "ev" in self.channels else None
        self.ev_phase = rng.randrange(3)
        self.heat_pump = self._heat_pump_meter(rng) if "heat_pump" in self.channels else None
        self.heat_pump_phase = rng.randrange(3)
        self.solar_peak_kw = round(rng.uniform(2.5, 6.0), 2) if "solar" in self.channels else 0.0
        self.solar = self._solar_meter(rng) if self.solar_peak_kw else None
        self.solar_phase = rng.randrange(3) if self.solar_peak_kw <= SINGLE_PHASE_SOLAR_MAX_KW else None
        self.grid_import, self.grid_export = self._grid_meters(rng)

    def tick(self, epoch_ms: int) -> tuple[SimMessage, ...]:
        """Return the one measurement of this moment."""
        document: dict[str, object] = {"v": VERSION, "t": rfc3339_ms(epoch_ms)}
        channel_fields = self._channel_fields(epoch_ms)
        document.update(channel_fields)
        measured_at = datetime_from_ms(epoch_ms)
        readings: list[ExpectedReading] = []
        for channel, fields in channel_fields.items():
            for name, value in fields.items():
                metric = METRICS[channel][name]
                if isinstance(value, list):
                    readings += [
                        ExpectedReading(
                            ENERGY, channel, channel, metric.format(phase), measured_at, float(item)
                        )
                        for phase, item in enumerate(value, start=1)
                    ]
                else:
                    readings.append(
                        ExpectedReading(ENERGY, channel, channel, metric, measured_at, float(value))
                    )
        message = SimMessage(f"maxem/{self.serial}/measurement", encode_payload(document), tuple(readings))
        return (message,)

    def status_message(self, *, online: bool, epoch_ms: int | None) -> SimMessage:
        """Return an online status with the firmware, or offline; the time is left out for a will."""
        payload: dict[str, object] = {"v": VERSION}
        if epoch_ms is not None:
            payload["t"] = rfc3339_ms(epoch_ms)
        payload["online"] = online
        if online:
            payload["fw"] = self.firmware
        return SimMessage(self.status_topic, encode_payload(payload), ())

    def _channel_fields(self, epoch_ms: int) -> dict[str, dict[str, Field]]:
        phase_kw = [share * self.household.kw(epoch_ms) for share in self.load_shares]
        channels: dict[str, dict[str, Field]] = {}
        extra: dict[str, dict[str, Field]] = {}
        if self.ev is not None:
            reading, session = self.ev.state(epoch_ms)
            power_kw = session.power_kw if session is not None else 0.0
            extra["ev"] = {
                "power_w": round_power_w(power_kw),
                "energy_kwh": round_meter(reading),
                "charging": session is not None,
            }
            phase_kw = self._add(
                phase_kw, power_kw, self.ev_phase if power_kw <= EV_SINGLE_PHASE_KW else None
            )
        if self.heat_pump is not None:
            power_kw = self.heat_pump.rate_per_hour(epoch_ms) * self._flicker("heat pump", epoch_ms)
            extra["heat_pump"] = {
                "power_w": round_power_w(power_kw),
                "energy_kwh": round_meter(self.heat_pump.reading(epoch_ms)),
            }
            phase_kw = self._add(phase_kw, power_kw, self.heat_pump_phase)
        if self.solar is not None:
            power_kw = self.solar.rate_per_hour(epoch_ms) * self._flicker("solar", epoch_ms)
            extra["solar"] = {
                "power_w": round_power_w(power_kw),
                "energy_kwh": round_meter(self.solar.reading(epoch_ms)),
            }
            phase_kw = self._add(phase_kw, -power_kw, self.solar_phase)
        power_w = [round_power_w(kw) for kw in phase_kw]
        channels["grid"] = {
            "import_kwh": round_meter(self.grid_import.reading(epoch_ms)),
            "export_kwh": round_meter(self.grid_export.reading(epoch_ms)),
            "power_w": power_w,
            "current_a": [round(watts / MAINS_VOLTAGE, 2) + 0.0 for watts in power_w],
        }
        channels.update(extra)
        return {name: channels[name] for name in self.channels}

    def _add(self, phase_kw: list[float], kilowatts: float, phase: int | None) -> list[float]:
        split = _phase_split(kilowatts, phase, self.phases)
        return [current + added for current, added in zip(phase_kw, split, strict=True)]

    def _flicker(self, name: str, epoch_ms: int) -> float:
        return 0.96 + 0.08 * unit(self.key, name, epoch_ms)

    def _load_shares(self, rng: random.Random) -> list[float]:
        if self.phases == 1:
            return [1.0]
        shares = [0.45, 0.3, 0.25]
        rng.shuffle(shares)
        return shares

    def _ev_meter(self, rng: random.Random) -> ChargingMeter:
        power = EV_SINGLE_PHASE_KW if rng.random() < 0.7 or self.phases == 1 else EV_THREE_PHASE_KW
        return ChargingMeter(
            key=f"{self.key}:ev",
            initial=round(rng.uniform(500.0, 9_000.0), 3),
            mean_per_day=rng.uniform(4.0, 9.0),
            charge_power_kw=power,
            evening_probability=tuple(rng.uniform(0.2, 0.7) for _ in range(7)),
        )

    def _heat_pump_meter(self, rng: random.Random) -> DailyMeter:
        mean = rng.uniform(6.0, 12.0)
        return DailyMeter(
            key=f"{self.key}:heat pump",
            initial=round(rng.uniform(1_000.0, 12_000.0), 3),
            mean_per_day=mean,
            seasonal_amplitude=0.8 * mean,
            peak_day_of_year=15,
            shape=self._heat_pump_shape,
        )

    def _heat_pump_shape(self, day: int, slot: int) -> float:
        # More in the cold hours and the mornings' warm-up, plus hot water; the compressor cycles.
        middle = slot_start_ms(day, slot) + SLOT_MS // 2
        hour = local_hour(middle)
        hot_water = 0.3 if 6.0 <= hour < 7.0 or 19.0 <= hour < 20.0 else 0.0
        cycling = 0.6 + 0.8 * unit(self.key, "compressor", day, slot)
        return (self.heating.demand(self.weather, middle) + hot_water) * cycling + 0.01

    def _solar_meter(self, rng: random.Random) -> DailyMeter:
        return DailyMeter(
            key=f"{self.key}:solar",
            initial=round(rng.uniform(500.0, 20_000.0), 3),
            mean_per_day=2.6 * self.solar_peak_kw,
            seasonal_amplitude=2.1 * self.solar_peak_kw,
            peak_day_of_year=172,
            shape=lambda day, slot: solar_kw(
                self.weather, self.solar_peak_kw, slot_start_ms(day, slot) + SLOT_MS // 2
            ),
        )

    def _slot_net_kw(self, day: int, slot: int) -> float:
        middle = slot_start_ms(day, slot) + SLOT_MS // 2
        net = self.household.slot_kw(day, slot)
        if self.heat_pump is not None:
            net += self.heat_pump.rate_per_hour(middle)
        if self.ev is not None:
            _, session = self.ev.state(middle)
            net += session.power_kw if session is not None else 0.0
        if self.solar is not None:
            net -= self.solar.rate_per_hour(middle)
        return net

    def _grid_meters(self, rng: random.Random) -> tuple[DailyMeter, DailyMeter]:
        load_mean = 24.0 * (self.household.standby_kw + 0.45 * self.household.active_kw) + 1.8
        extra_mean = 0.0
        import_swing = 0.0
        if self.heat_pump is not None:
            extra_mean += self.heat_pump.mean_per_day
            import_swing += self.heat_pump.seasonal_amplitude
        if self.ev is not None:
            extra_mean += self.ev.mean_per_day
        solar_mean = self.solar.mean_per_day if self.solar is not None else 0.0
        solar_swing = self.solar.seasonal_amplitude if self.solar is not None else 0.0
        import_swing += 0.3 * solar_swing  # less sun in winter: more import
        grid_import = DailyMeter(
            key=f"{self.key}:import",
            initial=round(rng.uniform(8_000.0, 40_000.0), 3),
            mean_per_day=max(load_mean + extra_mean - 0.3 * solar_mean, import_swing / 0.85),
            seasonal_amplitude=import_swing,
            peak_day_of_year=15,
            shape=lambda day, slot: max(0.0, self._slot_net_kw(day, slot)) + 0.01,
        )
        grid_export = DailyMeter(
            key=f"{self.key}:export",
            initial=round(rng.uniform(500.0, 8_000.0), 3) if self.solar is not None else 0.0,
            mean_per_day=0.6 * solar_mean,
            seasonal_amplitude=0.6 * solar_swing,
            peak_day_of_year=172,
            shape=self._export_shape,
        )
        return grid_import, grid_export

    def _export_shape(self, day: int, slot: int) -> float:
        if self.solar is None:
            return 0.0
        middle = slot_start_ms(day, slot) + SLOT_MS // 2
        return max(0.0, -self._slot_net_kw(day, slot)) + 0.02 * self.solar.rate_per_hour(middle)
