"""The access export: a ZIP of everything Thuis holds about one data subject, streamed as it is made.

For every personal category of the catalogue there is `<category>.json` (machine-readable, the subject's
rows per table) and `<category>.csv` (one row per record, a `table` column first), empty where Thuis holds
nothing of the subject in it; `recipients.json` says who the data was shared with and why; `README.txt`
and `manifest.json` explain the categories with their retention and legal basis. The rows are read in one
read-only snapshot through server-side cursors, a batch at a time, and the ZIP is written to an unseekable
stream that is emptied after every batch, so memory stays bounded however many readings there are.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import ipaddress
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from privacy.keys.crypto import DecryptionError, Keyring
from privacy.keys.fields import (
    CONTRACTS_HOLDER,
    EMAIL_CHANGES_EMAIL,
    MAIL_OUTBOX_MESSAGE,
    MARKETING_CONTACTS_CONTACT,
    SITES_ADDRESS,
    SUBJECT_REQUESTS_DETAILS,
    USERS_EMAIL,
    WEBSHOP_ORDERS_CUSTOMER,
    SealedColumn,
    open_document,
    open_text,
)
from privacy.keys.subject_keys import SubjectKeyError, load_key
from privacy.subjects import access_export_queries as q
from privacy.subjects.purposes import INSTALLER_PURPOSE, PURPOSES_AND_RECIPIENTS, RESIDENT_PURPOSE
from thuis.catalogue import Catalogue, Category
from thuis.db import Connection

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

BATCH_ROWS = 5000  # rows per cursor fetch and per write to the ZIP: a few hundred kB at most
NOT_SHOWN = "set (not shown)"
UNREADABLE = "unreadable: its key was destroyed"


class ExportError(Exception):
    """The export cannot be made (the subject no longer exists)."""


@dataclass(frozen=True)
class ExportSubject:
    """Whom the export is about, their homes (as windows of time) and the keys that open their fields."""

    user_id: int
    username: str
    role: str
    key_id: int
    email_hash: bytes | None
    # (site, since, until, owned): each period they owned a home, each time an accepted grant held
    windows: tuple[tuple[int, dt.datetime | None, dt.datetime | None, bool], ...]
    keys: dict[int, bytes]


class _Sink(io.RawIOBase):
    """An unseekable stream the ZIP is written to; what it holds is taken out after every batch."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def load_subject(conn: Connection, keyring: Keyring, *, user_id: int) -> ExportSubject:
    """Return the subject with their homes and unwrapped data keys."""
    row = await conn.fetchrow(q.SELECT_SUBJECT, user_id)
    if row is None:
        raise ExportError(f"there is no account {user_id}")
    windows = await conn.fetch(q.SELECT_WINDOWS, user_id)
    keys = {}
    for key_row in await conn.fetch(q.SELECT_KEY_IDS, user_id, row["email_hash"]):
        try:
            keys[key_row["key_id"]] = await load_key(conn, keyring, key_row["key_id"])
        except SubjectKeyError:
            continue
    return ExportSubject(
        user_id=user_id,
        username=row["username"],
        role=row["role"],
        key_id=row["key_id"],
        email_hash=bytes(row["email_hash"]) if row["email_hash"] is not None else None,
        windows=tuple((w["site_id"], w["since"], w["until"], w["owned"]) for w in windows),
        keys=keys,
    )


