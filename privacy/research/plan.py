"""The plan of a release, made before any data is read: its cells, buckets, clamps and noise.

Everything a researcher learns before spending (the expected error of every statistic) and everything the
ledger spends is decided here, from the request and the project's geography alone: no household changes a
plan. A release then fills the plan's grid, every (cell, bucket, measure) of it, whether a household has
data there or not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from privacy.research.accounting import (
    COUNT_SHARE,
    DELTA,
    MIN_RHO,
    Vector,
    calibrate,
    epsilon,
    sum_sensitivity,
)
from privacy.research.clamps import Clamp, clamp
from privacy.research.request import SUB_DAILY, ReleaseRefusedError, ReleaseRequest
from thuis.metrics import Metric

# Sub-daily periods run from midnight to midnight here; the buckets themselves are UTC.
PERIOD_TIME_ZONE = "Europe/Amsterdam"
STEPS = {"15min": dt.timedelta(minutes=15), "hour": dt.timedelta(hours=1)}
# A release holds at most this many statistics: 15-minute buckets of a year over 50 cells and one measure.
MAX_STATISTICS = 2_000_000


@dataclass(frozen=True)
class MeasurePlan:
    """One measure of a release: its clamp and the noise of its sums."""

    measure: Metric
    clamp: Clamp
    sums: Vector | None  # None for per-household series, which get no noise

    @property
    def statistic(self) -> str:
        """Return what a value of it is: use in the bucket for meters, a time-weighted mean for gauges."""
        return "consumption" if self.measure.is_meter else "mean"


@dataclass(frozen=True)
class ReleasePlan:
    """A release decided: its cells, buckets, measures with their clamps, and the noise of each vector."""

    request: ReleaseRequest
    cells: list[str]
    buckets: list[dt.date] | list[dt.datetime]
    measures: list[MeasurePlan]
    counts: Vector | None  # the noisy number of households per cell (aggregates)

    @property
    def statistics(self) -> int:
        """Return how many noisy figures the release holds."""
        return len(self.cells) * (len(self.buckets) * len(self.measures) + (1 if self.counts else 0))

    @property
    def rho(self) -> float:
        """Return the privacy loss of the release as OpenDP accounts its vectors: at most what it spends."""
        vectors = [m.sums for m in self.measures if m.sums is not None]
        return sum(v.rho for v in vectors) + (self.counts.rho if self.counts else 0.0)

    def accuracy(self) -> dict[str, object]:
        """Return, per statistic, the noise's standard deviation, its 95 % bound and the clamp: data-free."""
        measures = {
            m.measure.measure: {
                "statistic": m.statistic,
                "unit": m.measure.unit,
                "clamp": {"lower": m.clamp.lower, "upper": m.clamp.upper, "reason": m.clamp.reason},
                **(
                    {
                        "noise_sd": m.sums.scale,
                        "within_95": m.sums.within_95,
                        "sensitivity": m.sums.sensitivity,
                        "rho": m.sums.rho,
                    }
                    if m.sums is not None
                    else {"noise_sd": 0.0}
                ),
            }
            for m in self.measures
        }
        accuracy: dict[str, object] = {
            "cells": len(self.cells),
            "buckets": len(self.buckets),
            "statistics": self.statistics,
            "measures": measures,
        }
        if self.counts is not None:
            accuracy["households"] = {
                "noise_sd": self.counts.scale,
                "within_95": self.counts.within_95,
                "rho": self.counts.rho,
            }
            accuracy["rho"] = {
                "asked": self.request.rho,
                "accounted": self.rho,
                "delta": DELTA,
                "epsilon": epsilon(self.request.rho),
            }
        return accuracy


def make_plan(request: ReleaseRequest, measures: list[Metric], cells: list[str]) -> ReleasePlan:
    """Plan a release over the given cells; refuse one too large to make."""
    buckets = list(bucket_starts(request))
    statistics = len(cells) * len(buckets) * len(measures)
    if statistics > MAX_STATISTICS:
        raise ReleaseRefusedError(
            f"the release would hold {statistics:,} statistics ({len(cells)} cells x {len(buckets)} buckets "
            f"x {len(measures)} measures); at most {MAX_STATISTICS:,}: ask for fewer cells, a shorter "
            "period or a coarser resolution"
        )
    if not cells:
        raise ReleaseRefusedError("the project's release geography has no cells")
    clamps = [clamp(measure, request.resolution) for measure in measures]
    if request.kind == "households":
        return ReleasePlan(
            request,
            cells,
            buckets,
            [MeasurePlan(m, c, None) for m, c in zip(measures, clamps, strict=True)],
            None,
        )
    if not request.rho >= MIN_RHO:  # NaN too
        raise ReleaseRefusedError(
            f"an aggregate release spends some privacy budget: give rho above 0, at least {MIN_RHO:g}"
        )
    per_measure = request.rho * (1 - COUNT_SHARE) / len(measures)
    plans = [
        MeasurePlan(
            measure,
            limit,
            calibrate(
                size=len(cells) * len(buckets),
                sensitivity=sum_sensitivity(limit.contribution, len(buckets)),
                rho=per_measure,
            ),
        )
        for measure, limit in zip(measures, clamps, strict=True)
    ]
    counts = calibrate(size=len(cells), sensitivity=1.0, rho=request.rho * COUNT_SHARE, integer=True)
    return ReleasePlan(request, cells, buckets, plans, counts)


def bucket_starts(request: ReleaseRequest) -> Iterator[dt.date] | Iterator[dt.datetime]:
    """Return the start of every bucket of the period: dates for days and coarser, UTC instants else."""
    if request.resolution in SUB_DAILY:
        return _instants(request)
    return _dates(request)


def _dates(request: ReleaseRequest) -> Iterator[dt.date]:
    day = request.start
    while day < request.end:
        yield day
        if request.resolution == "day":
            day += dt.timedelta(days=1)
        elif request.resolution == "week":
            day += dt.timedelta(days=7)
        else:
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _instants(request: ReleaseRequest) -> Iterator[dt.datetime]:
    start, end = period_bounds(request)
    step = STEPS[request.resolution]
    moment = start.astimezone(dt.UTC)
    while moment < end:
        yield moment
        moment += step


def period_bounds(request: ReleaseRequest) -> tuple[dt.datetime, dt.datetime]:
    """Return a sub-daily period as instants: local midnights of Europe/Amsterdam, in UTC."""
    zone = ZoneInfo(PERIOD_TIME_ZONE)
    return (
        dt.datetime.combine(request.start, dt.time(), tzinfo=zone).astimezone(dt.UTC),
        dt.datetime.combine(request.end, dt.time(), tzinfo=zone).astimezone(dt.UTC),
    )
