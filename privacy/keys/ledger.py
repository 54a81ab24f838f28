"""The erasure ledger: a file outside the database, beside the keyring, of every erasure carried out.

A database backup made before an erasure still holds the subject's rows and wrapped data key, and today's
keyring opens them. The ledger is what the backup lacks: one JSON line per erasure (the entry's id, the
erased account's former id and creation time, when, and what a legal duty kept: no personal data),
appended and flushed to disk before the erasure commits, so that an erasure that committed is always in it.
The database records in `applied_erasures` which entries it holds as done (migration 0014). Every service
checks the two against each other when it starts (`require_erasures_applied`) and refuses a database that
lacks an entry (a restored backup: `thuis erasures reapply` erases again) or holds one the ledger lacks
(a ledger restored from an older copy than the database). The file is kept and backed up like the keyring:
mode 0600, outside the repository and apart from the database backups.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privacy.keys import queries
from thuis.db import Connection

log = logging.getLogger(__name__)

LEDGER_VERSION = 1
# An entry is appended just before its erasure commits; a service that starts in that moment must not take
# the erasure for missing. So what is missing is looked for once more after this long (an erasure commits
# within milliseconds of its entry); an entry whose erasure never committed (a crash) stays missing.
IN_FLIGHT_WAIT_S = 2.0


class LedgerError(Exception):
    """The ledger cannot be read or written: a malformed entry, or a file that cannot be opened."""


class ErasuresNotApplied(Exception):  # noqa: N818 - named for what it says about the database
    """The database and the ledger disagree: an erasure must be applied again, or the ledger restored."""


@dataclass(frozen=True)
class ErasureEntry:
    """One erasure carried out: which account, when, and what a legal duty kept (as moments, no data)."""

    entry_id: uuid.UUID
    subject_user_id: int
    subject_created_at: dt.datetime | None
    erased_at: dt.datetime
    # Contracts that ended at or after this moment, and orders made at or after that one, were kept.
    keep_contracts_ended_after: dt.datetime | None
    keep_orders_after: dt.datetime | None
    scope: str = "account, homes and everything derived"

    def to_line(self) -> str:
        """Return the entry as one line of JSON."""
        document: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "entry_id": str(self.entry_id),
            "subject_user_id": self.subject_user_id,
            "subject_created_at": _iso(self.subject_created_at),
            "erased_at": _iso(self.erased_at),
            "scope": self.scope,
            "keep_contracts_ended_after": _iso(self.keep_contracts_ended_after),
            "keep_orders_after": _iso(self.keep_orders_after),
        }
        return json.dumps(document, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str) -> ErasureEntry:
        """Read an entry written by `to_line`."""
        document = json.loads(line)
        if document.get("version") != LEDGER_VERSION:
            raise LedgerError(f"unknown ledger entry version {document.get('version')!r}")
        return cls(
            entry_id=uuid.UUID(document["entry_id"]),
            subject_user_id=int(document["subject_user_id"]),
            subject_created_at=_moment(document["subject_created_at"]),
            erased_at=_required(_moment(document["erased_at"])),
            keep_contracts_ended_after=_moment(document["keep_contracts_ended_after"]),
            keep_orders_after=_moment(document["keep_orders_after"]),
            scope=str(document["scope"]),
        )


class ErasureLedger:
    """The ledger file: appended under a lock and flushed to disk, read again whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[ErasureEntry] = []

    def entries(self) -> list[ErasureEntry]:
        """Return every entry, oldest first (none while the file does not exist yet)."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise LedgerError(f"cannot read the erasure ledger {self.path}: {err.strerror}") from None
        stamp = (status.st_mtime_ns, status.st_ino, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._entries = self._read()
                self._stamp = stamp
            return list(self._entries)

    def append(self, entry: ErasureEntry) -> None:
        """Add an entry and wait until it is on disk (the file, and the folder when the file is new)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as err:
            raise LedgerError(f"cannot write the erasure ledger {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # portal workers in several processes append one at a time
            _drop_torn_tail(fd, self.path)
            os.write(fd, entry.to_line().encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _read(self) -> list[ErasureEntry]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise LedgerError(f"cannot read the erasure ledger {self.path}: {err}") from None
        lines = text.split("\n")
        if lines[-1]:
            # A last line without its newline was being written when the writer stopped: its erasure never
            # committed (it commits only after the line is on disk), so it is not an entry.
            log.warning("the erasure ledger %s ends in an unfinished line; it is ignored", self.path)
        entries = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                entries.append(ErasureEntry.from_line(line))
            except (ValueError, KeyError, TypeError) as err:
                raise LedgerError(f"{self.path}, line {number}: not a ledger entry ({err})") from None
        return entries


async def applied_entry_ids(conn: Connection) -> set[uuid.UUID]:
    """Return the ids of the ledger's entries this database holds as done."""
    return {row["entry_id"] for row in await conn.fetch(queries.SELECT_APPLIED_ERASURES)}


async def require_erasures_applied(
    conn: Connection, ledger: ErasureLedger, *, in_flight_wait_s: float = IN_FLIGHT_WAIT_S
) -> None:
    """Refuse a database that lacks an erasure of the ledger, or holds one the ledger does not know."""
    entries = ledger.entries()
    applied = await applied_entry_ids(conn)
    missing = [entry for entry in entries if entry.entry_id not in applied]
    if missing:
        await asyncio.sleep(in_flight_wait_s)  # an erasure whose entry was just written may be committing
        applied = await applied_entry_ids(conn)
        missing = [entry for entry in missing if entry.entry_id not in applied]
    unknown = applied - {entry.entry_id for entry in entries}
    if missing:
        raise ErasuresNotApplied(
            f"{len(missing)} erasure(s) of the ledger {ledger.path} are not applied to this database "
            f"(the first: account {missing[0].subject_user_id}, erased {missing[0].erased_at:%Y-%m-%d %H:%M} "
            "UTC): it was restored from a backup made before them. Run `thuis erasures reapply` as the "
            "database owner before starting any service"
        )
    if unknown:
        raise ErasuresNotApplied(
            f"this database holds {len(unknown)} erasure(s) that the ledger {ledger.path} lacks: the ledger "
            "is older than the database (restored from an older copy, or the wrong file). Restore the "
            "ledger from its latest backup; a later restore of the database would otherwise not erase them"
        )


def _drop_torn_tail(fd: int, path: Path) -> None:
    """Cut an unfinished last line (a writer stopped mid-line), so the next entry starts on its own line."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    keep = data.rfind(b"\n") + 1
    log.warning("the erasure ledger %s ended in an unfinished line; it is cut off", path)
    os.ftruncate(fd, keep)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def _moment(text: object) -> dt.datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError("a moment must be an ISO 8601 string")
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def _required(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        raise ValueError("erased_at is missing")
    return moment
