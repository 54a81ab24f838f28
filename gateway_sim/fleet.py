"""The simulated fleet and the order its messages are produced in: round-robin across gateways per tick."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator, Sequence

from gateway_sim.benext import BenextGateway
from gateway_sim.gateways import SimGateway
from gateway_sim.maxem import MaxemMeter
from gateway_sim.messages import SimMessage, ms_from_datetime
from thuis.identity import GATEWAY_SERIAL, RESERVED_PREFIX

DEFAULT_PREFIX = "sim"
DEFAULT_INTERVAL_S = 10.0


class FleetError(ValueError):
    """The fleet cannot be built or simulated as asked."""


def benext_serial(prefix: str, index: int) -> str:
    """Return the serial of the index-th simulated BeNext gateway, e.g. `sim-bnx-000`."""
    return _checked_serial(f"{prefix}-bnx-{index:03d}")


def maxem_serial(prefix: str, index: int) -> str:
    """Return the serial of the index-th simulated Maxem meter, e.g. `sim-mxm-000`."""
    return _checked_serial(f"{prefix}-mxm-{index:03d}")


def _checked_serial(serial: str) -> str:
    if not GATEWAY_SERIAL.fullmatch(serial):
        raise FleetError(
            f"serial {serial!r} is not 3-64 letters, digits, '-' or '_' starting with one of the first two"
        )
    if serial.lower().startswith(RESERVED_PREFIX):
        raise FleetError(f"serial {serial!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return serial


def build_fleet(
    *, benext: int = 3, maxem: int = 3, seed: int = 0, prefix: str = DEFAULT_PREFIX
) -> list[SimGateway]:
    """Create the simulated gateways: the BeNext gateways first, then the Maxem meters, each by index."""
    if benext < 0 or maxem < 0:
        raise FleetError("the numbers of BeNext gateways and Maxem meters cannot be negative")
    gateways: list[SimGateway] = [BenextGateway(benext_serial(prefix, i), seed=seed) for i in range(benext)]
    gateways += [MaxemMeter(maxem_serial(prefix, i), seed=seed) for i in range(maxem)]
    return gateways


def generate_messages(
    gateways: Sequence[SimGateway],
    *,
    start: dt.datetime | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    count: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[SimMessage]:
    """Yield reading messages tick by tick, each tick visiting every gateway in fleet order.

    With `start`, tick k is measured at start + k * interval (back-fill: fully deterministic). Without
    it (live), each gateway's tick is measured at the wall clock when it is produced, kept strictly
    increasing per gateway so no two ticks share a millisecond. `count` bounds the number of reading
    messages (node reports and measurements, possibly ending within a tick); None runs forever.
    Status messages are not part of this stream: the publisher sends them around the connection.
    """
    interval_ms = round(interval_s * 1000)
    if interval_ms < 1:
        raise FleetError("the interval between ticks must be at least one millisecond")
    if count is not None and count < 0:
        raise FleetError("the message count cannot be negative")
    if not gateways or count == 0:
        return
    start_ms = ms_from_datetime(start) if start is not None else None
    last_ms: dict[str, int] = {}
    produced = 0
    for tick in itertools.count():
        for gateway in gateways:
            if start_ms is not None:
                epoch_ms = start_ms + tick * interval_ms
            else:
                epoch_ms = max(int(clock() * 1000), last_ms.get(gateway.serial, -1) + 1)
                last_ms[gateway.serial] = epoch_ms
            for message in gateway.tick(epoch_ms):
                yield message
                produced += 1
                if count is not None and produced >= count:
                    return


def simulate(
    *,
    benext: int = 3,
    maxem: int = 3,
    seed: int = 0,
    prefix: str = DEFAULT_PREFIX,
    start: dt.datetime | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    count: int | None = None,
) -> Iterator[SimMessage]:
    """Yield the messages `thuis sim` publishes for the same arguments (build the fleet, then generate)."""
    fleet = build_fleet(benext=benext, maxem=maxem, seed=seed, prefix=prefix)
    return generate_messages(fleet, start=start, interval_s=interval_s, count=count)
