"""A simulated BeNext gateway: Z-Wave multisensors, door sensors, smart plugs, a thermostat, a P1 dongle."""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gateway_sim.gateways import SimGateway, round_meter, round_power_w
from gateway_sim.messages import (
    ENERGY,
    SMART_HOME,
    ExpectedReading,
    ReadingTable,
    SimMessage,
    datetime_from_ms,
    encode_payload,
)
from gateway_sim.meters import DailyMeter
from gateway_sim.profiles import (
    DAY_MS,
    SLOT_MS,
    Heating,
    HouseholdLoad,
    Weather,
    clamp,
    day_of_year,
    daylight,
    gateway_rng,
    is_weekend,
    local_day,
    local_hour,
    random_heating,
    random_household,
    seasonal,
    slot_start_ms,
    solar_kw,
    unit,
)
from thuis.identity import Vendor

NodeType = Literal["multisensor", "door", "switch", "thermostat", "p1meter"]
Value = bool | int | float
SCHEMA = 1
FIRST_NODE_ID = 2  # node 1 is the gateway's own Z-Wave controller
MAX_NODE_ID = 232

# node type -> payload value -> (stored metric, table), as in docs/payloads.md
METRICS: dict[str, dict[str, tuple[str, ReadingTable]]] = {
    "multisensor": {
        "temperature": ("temperature_c", SMART_HOME),
        "humidity": ("humidity_pct", SMART_HOME),
        "luminance": ("luminance_lux", SMART_HOME),
        "motion": ("motion", SMART_HOME),
        "battery": ("battery_pct", SMART_HOME),
    },
    "door": {"open": ("door_open", SMART_HOME), "battery": ("battery_pct", SMART_HOME)},
    "switch": {
        "on": ("switch_on", SMART_HOME),
        "power": ("power_w", SMART_HOME),
        "energy": ("energy_kwh", SMART_HOME),
    },
    "thermostat": {
        "temperature": ("temperature_c", SMART_HOME),
        "setpoint": ("setpoint_c", SMART_HOME),
        "valve": ("valve_pct", SMART_HOME),
        "battery": ("battery_pct", SMART_HOME),
    },
    "p1meter": {
        "import_energy": ("import_energy_kwh", ENERGY),
        "export_energy": ("export_energy_kwh", ENERGY),
        "import_power": ("import_power_w", ENERGY),
        "export_power": ("export_power_w", ENERGY),
        "gas": ("gas_m3", ENERGY),
    },
}


@dataclass(frozen=True)
class Home:
    """What the nodes of one home share: its key, the weather, the household and the heating."""

    key: str
    weather: Weather
    household: HouseholdLoad
    heating: Heating


@dataclass(frozen=True)
class Battery:
    """A battery that drains over months and is replaced when nearly empty."""

    life_days: float
    phase: float

    def pct(self, epoch_ms: int) -> int:
        """Return the battery level in whole percent."""
        used = (epoch_ms / DAY_MS / self.life_days + self.phase) % 1.0
        return round(100.0 - 95.0 * used)


def _battery(rng: random.Random) -> Battery:
    return Battery(life_days=rng.uniform(300.0, 700.0), phase=rng.random())


class Node(abc.ABC):
    """A Z-Wave node: its id, type, and values at a moment."""

    node_type: NodeType

    def __init__(self, node_id: int, home: Home) -> None:
        self.node_id = node_id
        self.home = home

    @abc.abstractmethod
    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return the node's values at a moment, in payload order."""

    def noise(self, name: str, epoch_ms: int) -> float:
        """Return stable noise in [-0.5, 0.5) for one value of this node at a moment."""
        return unit(self.home.key, self.node_id, name, epoch_ms) - 0.5


