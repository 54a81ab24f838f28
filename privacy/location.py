"""Coarse locations: a site's postcode or coordinates become a cell that holds at least k households.

A cell is released only when at least k households fall in it; the households of a smaller cell move up to
its parent (a 4-digit postcode area to its first 3 digits, then 2; an H3 cell of resolution 7 to 6, then 5),
and those still in a group under k at the top are suppressed. A 6-character postcode, an H3 cell finer than
resolution 8 and coordinates never leave this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

import h3

DEFAULT_K = 10
MIN_K = 10  # grid operators publish consumption only for groups of at least 10 connections
DEFAULT_H3_RESOLUTION = 7  # about 5.2 km²
FINEST_H3_RESOLUTION = 8  # resolution 9 (about 0.1 km²) is a few streets: never released
COARSEST_H3_RESOLUTION = 5
COARSEST_POSTCODE_DIGITS = 2
_POSTCODE = re.compile(r"(?P<digits>[1-9][0-9]{3}) ?(?P<letters>[A-Z]{2})?")

Scheme = Literal["pc4", "h3"]


class LocationError(ValueError):
    """A postcode or coordinate that cannot be made coarse."""


@dataclass(frozen=True)
class Release:
    """The cell each household is released under; households left out are suppressed."""

    k: int
    cells: dict[Hashable, str]  # household -> released cell
    suppressed: frozenset[Hashable]

    def sizes(self) -> dict[str, int]:
        """Return how many households each released cell holds."""
        counts: dict[str, int] = defaultdict(int)
        for cell in self.cells.values():
            counts[cell] += 1
        return dict(counts)


def postcode_area(postcode: str) -> str:
    """Return the 4-digit area of a Dutch postcode ("1234 AB", "1234ab", "1234"), dropping the letters."""
    match = _POSTCODE.fullmatch(postcode.strip().upper())
    if match is None:
        raise LocationError(f"{postcode!r} is not a Dutch postcode like '1234 AB'")
    return match["digits"]


def h3_cell(latitude: float, longitude: float, *, resolution: int = DEFAULT_H3_RESOLUTION) -> str:
    """Return the H3 cell of a coordinate at a resolution no finer than 8."""
    if not COARSEST_H3_RESOLUTION <= resolution <= FINEST_H3_RESOLUTION:
        raise LocationError(
            f"H3 resolution must be {COARSEST_H3_RESOLUTION} to {FINEST_H3_RESOLUTION}, not {resolution}"
        )
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise LocationError(f"({latitude}, {longitude}) is not a coordinate")
    return str(h3.latlng_to_cell(latitude, longitude, resolution))


def parent(cell: str, scheme: Scheme) -> str | None:
    """Return the next coarser cell, or None at the coarsest level that may be released."""
    if scheme == "pc4":
        return cell[:-1] if len(cell) > COARSEST_POSTCODE_DIGITS else None
    resolution = h3.get_resolution(cell)
    return str(h3.cell_to_parent(cell, resolution - 1)) if resolution > COARSEST_H3_RESOLUTION else None


def release(fine_cells: Mapping[Hashable, str], *, scheme: Scheme, k: int = DEFAULT_K) -> Release:
    """Assign every household the finest cell with at least k households in it, or suppress it.

    `fine_cells` maps each household to its finest allowed cell: a 4-digit postcode area, or an H3 cell
    of resolution 8 or coarser. Groups under k move up a level together; what is under k at the top is
    suppressed.
    """
    if k < MIN_K:
        raise LocationError(f"k must be at least {MIN_K}, not {k}")
    _check_fine(fine_cells, scheme)
    released: dict[Hashable, str] = {}
    suppressed: list[Hashable] = []
    waiting: dict[str, list[Hashable]] = defaultdict(list)
    for household, cell in fine_cells.items():
        waiting[cell].append(household)
    while waiting:
        moving_up: dict[str, list[Hashable]] = defaultdict(list)
        for cell, households in waiting.items():
            if len(households) >= k:
                released.update((household, cell) for household in households)
                continue
            coarser = parent(cell, scheme)
            if coarser is None:
                suppressed.extend(households)
            else:
                moving_up[coarser].extend(households)
        waiting = moving_up
    return Release(k, released, frozenset(suppressed))


def _check_fine(fine_cells: Mapping[Hashable, str], scheme: Scheme) -> None:
    """Refuse cells that are too fine, or of different levels (a group must move up as one)."""
    levels = set()
    for cell in fine_cells.values():
        if scheme == "pc4":
            if not (len(cell) == 4 and cell.isdigit()):
                raise LocationError(f"{cell!r} is not a 4-digit postcode area")
        elif not h3.is_valid_cell(cell) or h3.get_resolution(cell) > FINEST_H3_RESOLUTION:
            raise LocationError(f"{cell!r} is not an H3 cell of resolution {FINEST_H3_RESOLUTION} or coarser")
        levels.add(len(cell) if scheme == "pc4" else h3.get_resolution(cell))
    if len(levels) > 1:
        raise LocationError(f"the cells are of different levels ({sorted(levels)}); give them all at one")


def mask_ip(address: str) -> str:
    """Return an IP address fit for analytics and exports: IPv4 without its last octet, IPv6 to its /48."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv4 client seen through an IPv6 socket
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
