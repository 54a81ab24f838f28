"""Sealed personal fields: the columns that hold them, what binds each value, opening and sealing one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from privacy.keys.crypto import FieldContext, open_json, open_sealed, seal


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values (`<name>_ciphertext`), the column of its row key and of its key id."""

    table: str
    name: str
    row_key: str  # the primary key column: a value is bound to its row
    # The column holding the id of the data key that seals it. A table sealed with its account's key and
    # holding no key id of its own (email_changes, mail_outbox) reads users.key_id: its queries join it.
    key: str

    @property
    def ciphertext(self) -> str:
        """Return the name of the column that stores the sealed value."""
        return f"{self.name}_ciphertext"

    def at(self, row_key: int, key_id: int) -> FieldContext:
        """Return what a value of this column in this row, under this data key, is bound to."""
        return FieldContext(self.table, self.name, int(row_key), int(key_id))

    def __str__(self) -> str:
        return f"{self.table}.{self.name}"


# Every sealed column: a value opens only in its own table, column and row, under its own key id.
USERS_EMAIL = SealedColumn("users", "email", "user_id", "key_id")
USERS_TOTP_SECRET = SealedColumn("users", "totp_secret", "user_id", "key_id")
CONTRACTS_HOLDER = SealedColumn("contracts", "holder", "contract_id", "key_id")
SITES_ADDRESS = SealedColumn("sites", "address", "site_id", "address_key_id")
WEBSHOP_ORDERS_CUSTOMER = SealedColumn("webshop_orders", "customer", "order_id", "key_id")
MARKETING_CONTACTS_CONTACT = SealedColumn("marketing_contacts", "contact", "contact_id", "key_id")
SUBJECT_REQUESTS_DETAILS = SealedColumn("subject_requests", "details", "request_id", "details_key_id")
# A requested address, one per account (its row key is the account's id), and mail waiting to be sent.
EMAIL_CHANGES_EMAIL = SealedColumn("email_changes", "email", "user_id", "key_id")
MAIL_OUTBOX_MESSAGE = SealedColumn("mail_outbox", "message", "message_id", "key_id")
SEALED_COLUMNS = (
    USERS_EMAIL,
    USERS_TOTP_SECRET,
    CONTRACTS_HOLDER,
    SITES_ADDRESS,
    WEBSHOP_ORDERS_CUSTOMER,
    MARKETING_CONTACTS_CONTACT,
    SUBJECT_REQUESTS_DETAILS,
    EMAIL_CHANGES_EMAIL,
    MAIL_OUTBOX_MESSAGE,
)
# The fields of a contract holder's sealed document (contracts.holder_ciphertext).
CONTRACT_HOLDER_FIELDS = (
    "holder_name",
    "initials",
    "street_address",
    "postcode",
    "city",
    "email",
    "bank_account",
)


def open_text(key: bytes, sealed: bytes | None, *, context: FieldContext) -> str | None:
    """Return a sealed text field in the clear (None stays None)."""
    return None if sealed is None else open_sealed(key, bytes(sealed), context=context)


def open_document(key: bytes, sealed: bytes | None, *, context: FieldContext) -> dict[str, Any]:
    """Return a sealed JSON document in the clear ({} for none)."""
    return {} if sealed is None else open_json(key, bytes(sealed), context=context)


def seal_text(key: bytes, value: str | None, *, context: FieldContext) -> bytes | None:
    """Seal a text field (None stays None)."""
    return None if value is None else seal(key, value, context=context)
