"""What a data-subject request is: the request as stored, its trail, who acts on it, and refusals."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

# A completed access request's export can be downloaded this long; after that, a new request makes a new one.
DOWNLOAD_PERIOD = dt.timedelta(days=30)


class RequestRefused(Exception):  # noqa: N818 - it is a refusal, answered with its HTTP status
    """The request cannot be filed or changed as asked; `status` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Actor:
    """Who files or works a request."""

    user_id: int
    username: str
    role: str


@dataclass(frozen=True)
class TrailEntry:
    """One change of a request: when, by whom (None once that account is erased), to which status, why."""

    at: dt.datetime
    actor_user_id: int | None
    role: str
    status: str
    note: str | None


@dataclass(frozen=True)
class SubjectRequest:
    """A data-subject request as stored, with its sealed details opened (None once the key is gone)."""

    request_id: int
    kind: str
    subject_user_id: int | None  # None once the subject was erased
    subject_username: str | None
    subject_role: str | None
    filed_by_user_id: int | None
    filed_by_username: str | None
    received_at: dt.datetime
    due_at: dt.datetime
    status: str
    closed_at: dt.datetime | None
    details: dict[str, Any]
    personal_details: dict[str, Any] | None
    outcome: str | None
    trail: list[TrailEntry]
    # Four eyes on erasure: the privacy officer who proposed completing it and the second who approved it.
    proposed_by_user_id: int | None = None
    proposed_by_username: str | None = None
    proposed_at: dt.datetime | None = None
    approved_by_user_id: int | None = None
    approved_by_username: str | None = None
    approved_at: dt.datetime | None = None
    subject_pseudonym: str | None = None  # set when the subject was erased: their audit records carry it

    def days_left(self, now: dt.datetime) -> int:
        """Return the days until the request is due, rounded up; negative once overdue."""
        return math.ceil((self.due_at - now) / dt.timedelta(days=1))

    def overdue(self, now: dt.datetime) -> bool:
        """Say whether the request is still open past its due date."""
        return self.closed_at is None and now > self.due_at

    def may_see(self, actor: Actor) -> bool:
        """Say whether someone may see the request: its subject, who filed it, the privacy officer."""
        return actor.role == "privacy_officer" or actor.user_id in (
            self.subject_user_id,
            self.filed_by_user_id,
        )

    def may_download(self, actor: Actor) -> bool:
        """Say whether someone may download the request's access export: its subject, and no one else."""
        return self.subject_user_id is not None and actor.user_id == self.subject_user_id

    def download_until(self) -> dt.datetime | None:
        """Return until when a completed access request's export can be downloaded."""
        if self.kind != "access" or self.status != "completed" or self.closed_at is None:
            return None
        return self.closed_at + DOWNLOAD_PERIOD
