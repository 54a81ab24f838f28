"""A site's address: the precise part is sealed with the owner's key, the coarse cells stay in the clear."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from privacy.location import LocationError, h3_cell, postcode_area

_POSTCODE6 = re.compile(r"([1-9][0-9]{3}) ?([A-Z]{2})")


@dataclass(frozen=True)
class Address:
    """Where a site is. Any part may be missing; a postcode or a coordinate gives the coarse cells."""

    street: str | None = None
    house_number: str | None = None
    postcode: str | None = None  # "1234 AB"
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    def __post_init__(self) -> None:
        if self.postcode is not None and _POSTCODE6.fullmatch(self.postcode.strip().upper()) is None:
            raise LocationError(f"{self.postcode!r} is not a Dutch postcode like '1234 AB'")
        if (self.latitude is None) != (self.longitude is None):
            raise LocationError("give both latitude and longitude, or neither")

    def normalised(self) -> Address:
        """Return the address with the postcode written as '1234 AB'."""
        if self.postcode is None:
            return self
        match = _POSTCODE6.fullmatch(self.postcode.strip().upper())
        if match is None:  # checked in __post_init__ already
            raise LocationError(f"{self.postcode!r} is not a Dutch postcode like '1234 AB'")
        return Address(**{**asdict(self), "postcode": f"{match[1]} {match[2]}"})

    def postcode_area(self) -> str | None:
        """Return the 4-digit postcode area, the only part of the postcode kept in the clear."""
        return None if self.postcode is None else postcode_area(self.postcode)

    def h3_cell(self) -> str | None:
        """Return the H3 cell of resolution 7 the coordinates fall in."""
        if self.latitude is None or self.longitude is None:
            return None
        return h3_cell(self.latitude, self.longitude)

    def document(self) -> dict[str, Any]:
        """Return the address as the JSON document that is sealed."""
        return asdict(self.normalised())

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Address:
        """Return the address a sealed document held."""
        return cls(**{name: document.get(name) for name in cls.__dataclass_fields__})