async def access_export(
    conn: Connection, keyring: Keyring, catalogue: Catalogue, *, user_id: int, request_id: int
) -> AsyncIterator[bytes]:
    """Yield the ZIP of everything held about a subject, a batch at a time, from one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        subject = await load_subject(conn, keyring, user_id=user_id)
        writer = _ZipWriter(conn, subject, generated_at=dt.datetime.now(dt.UTC))
        async for chunk in writer.chunks(catalogue, request_id=request_id):
            if chunk:
                yield chunk


class _ZipWriter:
    def __init__(self, conn: Connection, subject: ExportSubject, *, generated_at: dt.datetime) -> None:
        self.conn = conn
        self.subject = subject
        self.generated_at = generated_at
        self.sink = _Sink()
        self.zip = zipfile.ZipFile(self.sink, mode="w", compression=zipfile.ZIP_DEFLATED)

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self.generated_at.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def _small_file(self, name: str, data: bytes) -> bytes:
        self.zip.writestr(self._info(name), data)
        return self.sink.take()

    async def chunks(self, catalogue: Catalogue, *, request_id: int) -> AsyncIterator[bytes]:
        categories = [category for category in catalogue.categories if category.personal]
        yield self._small_file("README.txt", _readme(self.subject, categories, request_id, self.generated_at))
        counts: dict[str, dict[str, int]] = {}
        for category in categories:
            counts[category.id] = {}
            async for chunk in self._category_json(category, counts[category.id]):
                yield chunk
            async for chunk in self._category_csv(category):
                yield chunk
        async for chunk in self._recipients():
            yield chunk
        manifest = _manifest(self.subject, categories, counts, request_id, self.generated_at)
        yield self._small_file("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        self.zip.close()
        yield self.sink.take()

    async def _batches(self, export: q.TableExport) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the subject's rows of a table, opened, a batch at a time from a server-side cursor."""
        batch: list[dict[str, Any]] = []
        async for record in self.conn.cursor(export.query, *self._args(export), prefetch=BATCH_ROWS):
            batch.append(_opened(export, record, self.subject))
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch

    def _args(self, export: q.TableExport) -> list[Any]:
        args: list[Any] = []
        for param in export.params:
            if param == "windows":
                args += [[window[part] for window in self.subject.windows] for part in range(4)]
            else:
                args.append(
                    {
                        "user_id": self.subject.user_id,
                        "username": self.subject.username,
                        "email_hash": self.subject.email_hash,
                    }[param]
                )
        return args

    async def _category_json(self, category: Category, counts: dict[str, int]) -> AsyncIterator[bytes]:
        header = {"category": category.id, "name": category.name, "subject": self.subject.username}
        notes = [q.TABLES[t].note for t in category.tables if t in q.TABLES and q.TABLES[t].note]
        if notes:
            header["note"] = "; ".join(note for note in notes if note)
        with self.zip.open(self._info(f"{category.id}.json"), mode="w", force_zip64=True) as entry:
            entry.write(orjson.dumps(header)[:-1] + b',"tables":{')
            for index, table in enumerate(category.tables):
                entry.write((b"," if index else b"") + orjson.dumps(table) + b":[")
                counts[table] = 0
                export = q.TABLES.get(table)
                if export is not None:
                    async for batch in self._batches(export):
                        separator = b"," if counts[table] else b""
                        entry.write(separator + b",".join(_json(row) for row in batch))
                        counts[table] += len(batch)
                        yield self.sink.take()
                entry.write(b"]")
            entry.write(b"}}")
        yield self.sink.take()

    async def _category_csv(self, category: Category) -> AsyncIterator[bytes]:
        columns: list[str] = []
        for table in category.tables:
            export = q.TABLES.get(table)
            columns += [c for c in (export.columns if export else ()) if c not in columns]
        with self.zip.open(self._info(f"{category.id}.csv"), mode="w", force_zip64=True) as entry:
            entry.write(_csv_rows([["table", *columns]]))
            for table in category.tables:
                export = q.TABLES.get(table)
                if export is None:
                    continue
                async for batch in self._batches(export):
                    entry.write(_csv_rows([[table, *(_csv(row.get(c)) for c in columns)] for row in batch]))
                    yield self.sink.take()
        yield self.sink.take()

    async def _recipients(self) -> AsyncIterator[bytes]:
        """Write recipients.json: purposes and recipients, installers assigned, residents granted, reads."""
        header = {
            "subject": self.subject.username,
            "purposes_and_recipients": list(PURPOSES_AND_RECIPIENTS),
        }
        sections = (
            ("installer_assignments", q.TABLES["installer_assignments"], INSTALLER_PURPOSE),
            ("resident_grants", q.TABLES["resident_grants"], RESIDENT_PURPOSE),
            ("reads", q.TableExport("audit_records", q.READ_COLUMNS, q.SELECT_READS, ("user_id",)), None),
        )
        with self.zip.open(self._info("recipients.json"), mode="w", force_zip64=True) as entry:
            entry.write(orjson.dumps(header)[:-1])
            for name, export, purpose in sections:
                entry.write(b"," + orjson.dumps(name) + b":[")
                written = 0
                async for batch in self._batches(export):
                    rows = [{**row, "purpose": purpose} if purpose else row for row in batch]
                    entry.write((b"," if written else b"") + b",".join(_json(row) for row in rows))
                    written += len(rows)
                    yield self.sink.take()
                entry.write(b"]")
            entry.write(b"}")
        yield self.sink.take()


def _opened(export: q.TableExport, record: asyncpg.Record, subject: ExportSubject) -> dict[str, Any]:
    """Return a row with its sealed fields opened (or marked not shown), in the export's columns."""
    values = dict(record)
    opener = _OPENERS.get(export.table)
    if opener is not None:
        opener(values, subject)
    for column in q.JSON_COLUMNS & values.keys():
        if isinstance(values[column], str):
            values[column] = json.loads(values[column])
    return {column: values.get(column) for column in export.columns}


def _open(values: dict[str, Any], subject: ExportSubject, column: SealedColumn) -> dict[str, Any]:
    """Open a row's sealed document with the subject's key, bound to its row; mark what does not open."""
    sealed, key_id = values[column.ciphertext], values[column.key]
    key = subject.keys.get(key_id) if key_id is not None else None
    if sealed is None:
        return {}
    if key is None:
        return {"unreadable": UNREADABLE}
    try:
        return open_document(key, sealed, context=column.at(values[column.row_key], key_id))
    except DecryptionError:
        return {"unreadable": UNREADABLE}


