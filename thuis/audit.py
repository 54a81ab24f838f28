"""The audit trail: the one writer of the record of every read of someone else's personal data.

Whoever shows a person's data to anyone but that person (the portal to an installer, a resident or the
privacy officer; the privacy code for a request's details or an access export) records it here: who read,
in which role, whose data, which resource, on which ground (the installer's assignment) and what exactly.
The owner sees these records in their access log, the privacy officer in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from thuis import queries
from thuis.db import Connection


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: an account and the role it reads in."""

    user_id: int
    role: str


async def record_read(
    conn: Connection,
    *,
    reader: Reader,
    subject_user_id: int | None,
    resource: str,
    site_id: int | None = None,
    assignment_id: int | None = None,
    detail: str | None = None,
) -> None:
    """Record that `reader` was shown `resource` of the data of `subject_user_id` (or of a site)."""
    await conn.execute(
        queries.INSERT_AUDIT_RECORD,
        reader.user_id,
        reader.role,
        subject_user_id,
        site_id,
        resource,
        assignment_id,
        detail,
    )
