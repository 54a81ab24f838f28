"""What a researcher may ask an export for, and the precise reason when a request cannot be answered."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import h3

from privacy.location import COARSEST_H3_RESOLUTION, DEFAULT_H3_RESOLUTION, DEFAULT_K, Scheme
from privacy.research.files import FileFormat
from thuis.metrics import energy_measures, is_meter

Shape = Literal["households", "aggregates"]
Resolution = Literal["15min", "hour", "day", "week", "month"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)
# Load profiles identify a household: hourly data about as well as 15-minute data. Per-household series only
# from a day on; finer only as aggregates over at least k households.
HOUSEHOLD_RESOLUTIONS: tuple[Resolution, ...] = ("day", "week", "month")
MAX_MEASURES = 50
MAX_REGION_CELLS = 500
_POSTCODE_PREFIX = re.compile(r"[1-9][0-9]{1,3}")


class ExportRefusedError(Exception):
    """An export that may not or cannot be made; the reason says why, precisely."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Measure:
    """A metric of one kind of device: `solar.energy_kwh` is not `ev.energy_kwh`."""

    device_kind: str
    metric: str

    @property
    def name(self) -> str:
        """Return the name a researcher asks for it by."""
        return f"{self.device_kind}.{self.metric}"

    @property
    def meter(self) -> bool:
        """Say whether it is a cumulative meter reading, exported as consumption per bucket."""
        return is_meter(self.metric)


def research_measures() -> dict[str, Measure]:
    """Return every energy measure of the metric catalogue, by name (`<device kind>.<metric>`), sorted."""
    return {name: Measure(m.device_kind, m.name) for name, m in energy_measures().items()}


@dataclass(frozen=True)
class ExportRequest:
    """An export as asked: period [start, end), measures, resolution, shape, location scheme, region, k."""

    start: dt.date
    end: dt.date
    measures: tuple[str, ...]
    resolution: Resolution
    shape: Shape
    scheme: Scheme = "pc4"
    region: tuple[str, ...] = ()  # 2- to 4-digit postcode prefixes or H3 cells of resolution 5 to 7
    k: int = DEFAULT_K
    file_format: FileFormat = "csv"

    def parameters(self) -> dict[str, Any]:
        """Return the request as JSON-ready parameters, for the record and the manifest."""
        values = asdict(self)
        values.update(start=self.start.isoformat(), end=self.end.isoformat())
        values.update(measures=list(self.measures), region=list(self.region))
        return values


def check_request(request: ExportRequest) -> list[Measure]:
    """Return the measures asked for; refuse a request that breaks a rule, saying which and why."""
    if request.k < DEFAULT_K:
        raise ExportRefusedError(
            f"k must be at least {DEFAULT_K} (households per released group), not {request.k}"
        )
    if request.shape == "households" and request.resolution not in HOUSEHOLD_RESOLUTIONS:
        raise ExportRefusedError(
            "per-household series only at daily resolution or coarser (day, week, month), not "
            f"{request.resolution!r}; finer resolutions are exported only as aggregates (shape 'aggregates')"
        )
    if request.resolution not in RESOLUTIONS:
        raise ExportRefusedError(
            f"resolution must be one of {', '.join(RESOLUTIONS)}, not {request.resolution!r}"
        )
    _check_period(request)
    measures = _measures(request.measures)
    region_kind(request.region)
    return measures


def _check_period(request: ExportRequest) -> None:
    if request.start >= request.end:
        raise ExportRefusedError(f"the period must end after it starts ({request.start} to {request.end})")
    if request.resolution == "week" and (request.start.isoweekday() != 1 or request.end.isoweekday() != 1):
        raise ExportRefusedError(
            "at weekly resolution the period must start and end on a Monday (whole weeks)"
        )
    if request.resolution == "month" and (request.start.day != 1 or request.end.day != 1):
        raise ExportRefusedError(
            "at monthly resolution the period must start and end on the first of a month (whole months)"
        )


def _measures(names: Iterable[str]) -> list[Measure]:
    known = research_measures()
    asked = list(dict.fromkeys(names))
    if not asked:
        raise ExportRefusedError(f"ask for at least one measure; known measures: {', '.join(known)}")
    if len(asked) > MAX_MEASURES:
        raise ExportRefusedError(f"at most {MAX_MEASURES} measures at a time, not {len(asked)}")
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise ExportRefusedError(
            f"unknown measure {', '.join(repr(name[:60]) for name in unknown[:5])}; "
            f"known measures: {', '.join(known)}"
        )
    return [known[name] for name in asked]


def region_kind(region: tuple[str, ...]) -> Literal["pc4", "h3"] | None:
    """Return whether a region is given by postcode prefixes or H3 cells (None: everywhere); refuse a mix."""
    if not region:
        return None
    if len(region) > MAX_REGION_CELLS:
        raise ExportRefusedError(f"a region has at most {MAX_REGION_CELLS} cells, not {len(region)}")
    kinds = {_cell_kind(cell) for cell in region}
    if len(kinds) > 1:
        raise ExportRefusedError("give the region as postcode prefixes or as H3 cells, not both")
    return kinds.pop()


def _cell_kind(cell: str) -> Literal["pc4", "h3"]:
    if _POSTCODE_PREFIX.fullmatch(cell):
        return "pc4"
    if h3.is_valid_cell(cell) and COARSEST_H3_RESOLUTION <= h3.get_resolution(cell) <= DEFAULT_H3_RESOLUTION:
        return "h3"
    raise ExportRefusedError(
        f"region cell {cell[:40]!r} is neither a postcode prefix of 2 to 4 digits nor an H3 cell of "
        f"resolution {COARSEST_H3_RESOLUTION} to {DEFAULT_H3_RESOLUTION}"
    )


def region_filter(region: tuple[str, ...]) -> Callable[[str | None, str | None], bool]:
    """Return a test of whether a household (postcode area, H3 cell) lies in the region; empty: everywhere."""
    kind = region_kind(region)
    if kind is None:
        return lambda _postcode_area, _h3_cell: True
    if kind == "pc4":
        return lambda postcode_area, _h3_cell: postcode_area is not None and postcode_area.startswith(region)
    cells = frozenset(region)
    resolutions = sorted({h3.get_resolution(cell) for cell in cells})

    def in_h3_region(_postcode_area: str | None, h3_cell: str | None) -> bool:
        return h3_cell is not None and any(
            str(h3.cell_to_parent(h3_cell, resolution)) in cells for resolution in resolutions
        )

    return in_h3_region
