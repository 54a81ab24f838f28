"""Parameters many routes share: ids that fit a bigint, so an out-of-range one is a 422, never a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
