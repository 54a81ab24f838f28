"""Opaque cursors for keyset pagination: the client passes back what the previous page returned."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from api.problems import Problem

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def encode_cursor(**position: Any) -> str:
    """Return a cursor for the position after the last item of a page."""
    values = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in position.items()}
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, fields: dict[str, type]) -> dict[str, Any] | None:
    """Return the position a cursor holds; refuse one this endpoint did not make (400)."""
    if cursor is None:
        return None
    try:
        position = _position(cursor, fields)
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        position = None
    if position is None:
        raise Problem(400, "query parameter cursor: not a cursor this endpoint returned")
    return position


def _position(cursor: str, fields: dict[str, type]) -> dict[str, Any] | None:
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if not isinstance(raw, dict) or set(raw) != set(fields):
        return None
    position = {
        name: dt.datetime.fromisoformat(raw[name]) if kind is dt.datetime else kind(raw[name])
        for name, kind in fields.items()
    }
    if any(isinstance(v, dt.datetime) and v.tzinfo is None for v in position.values()):
        return None
    return position
