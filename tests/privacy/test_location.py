"""Coarse locations: every released cell holds at least k households; nothing finer ever leaves."""

from __future__ import annotations

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.location import (
    FINEST_H3_RESOLUTION,
    LocationError,
    Release,
    Scheme,
    h3_cell,
    mask_ip,
    parent,
    postcode_area,
    release,
)

# Postcode areas clustered in a few regions, so that merging up actually happens.
areas = st.builds(
    lambda region, rest: f"{region}{rest:02d}", st.sampled_from(["10", "11", "35", "97"]), st.integers(0, 99)
)
# Coordinates around a few Dutch towns, at every distance from dense to sparse.
towns = st.sampled_from([(52.37, 4.89), (52.09, 5.12), (53.22, 6.57), (51.44, 5.48)])
coordinates = st.builds(
    lambda town, dlat, dlon: (town[0] + dlat, town[1] + dlon),
    towns,
    st.floats(-0.3, 0.3),
    st.floats(-0.3, 0.3),
)


def assert_a_proper_release(fine: dict[int, str], result: Release, scheme: Scheme, k: int) -> None:
    # Every released cell holds at least k households.
    assert all(size >= k for size in result.sizes().values())
    # Each household is released once or suppressed, never both, never lost.
    assert set(result.cells) | result.suppressed == set(fine)
    assert not set(result.cells) & result.suppressed
    # A household is released under its own cell or one that contains it.
    for household, cell in result.cells.items():
        own = fine[household]
        while own != cell:
            coarser = parent(own, scheme)
            assert coarser is not None, (fine[household], cell)
            own = coarser


@settings(max_examples=200, deadline=None)
@given(st.lists(areas, min_size=0, max_size=400), st.integers(10, 25))
def test_every_released_postcode_area_holds_at_least_k_households(households: list[str], k: int):
    fine = dict(enumerate(households))
    result = release(fine, scheme="pc4", k=k)
    assert_a_proper_release(fine, result, "pc4", k)
    assert all(2 <= len(cell) <= 4 and cell.isdigit() for cell in result.cells.values())


@settings(max_examples=100, deadline=None)
@given(st.lists(coordinates, min_size=0, max_size=300), st.integers(10, 25))
def test_every_released_h3_cell_holds_at_least_k_households_and_is_coarse(points, k: int):
    fine = {i: h3_cell(lat, lon) for i, (lat, lon) in enumerate(points)}
    result = release(fine, scheme="h3", k=k)
    assert_a_proper_release(fine, result, "h3", k)
    assert all(5 <= h3.get_resolution(cell) <= 7 for cell in result.cells.values())


def test_small_areas_merge_into_their_parent_and_what_stays_small_is_suppressed():
    fine = dict.fromkeys(range(12), "1011")  # big enough on its own
    fine |= {100 + i: "1012" for i in range(4)} | {200 + i: "1013" for i in range(6)}  # together 10: "101"
    fine |= {300 + i: "9999" for i in range(3)}  # alone in the north: suppressed
    result = release(fine, scheme="pc4", k=10)
    assert result.sizes() == {"1011": 12, "101": 10}
    assert result.suppressed == frozenset({300, 301, 302})


def test_postcodes_lose_their_letters_and_nothing_finer_is_accepted():
    assert postcode_area("1234 ab") == "1234"
    assert postcode_area("1234AB") == "1234"
    for bad in ("0123 AB", "12345", "AB 1234", ""):
        with pytest.raises(LocationError, match="is not a Dutch postcode"):
            postcode_area(bad)
    with pytest.raises(LocationError, match="is not a 4-digit postcode area"):
        release({1: "1234AB"}, scheme="pc4")
    fine = h3.latlng_to_cell(52.37, 4.89, FINEST_H3_RESOLUTION + 1)
    with pytest.raises(LocationError, match="resolution 8 or coarser"):
        release({1: fine}, scheme="h3")
    with pytest.raises(LocationError, match="H3 resolution must be 5 to 8"):
        h3_cell(52.37, 4.89, resolution=9)
    with pytest.raises(LocationError, match="k must be at least 10"):
        release({}, scheme="pc4", k=5)


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("192.0.2.77", "192.0.2.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("::ffff:192.0.2.77", "192.0.2.0"),
    ],
)
def test_ip_addresses_are_masked_for_analytics(address: str, masked: str):
    assert mask_ip(address) == masked
