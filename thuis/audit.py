"""The audit trail: the one writer of the record of every read of someone else's personal data, and actions.

Whoever shows a person's data to anyone but that person (the portal to an installer, a resident or the
privacy officer; the privacy code for a request's details) records it here: who read, in which role, whose
data, which resource, on which ground (the installer's assignment) and what exactly. What someone does about
another person's data-subject request (the privacy officer starting, proposing, approving, completing or
refusing it; an owner filing for a resident) is recorded here as an action. The owner sees these records in
their access log, the privacy officer in the audit trail. No role may change or delete a record; retention
removes them after their period, and erasure of a person replaces their id by a pseudonym (migration 0013).
"""

from __future__ import annotations

from dataclasses import dataclass

from thuis import queries
from thuis.db import Connection


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads or acts: an account and the role it reads or acts in."""

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
        "read",
    )


async def record_action(
    conn: Connection,
    *,
    actor: Reader,
    subject_user_id: int,
    action: str,
    resource: str,
    detail: str | None = None,
) -> None:
    """Record that `actor` did `action` on `resource` concerning the data of `subject_user_id`."""
    await conn.execute(
        queries.INSERT_AUDIT_RECORD,
        actor.user_id,
        actor.role,
        subject_user_id,
        None,
        resource,
        None,
        detail,
        action,
    )
