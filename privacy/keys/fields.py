"""Sealed personal fields: the context each column is bound to, and opening and sealing a value."""

from __future__ import annotations

from typing import Any

from privacy.keys.crypto import open_json, open_sealed, seal

# The context each sealed column is bound to: a value cannot be moved to another column and still open.
USERS_EMAIL = "users.email"
USERS_TOTP_SECRET = "users.totp_secret"  # noqa: S105 - a column name, not a secret
CONTRACTS_HOLDER = "contracts.holder"
SITES_ADDRESS = "sites.address"
WEBSHOP_ORDERS_CUSTOMER = "webshop_orders.customer"
MARKETING_CONTACTS_CONTACT = "marketing_contacts.contact"
SUBJECT_REQUESTS_DETAILS = "subject_requests.details"
EMAIL_CHANGES_EMAIL = "email_changes.email"
MAIL_OUTBOX_MESSAGE = "mail_outbox.message"
CONTEXTS = (
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


def open_text(key: bytes, sealed: bytes | None, *, context: str) -> str | None:
    """Return a sealed text field in the clear (None stays None)."""
    return None if sealed is None else open_sealed(key, bytes(sealed), context=context)


def open_document(key: bytes, sealed: bytes | None, *, context: str) -> dict[str, Any]:
    """Return a sealed JSON document in the clear ({} for none)."""
    return {} if sealed is None else open_json(key, bytes(sealed), context=context)


def seal_text(key: bytes, value: str | None, *, context: str) -> bytes | None:
    """Seal a text field (None stays None)."""
    return None if value is None else seal(key, value, context=context)