class Multisensor(Node):
    """A room sensor: temperature, humidity, light, motion, battery."""

    node_type: NodeType = "multisensor"

    def __init__(self, node_id: int, home: Home, rng: random.Random) -> None:
        super().__init__(node_id, home)
        self.room_offset_c = rng.uniform(-1.5, 1.0)
        self.window_lux = rng.uniform(80.0, 600.0)
        self.humidity_base = rng.uniform(44.0, 56.0)
        self.sensitivity = rng.uniform(0.4, 0.9)
        self.battery = _battery(rng)

    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return temperature, humidity, luminance, motion and battery."""
        home = self.home
        room = home.heating.room_c(home.weather, epoch_ms) + self.room_offset_c
        summer = (1 - seasonal(day_of_year(local_day(epoch_ms)), 15)) / 2
        humidity = self.humidity_base + 10.0 * summer - 1.5 * (room - 20.0) + 3.0 * self.noise("rh", epoch_ms)
        activity = home.household.occupancy.activity(epoch_ms)
        hour = local_hour(epoch_ms)
        lux = self.window_lux * daylight(epoch_ms) * home.weather.clear_sky(epoch_ms)
        if (hour >= 17.0 or hour < 8.0) and activity > 0.3:
            lux += 150.0  # the lamps are on
        lux *= 1.0 + 0.1 * self.noise("lux", epoch_ms)
        return {
            "temperature": round(room + 0.2 * self.noise("t", epoch_ms), 1),
            "humidity": round(clamp(humidity, 20.0, 95.0), 1),
            "luminance": round(clamp(lux, 0.0, 100_000.0)),
            "motion": self.noise("motion", epoch_ms) + 0.5 < activity * self.sensitivity,
            "battery": self.battery.pct(epoch_ms),
        }


class DoorSensor(Node):
    """A door contact: opened now and then while people are about."""

    node_type: NodeType = "door"

    def __init__(self, node_id: int, home: Home, rng: random.Random) -> None:
        super().__init__(node_id, home)
        self.traffic = rng.uniform(0.03, 0.15)
        self.battery = _battery(rng)

    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return whether the door is open, and the battery."""
        activity = self.home.household.occupancy.activity(epoch_ms)
        return {
            "open": self.noise("open", epoch_ms) + 0.5 < activity * self.traffic,
            "battery": self.battery.pct(epoch_ms),
        }


@dataclass(frozen=True)
class Appliance:
    """What a smart plug switches: when it runs and how much it uses a day."""

    name: str
    kwh_per_day: float

    def runs(self, key: str, day: int, slot: int) -> float:
        """Return how hard the appliance runs in a quarter-hour slot (0 = off)."""
        hour = local_hour(slot_start_ms(day, slot))
        weekend = is_weekend(day)
        match self.name:
            case "lamp":
                return 1.0 if (6.5 <= hour < 8.0 and not weekend) or 17.0 <= hour < 23.5 else 0.0
            case "television":
                return 1.0 if 19.0 <= hour < 23.0 or (weekend and 14.0 <= hour < 17.0) else 0.0
            case "fridge":
                return 1.0 if unit(key, self.name, day, slot) < 0.35 else 0.0
            case _:  # the dishwasher: heat, wash, heat, dry, every evening
                return (2.0, 2.0, 0.3, 0.3, 2.0, 0.5)[int(hour * 4) - 84] if 21.0 <= hour < 22.5 else 0.0


APPLIANCES = (
    Appliance("lamp", 0.35),
    Appliance("television", 0.5),
    Appliance("fridge", 0.9),
    Appliance("dishwasher", 1.05),
)