def _open_user(values: dict[str, Any], subject: ExportSubject) -> None:
    key = subject.keys.get(values["key_id"])
    sealed = values["email_ciphertext"]
    try:
        bound = USERS_EMAIL.at(values["user_id"], values["key_id"])
        values["email"] = open_text(key, sealed, context=bound) if key else (UNREADABLE if sealed else None)
    except DecryptionError:
        values["email"] = UNREADABLE
    values["password"] = NOT_SHOWN
    values["totp_secret"] = NOT_SHOWN if values["totp_secret_set"] else None


def _open_contract(values: dict[str, Any], subject: ExportSubject) -> None:
    values.update(_open(values, subject, CONTRACTS_HOLDER))


def _open_site(values: dict[str, Any], subject: ExportSubject) -> None:
    # A home's precise address is the owner's: sealed with their key, shown only in the owner's export.
    if values["owner_user_id"] == subject.user_id and values["address_key_id"] == subject.key_id:
        values.update(_open(values, subject, SITES_ADDRESS))


def _open_order(values: dict[str, Any], subject: ExportSubject) -> None:
    values["customer"] = _open(values, subject, WEBSHOP_ORDERS_CUSTOMER)


def _open_marketing_contact(values: dict[str, Any], subject: ExportSubject) -> None:
    values.update(_open(values, subject, MARKETING_CONTACTS_CONTACT))


def _open_email_change(values: dict[str, Any], subject: ExportSubject) -> None:
    key = subject.keys.get(values["key_id"])
    try:
        bound = EMAIL_CHANGES_EMAIL.at(values["user_id"], values["key_id"])
        values["email"] = open_text(key, values["email_ciphertext"], context=bound) if key else UNREADABLE
    except DecryptionError:
        values["email"] = UNREADABLE


def _open_mail(values: dict[str, Any], subject: ExportSubject) -> None:
    message = _open(values, subject, MAIL_OUTBOX_MESSAGE)
    values.update({"to": message.get("to", UNREADABLE), "subject": message.get("subject", UNREADABLE)})


def _open_request(values: dict[str, Any], subject: ExportSubject) -> None:
    sealed = values["details_ciphertext"]
    values["personal_details"] = _open(values, subject, SUBJECT_REQUESTS_DETAILS) if sealed else None


_OPENERS = {
    "users": _open_user,
    "contracts": _open_contract,
    "sites": _open_site,
    "webshop_orders": _open_order,
    "marketing_contacts": _open_marketing_contact,
    "subject_requests": _open_request,
    "email_changes": _open_email_change,
    "mail_outbox": _open_mail,
}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network
        | ipaddress.IPv4Interface
        | ipaddress.IPv6Interface,
    ):
        return str(
            value.ip if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface) else value
        )
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} to the export")


def _json(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=_plain)


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_plain).decode()
    if isinstance(value, str | int | float):
        return str(value)
    return str(_plain(value))


def _csv_rows(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def _readme(subject: ExportSubject, categories: list[Category], request_id: int, at: dt.datetime) -> bytes:
    lines = [
        f"Thuis: everything held about {subject.username}",
        f"Made {at.isoformat(timespec='seconds')} for data-subject request {request_id}.",
        "",
        "Each data category has two files with the same rows: <category>.json (machine-readable, the rows",
        "per table) and <category>.csv (for a spreadsheet; the first column names the table). A category",
        "with nothing about you still has both files, empty. recipients.json says who your data was shared",
        "with and why: the purposes and recipients of the privacy statement, the installers assigned to your",
        "homes, the residents you let read them, and every recorded read of your data by someone else.",
        "manifest.json lists every file with its number of rows, retention period and legal basis.",
        "Passwords and two-factor secrets are shown as 'set (not shown)'; they are yours, but a copy of",
        "them would let anyone sign in as you.",
        "",
        "Categories:",
    ]
    for category in categories:
        lines += [
            "",
            f"{category.id}: {category.name}",
            f"  What: {category.examples}",
            f"  Kept: {category.keep_text}"
            + (
                f" (the law requires at least {category.legal_minimum_text})"
                if category.legal_minimum
                else ""
            ),
            f"  Why: {category.legal_basis}",
        ]
    return ("\n".join(lines) + "\n").encode()


def _manifest(
    subject: ExportSubject,
    categories: list[Category],
    counts: dict[str, dict[str, int]],
    request_id: int,
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "subject": subject.username,
        "request_id": request_id,
        "generated_at": at.isoformat(),
        "files": ["README.txt", "recipients.json", "manifest.json"]
        + [f"{category.id}.{suffix}" for category in categories for suffix in ("json", "csv")],
        "categories": [
            {
                "id": category.id,
                "name": category.name,
                "examples": category.examples,
                "files": [f"{category.id}.json", f"{category.id}.csv"],
                "rows": counts.get(category.id, {}),
                "keep": category.keep_text,
                "measured_from": category.measured_from,
                "legal_minimum": category.legal_minimum_text,
                "legal_basis": category.legal_basis,
                "source": category.source,
                "on_erasure": category.on_erasure,
            }
            for category in categories
        ],
    }
