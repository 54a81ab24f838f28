"""The differential privacy of a release, done by OpenDP: calibrated Gaussian noise and its privacy loss.

The privacy unit is one household over its whole history: two populations are neighbours when one holds a
household the other does not. A release is a set of vectors, each a sum over the households of a cell per
(cell, bucket) of one measure, or the number of households per cell. A household falls in one cell and adds
at most its clamp to each bucket of each measure (privacy/research/clamps.py), so a vector's L2 sensitivity
is the clamp times the square root of the number of buckets, and 1 for the counts.

Noise is OpenDP's Gaussian mechanism under zero-concentrated differential privacy (zCDP; rho adds up over
releases): for sums on a grid of 2**GRANULARITY, for counts the discrete Gaussian on the integers. The scale
of each vector is found by OpenDP's binary search so that its loss, as OpenDP accounts it (rounding to the
grid included), stays within the share of rho it was given. A vector is noised in batches by one mechanism
each; every coordinate gets noise of the same distribution as if the whole vector were noised at once, and
the loss is accounted for the whole vector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import opendp.prelude as dp
from opendp.accuracy import discrete_gaussian_scale_to_accuracy, gaussian_scale_to_accuracy

# OpenDP asks to be told that its not-yet-vetted constructors may be used: the Gaussian mechanism is one.
dp.enable_features("contrib")

# Sums are noised on a grid of 2**-10 (about a thousandth of a kWh): OpenDP's exact sampler on a lattice
# is fast and immune to the floating-point attacks on naive Gaussian noise; the rounding costs a little rho,
# which OpenDP accounts.
GRANULARITY = -10
# The (epsilon, delta) printed beside rho: delta well below one over the number of households.
DELTA = 1e-6
# Of a release's rho, counts of households get this share; the sums share the rest equally per measure.
COUNT_SHARE = 0.1
# The chance that a statistic is further from the truth than its stated "95 % within" bound.
ALPHA = 0.05
# The least rho a budget, a grant or an aggregate release may have. Below it no figure carries information,
# and OpenDP overflows: its noise scale for a rho of 1e-30, its epsilon of a rho of 5e-324.
MIN_RHO = 1e-6


class AccountingError(ValueError):
    """A release cannot be given the privacy asked for (a rho that is not a positive finite number)."""


@dataclass(frozen=True, slots=True)
class Vector:
    """One vector of a release: its length, each household's most in it (L2), and its noise."""

    size: int
    sensitivity: float  # the L2 distance a household can move it
    integer: bool  # counts: discrete Gaussian on the integers
    scale: float  # the noise's standard deviation
    rho: float  # its privacy loss, as OpenDP accounts it

    @property
    def within_95(self) -> float:
        """Return the bound a statistic of it lies within from the truth, 95 times in 100."""
        if self.integer:
            return float(discrete_gaussian_scale_to_accuracy(self.scale, ALPHA))
        return float(gaussian_scale_to_accuracy(self.scale, ALPHA))


def sum_sensitivity(clamp: float, buckets: int) -> float:
    """Return the L2 sensitivity of one measure's sums: a household adds at most `clamp` to each bucket."""
    return clamp * math.sqrt(buckets)


def _measurement(size: int, *, integer: bool, scale: float) -> dp.Measurement:
    if integer:
        space = dp.vector_domain(dp.atom_domain(T=int), size=size), dp.l2_distance(T=int)
        return dp.m.make_gaussian(*space, scale=scale)
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=size), dp.l2_distance(T=float)
    return dp.m.make_gaussian(*space, scale=scale, k=GRANULARITY)


def calibrate(*, size: int, sensitivity: float, rho: float, integer: bool = False) -> Vector:
    """Return the noise a vector needs to cost at most `rho`, and what it costs, by OpenDP's accounting."""
    if not (math.isfinite(rho) and rho > 0):
        raise AccountingError(f"rho must be a positive number, not {rho}")
    if size < 1:
        raise AccountingError("a vector has at least one statistic")
    d_in: float | int = math.ceil(sensitivity) if integer else sensitivity
    scale = float(
        dp.binary_search_param(
            lambda s: _measurement(size, integer=integer, scale=s), d_in=d_in, d_out=rho, T=float
        )
    )
    spent = float(_measurement(size, integer=integer, scale=scale).map(d_in))
    return Vector(size, float(sensitivity), integer, scale, spent)


def noise(vector: Vector, values: Sequence[float]) -> list[float]:
    """Return `values` (a batch of the vector) with the vector's noise; counts come back as whole numbers."""
    if not values:
        return []
    measurement = _measurement(len(values), integer=vector.integer, scale=vector.scale)
    if vector.integer:
        return [float(v) for v in measurement([round(v) for v in values])]
    return [float(v) for v in measurement([float(v) for v in values])]


@cache
def epsilon(rho: float, delta: float = DELTA) -> float:
    """Return the epsilon of (epsilon, delta)-DP that rho-zCDP implies, by OpenDP's conversion."""
    if rho <= 0:
        return 0.0
    # A mechanism that costs exactly rho: a Gaussian of scale 1 / sqrt(2 rho) on a sensitivity of 1.
    unit = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0)
    scale = 1.0 / math.sqrt(2.0 * rho)
    gaussian = dp.m.make_gaussian(unit.input_domain, unit.input_metric, scale=scale)
    profile = dp.c.make_zCDP_to_approxDP(gaussian).map(1.0)
    return float(profile.epsilon(delta))
