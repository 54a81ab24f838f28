"""Erasure at a data subject's request: crypto-shredding plus deletion, except what a legal duty keeps.

The catalogue says which categories a legal duty keeps on erasure (`on_erasure = "keep_for_legal_duty"`)
and for how long; everything else of the subject goes in one transaction of `erase_data_subject` (migrations
0008, 0010, 0011, 0013): the homes only they ever owned with every reading and everything derived, and of
homes others owned too what falls in the subject's own periods (and nothing of the other owners'); their
account and its data key, sessions, preferences, sign-ins, consent records and grants. What is kept is named
with its legal basis and the day its period ends; retention removes it then. The audit trail and their
requests stay for their period (`on_erasure = "pseudonymise"`), with a random pseudonym in place of their id
and no detail that could name them: who read or acted on their data, and when, remains on record.

Every erasure is written to the erasure ledger (privacy/keys/ledger.py) before it commits, and recorded as
applied in the database in the same transaction; `reapply_erasures` erases again, after a restore, whoever
a backup brought back, with the same function and the cutoffs of the first erasure. Erasing the homes'
gateways queues their certificates for revocation (migration 0014).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import asyncpg

from privacy.keys.ledger import ErasureEntry, ErasureLedger, applied_entry_ids
from privacy.subjects import queries
from thuis.catalogue import MEASURED_FROM, Catalogue, Category
from thuis.db import Connection

log = logging.getLogger(__name__)

# The categories erase_data_subject can keep, and the table whose rows it keeps.
KEEPABLE = {"billing_records": "contracts", "webshop_orders": "webshop_orders"}


class ErasureError(Exception):
    """Erasure cannot be done as asked (no such subject, or the catalogue asks for what the code cannot)."""


@dataclass(frozen=True)
class Kept:
    """Records of a category a legal duty keeps after erasure, and until when."""

    category: str
    name: str
    rows: int
    legal_basis: str
    until: dt.date | None  # None: the period has not started (a contract that still runs)


@dataclass(frozen=True)
class ErasureResult:
    """What erasure removed (rows per table) and what it kept, with the reason."""

    removed: dict[str, int]
    kept: list[Kept]
    pseudonymised: list[Category] = field(default_factory=list)

    def pseudonymised_note(self) -> str | None:
        """Return what stays under a pseudonym, in words for the subject, or None."""
        if not self.pseudonymised:
            return None
        parts = [
            f"{category.name.lower()} ({category.keep_text} from {MEASURED_FROM[category.measured_from]})"
            for category in self.pseudonymised
        ]
        return (
            "kept with a pseudonym in place of your name, for accountability (GDPR art. 5(2)): "
            + "; ".join(parts)
        )

    def refusal(self) -> str | None:
        """Return the reason some data stays, in words for the subject, or None when everything went."""
        if not self.kept:
            return None
        parts = []
        for kept in self.kept:
            until = (
                f"until {kept.until.isoformat()}"
                if kept.until is not None
                else "until 7 years after the contract ends"
            )
            parts.append(f"{kept.name} ({kept.rows}) are kept {until}: {kept.legal_basis}")
        return "erasure refused in part, as the law requires: " + "; ".join(parts)


def legal_duty_cutoffs(catalogue: Catalogue, *, now: dt.datetime) -> dict[str, dt.datetime]:
    """Return, per keepable category, the moment from which its records are still under a legal duty."""
    cutoffs = {}
    for category in catalogue.categories:
        if category.on_erasure != "keep_for_legal_duty":
            continue
        if category.id not in KEEPABLE or category.keep is None:
            raise ErasureError(
                f"the catalogue keeps {category.id!r} for a legal duty on erasure, which erasure cannot yet"
            )
        cutoffs[category.id] = category.keep.before(now)
    return cutoffs


async def erase_subject(
    conn: Connection,
    catalogue: Catalogue,
    ledger: ErasureLedger,
    *,
    user_id: int,
    now: dt.datetime | None = None,
) -> ErasureResult:
    """Erase a data subject in one transaction; return what went and what a legal duty keeps.

    The ledger entry is on disk before the transaction commits (the caller's, when it runs inside one):
    if the erasure committed, the ledger has it. If the commit then fails, the ledger holds an erasure the
    database lacks, and the services refuse to start until `thuis erasures reapply` has carried it out.
    """
    now = now or dt.datetime.now(dt.UTC)
    cutoffs = legal_duty_cutoffs(catalogue, now=now)
    categories = {category.id: category for category in catalogue.categories}
    async with conn.transaction():
        subject = await conn.fetchrow(queries.SELECT_SUBJECT, user_id)
        if subject is None:
            raise ErasureError(f"there is no account {user_id}")
        kept = await _kept(conn, categories, cutoffs, user_id=user_id)
        entry = ErasureEntry(
            entry_id=uuid.uuid4(),
            subject_user_id=user_id,
            subject_created_at=subject["created_at"],
            erased_at=now,
            keep_contracts_ended_after=cutoffs.get("billing_records"),
            keep_orders_after=cutoffs.get("webshop_orders"),
        )
        rows = await _erase(conn, entry, applied_by="erasure")
        await asyncio.to_thread(ledger.append, entry)
    pseudonymised = [c for c in catalogue.categories if c.on_erasure == "pseudonymise"]
    return ErasureResult({row["table_name"]: row["rows_removed"] for row in rows}, kept, pseudonymised)


@dataclass(frozen=True)
class Reapplied:
    """An entry of the ledger carried out again on a restored database, and what that found."""

    entry: ErasureEntry
    outcome: str  # "erased again", "not in this database", "another account holds the id now"


async def reapply_erasures(conn: Connection, ledger: ErasureLedger) -> list[Reapplied]:
    """Carry out again every erasure of the ledger this database does not hold as done (a restore).

    Each in its own transaction, as the database owner. An account is erased again only if it is the one
    erased: same id and same creation time; a restored database may have given the id to someone else.
    """
    applied = await applied_entry_ids(conn)
    done = []
    for entry in ledger.entries():
        if entry.entry_id in applied:
            continue
        async with conn.transaction():
            subject = await conn.fetchrow(queries.SELECT_SUBJECT, entry.subject_user_id)
            if subject is None:
                outcome = "not in this database"
                await _record(conn, entry, applied_by="reapply")
            elif subject["created_at"] != entry.subject_created_at:
                outcome = "another account holds the id now; it is left alone"
                await _record(conn, entry, applied_by="reapply")
            else:
                await _erase(conn, entry, applied_by="reapply")
                outcome = "erased again"
        log.info("erasure %s of account %d: %s", entry.entry_id, entry.subject_user_id, outcome)
        done.append(Reapplied(entry, outcome))
    return done


async def _erase(conn: Connection, entry: ErasureEntry, *, applied_by: str) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        queries.ERASE, entry.subject_user_id, entry.keep_contracts_ended_after, entry.keep_orders_after
    )
    await _record(conn, entry, applied_by=applied_by)
    return list(rows)


async def _record(conn: Connection, entry: ErasureEntry, *, applied_by: str) -> None:
    await conn.execute(
        queries.INSERT_APPLIED_ERASURE,
        entry.entry_id,
        entry.subject_user_id,
        entry.subject_created_at,
        entry.erased_at,
        applied_by,
    )


async def _kept(
    conn: Connection, categories: dict[str, Category], cutoffs: dict[str, dt.datetime], *, user_id: int
) -> list[Kept]:
    kept = []
    if "billing_records" in cutoffs:
        contracts = await conn.fetch(queries.SELECT_KEPT_CONTRACTS, user_id, cutoffs["billing_records"])
        if contracts:
            category = categories["billing_records"]
            ends = [row["ended_at"] for row in contracts]
            until = None if None in ends else _until(category, max(ends))
            kept.append(Kept(category.id, category.name, len(contracts), category.legal_basis, until))
    if "webshop_orders" in cutoffs:
        orders = await conn.fetch(queries.SELECT_KEPT_ORDERS, user_id, cutoffs["webshop_orders"])
        if orders:
            category = categories["webshop_orders"]
            until = _until(category, max(row["ordered_at"] for row in orders))
            kept.append(Kept(category.id, category.name, len(orders), category.legal_basis, until))
    return kept


def _until(category: Category, moment: dt.datetime) -> dt.date:
    """Return the day a record counted from `moment` leaves its period."""
    if category.keep is None:
        raise ErasureError(f"{category.id} is kept indefinitely")
    return category.keep.after(moment).date()