class SmartSwitch(Node):
    """A smart plug: on or off, its power and its energy meter."""

    node_type: NodeType = "switch"

    def __init__(self, node_id: int, home: Home, rng: random.Random) -> None:
        super().__init__(node_id, home)
        appliance = rng.choice(APPLIANCES)
        key = f"{home.key}:{node_id}"
        self.appliance = appliance
        self.meter = DailyMeter(
            key=key,
            initial=round(rng.uniform(20.0, 900.0), 3),
            mean_per_day=appliance.kwh_per_day * rng.uniform(0.8, 1.2),
            shape=lambda day, slot: appliance.runs(key, day, slot),
        )

    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return the switch state, the power and the energy meter."""
        power_kw = self.meter.rate_per_hour(epoch_ms) * (1.0 + 0.04 * self.noise("power", epoch_ms))
        return {
            "on": power_kw > 0.0,
            "power": round_power_w(power_kw),
            "energy": round_meter(self.meter.reading(epoch_ms)),
        }


class Thermostat(Node):
    """A radiator thermostat: room temperature, the scheduled setpoint, valve opening, battery."""

    node_type: NodeType = "thermostat"

    def __init__(self, node_id: int, home: Home, rng: random.Random) -> None:
        super().__init__(node_id, home)
        self.battery = _battery(rng)

    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return temperature, setpoint, valve and battery."""
        home = self.home
        return {
            "temperature": round(
                home.heating.room_c(home.weather, epoch_ms) + 0.1 * self.noise("t", epoch_ms), 1
            ),
            "setpoint": home.heating.setpoint(epoch_ms),
            "valve": round(home.heating.valve_pct(home.weather, epoch_ms)),
            "battery": self.battery.pct(epoch_ms),
        }


