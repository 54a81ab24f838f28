"""What a researcher may ask a release for, and the precise reason when a request cannot be answered.

Every check here reads no data: a request is refused, or not, whatever the households are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from privacy.research.files import FileFormat
from thuis.metrics import Metric, energy_measures

Kind = Literal["aggregates", "households"]
Resolution = Literal["15min", "hour", "day", "week", "month"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)
# Load profiles identify a household: hourly data about as well as 15-minute data. Per-household series (with
# the owner's consent) only from a day on; finer only as aggregates.
HOUSEHOLD_RESOLUTIONS: tuple[Resolution, ...] = ("day", "week", "month")
SUB_DAILY: tuple[Resolution, ...] = ("15min", "hour")
MAX_MEASURES = 20
# The longest period of one release: 15-minute buckets over a year are 35,040 a cell.
MAX_DAYS = 366


class ReleaseRefusedError(Exception):
    """A release that may not or cannot be made; the reason says why, and depends on no household."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReleaseRequest:
    """A release as asked: the project, the kind, period [start, end), measures, resolution, region, rho."""

    project_id: int
    kind: Kind
    start: dt.date
    end: dt.date
    measures: tuple[str, ...]
    resolution: Resolution
    region: tuple[str, ...] = ()  # whole cells of the project's geography; empty: all of them
    rho: float = 0.0  # the privacy loss an aggregate release spends; per-household series spend none
    file_format: FileFormat = "csv"

    def parameters(self) -> dict[str, Any]:
        """Return the request as it is recorded (JSON types)."""
        values = asdict(self)
        values["start"], values["end"] = self.start.isoformat(), self.end.isoformat()
        values["measures"], values["region"] = list(self.measures), list(self.region)
        return values


def check_request(request: ReleaseRequest) -> list[Metric]:
    """Return the measures asked for; refuse a request that breaks a rule, saying which and why."""
    if request.kind not in get_args(Kind):
        raise ReleaseRefusedError(f"kind must be 'aggregates' or 'households', not {request.kind!r}")
    if request.resolution not in RESOLUTIONS:
        raise ReleaseRefusedError(
            f"resolution must be one of {', '.join(RESOLUTIONS)}, not {request.resolution!r}"
        )
    if request.kind == "households":
        if request.resolution not in HOUSEHOLD_RESOLUTIONS:
            raise ReleaseRefusedError(
                "per-household series only at daily resolution or coarser (day, week, month), not "
                f"{request.resolution!r}; finer resolutions are released only as aggregates"
            )
        if request.rho:
            raise ReleaseRefusedError(
                "per-household series spend no privacy budget (they hold only households whose owner "
                "consented); leave rho out"
            )
    _check_period(request)
    return measures(request.measures)


def _check_period(request: ReleaseRequest) -> None:
    if request.start >= request.end:
        raise ReleaseRefusedError(f"the period must end after it starts ({request.start} to {request.end})")
    if (request.end - request.start).days > MAX_DAYS:
        raise ReleaseRefusedError(
            f"a release covers at most {MAX_DAYS} days, not {(request.end - request.start).days}"
        )
    if request.resolution == "week" and (request.start.isoweekday() != 1 or request.end.isoweekday() != 1):
        raise ReleaseRefusedError(
            "at weekly resolution the period must start and end on a Monday (whole weeks)"
        )
    if request.resolution == "month" and (request.start.day != 1 or request.end.day != 1):
        raise ReleaseRefusedError(
            "at monthly resolution the period must start and end on the first of a month (whole months)"
        )


def measures(names: Iterable[str]) -> list[Metric]:
    """Return the energy measures named `<device kind>.<metric>`; refuse unknown ones, listing the known."""
    known = energy_measures()
    asked = list(dict.fromkeys(names))
    if not asked:
        raise ReleaseRefusedError(f"ask for at least one measure; known measures: {', '.join(known)}")
    if len(asked) > MAX_MEASURES:
        raise ReleaseRefusedError(f"at most {MAX_MEASURES} measures at a time, not {len(asked)}")
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise ReleaseRefusedError(
            f"unknown measure {', '.join(repr(name[:60]) for name in unknown[:5])}; "
            f"known measures: {', '.join(known)}"
        )
    return [known[name] for name in asked]
