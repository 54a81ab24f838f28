"""What every simulated gateway offers: a serial, a vendor, its messages at given times, its status."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Iterator

from gateway_sim.messages import SimMessage, ms_from_datetime
from thuis.identity import Vendor


def round_power_w(kilowatts: float) -> float:
    """Return a power in watts with one decimal, never `-0.0`."""
    return round(kilowatts * 1000.0, 1) + 0.0


def round_meter(reading: float) -> float:
    """Return a meter reading with three decimals (Wh resolution for kWh, litres for m³)."""
    return round(reading, 3)


class SimGateway(abc.ABC):
    """A simulated gateway: fixed traits from (seed, serial), readings a pure function of time."""

    vendor: Vendor
    serial: str
    firmware: str

    @property
    def status_topic(self) -> str:
        """Return the topic of the gateway's status messages and MQTT will."""
        return f"{self.vendor}/{self.serial}/status"

    @abc.abstractmethod
    def tick(self, epoch_ms: int) -> tuple[SimMessage, ...]:
        """Return the messages the gateway publishes for one measurement at a time in epoch milliseconds."""

    @abc.abstractmethod
    def status_message(self, *, online: bool, epoch_ms: int | None) -> SimMessage:
        """Return a status message; without a time (an MQTT will) it carries none."""

    def messages_at(self, measured_at: dt.datetime) -> tuple[SimMessage, ...]:
        """Return the messages for one measurement at an aware datetime (cut to the millisecond)."""
        return self.tick(ms_from_datetime(measured_at))

    def messages(self, times: Iterable[dt.datetime]) -> Iterator[SimMessage]:
        """Yield the messages for each of the given measurement times, in order."""
        for measured_at in times:
            yield from self.messages_at(measured_at)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.serial!r})"