class P1Meter(Node):
    """The P1 dongle on the home's smart meter: electricity import and export, and gas."""

    node_type: NodeType = "p1meter"

    def __init__(self, node_id: int, home: Home, rng: random.Random) -> None:
        super().__init__(node_id, home)
        self.solar_peak_kw = round(rng.uniform(2.0, 5.0), 2) if rng.random() < 0.5 else 0.0
        solar_mean = 2.6 * self.solar_peak_kw
        solar_swing = 2.1 * self.solar_peak_kw
        household = home.household
        load_mean = 24.0 * (household.standby_kw + 0.45 * household.active_kw) + 1.8
        import_swing = 0.25 * solar_swing  # less sun in winter: more import
        key = f"{home.key}:{node_id}"
        self.import_meter = DailyMeter(
            key=f"{key}:import",
            initial=round(rng.uniform(8_000.0, 30_000.0), 3),
            mean_per_day=max(load_mean - 0.25 * solar_mean, import_swing / 0.85),
            seasonal_amplitude=import_swing,
            peak_day_of_year=15,
            shape=lambda day, slot: max(0.0, self._slot_net_kw(day, slot)) + 0.01,
        )
        self.export_meter = DailyMeter(
            key=f"{key}:export",
            initial=round(rng.uniform(500.0, 6_000.0), 3) if self.solar_peak_kw else 0.0,
            mean_per_day=0.55 * solar_mean,
            seasonal_amplitude=0.55 * solar_swing,
            peak_day_of_year=172,
            shape=lambda day, slot: (
                max(0.0, -self._slot_net_kw(day, slot)) + 0.02 * self._slot_solar(day, slot)
            ),
        )
        gas_mean = rng.uniform(2.5, 4.0)
        self.gas_meter = DailyMeter(
            key=f"{key}:gas",
            initial=round(rng.uniform(3_000.0, 15_000.0), 3),
            mean_per_day=gas_mean,
            seasonal_amplitude=0.8 * gas_mean,
            peak_day_of_year=15,
            shape=self._slot_gas,
        )

    def values(self, epoch_ms: int) -> dict[str, Value]:
        """Return the meter readings and the power drawn from or fed into the grid."""
        solar = solar_kw(self.home.weather, self.solar_peak_kw, epoch_ms) if self.solar_peak_kw else 0.0
        net_kw = self.home.household.kw(epoch_ms) - solar
        return {
            "import_energy": round_meter(self.import_meter.reading(epoch_ms)),
            "export_energy": round_meter(self.export_meter.reading(epoch_ms)),
            "import_power": round_power_w(max(0.0, net_kw)),
            "export_power": round_power_w(max(0.0, -net_kw)),
            "gas": round_meter(self.gas_meter.reading(epoch_ms)),
        }

    def _slot_solar(self, day: int, slot: int) -> float:
        if not self.solar_peak_kw:
            return 0.0
        return solar_kw(self.home.weather, self.solar_peak_kw, slot_start_ms(day, slot) + SLOT_MS // 2)

    def _slot_net_kw(self, day: int, slot: int) -> float:
        return self.home.household.slot_kw(day, slot) - self._slot_solar(day, slot)

    def _slot_gas(self, day: int, slot: int) -> float:
        middle = slot_start_ms(day, slot) + SLOT_MS // 2
        hour = local_hour(middle)
        hot_water = 0.3 if 7.0 <= hour < 8.0 or 19.0 <= hour < 20.0 else 0.0
        return self.home.heating.demand(self.home.weather, middle) + hot_water + 0.02


NODE_CLASSES: dict[NodeType, type[Multisensor | DoorSensor | SmartSwitch | Thermostat | P1Meter]] = {
    "multisensor": Multisensor,
    "door": DoorSensor,
    "switch": SmartSwitch,
    "thermostat": Thermostat,
    "p1meter": P1Meter,
}


class BenextGateway(SimGateway):
    """A BeNext gateway publishing one node report per Z-Wave node each tick."""

    vendor: Vendor = "benext"

    def __init__(self, serial: str, *, seed: int = 0, node_types: Sequence[NodeType] | None = None) -> None:
        rng = gateway_rng(seed, serial)
        self.serial = serial
        self.seed = seed
        self.firmware = rng.choice(("5.2.1", "5.2.1", "5.3.0"))
        key = f"{seed}:{serial}"
        self.home = Home(key, Weather(seed), random_household(key, rng), random_heating(rng))
        default_types: list[NodeType] = ["multisensor", "multisensor"]
        default_types += ["door"] * rng.choice((1, 2))
        default_types += ["switch", "switch", "thermostat"]
        if rng.random() < 0.6:
            default_types.append("p1meter")
        chosen = list(default_types if node_types is None else node_types)
        self.nodes: list[Node] = []
        node_id = FIRST_NODE_ID
        for node_type in chosen:
            if node_id > MAX_NODE_ID:
                raise ValueError(f"a Z-Wave network holds at most {MAX_NODE_ID - 1} nodes")
            self.nodes.append(NODE_CLASSES[node_type](node_id, self.home, rng))
            node_id += rng.randint(1, 3)  # ids of removed nodes are not reused

    def tick(self, epoch_ms: int) -> tuple[SimMessage, ...]:
        """Return one node report per node, all measured at the same moment."""
        measured_at = datetime_from_ms(epoch_ms)
        messages = []
        for node in self.nodes:
            values = node.values(epoch_ms)
            payload: dict[str, object] = {
                "schema": SCHEMA,
                "ts": epoch_ms,
                "type": node.node_type,
                "values": values,
            }
            metrics = METRICS[node.node_type]
            readings = tuple(
                ExpectedReading(
                    metrics[name][1],
                    str(node.node_id),
                    node.node_type,
                    metrics[name][0],
                    measured_at,
                    float(value),
                )
                for name, value in values.items()
            )
            topic = f"benext/{self.serial}/nodes/{node.node_id}"
            messages.append(SimMessage(topic, encode_payload(payload), readings))
        return tuple(messages)

    def status_message(self, *, online: bool, epoch_ms: int | None) -> SimMessage:
        """Return `online` with the firmware, or `offline`; the time is left out for a will."""
        payload: dict[str, object] = {"schema": SCHEMA}
        if epoch_ms is not None:
            payload["ts"] = epoch_ms
        payload["state"] = "online" if online else "offline"
        if online:
            payload["firmware"] = self.firmware
        return SimMessage(self.status_topic, encode_payload(payload), ())
