"""Webshop orders and marketing contacts, as the webshop and marketing integrations store them: sealed.

Each order and each contact has a data key of its own: an order is kept 7 years for the fiscal duty even
after its customer's account is erased, and a prospect's contact exists without any account.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg

from privacy.keys.crypto import Keyring, seal_json
from privacy.keys.fields import MARKETING_CONTACTS_CONTACT, WEBSHOP_ORDERS_CUSTOMER
from privacy.keys.subject_keys import create_key

INSERT_ORDER = """
INSERT INTO webshop_orders (ordered_at, products, customer_user_id, key_id, customer_ciphertext)
VALUES (%s, %s, %s, %s, %s)
RETURNING order_id
"""
INSERT_CONTACT = """
INSERT INTO marketing_contacts (last_activity_at, email_hash, key_id, contact_ciphertext)
VALUES (%s, %s, %s, %s)
RETURNING contact_id
"""


def add_webshop_order(
    conn: psycopg.Connection[Any],
    keyring: Keyring,
    *,
    ordered_at: dt.datetime,
    products: list[str],
    customer_user_id: int | None,
    delivery_address: str | None,
    invoice_address: str | None,
    phone: str | None,
) -> int:
    """Store an order; the delivery and invoice address and the phone number are sealed."""
    key = create_key(conn, keyring, scope="order")
    customer = {"delivery_address": delivery_address, "invoice_address": invoice_address, "phone": phone}
    sealed = seal_json(key.data_key, customer, context=WEBSHOP_ORDERS_CUSTOMER)
    row = conn.execute(
        INSERT_ORDER, (ordered_at, json.dumps(products), customer_user_id, key.key_id, sealed)
    ).fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return int(row[0])


def add_marketing_contact(
    conn: psycopg.Connection[Any],
    keyring: Keyring,
    *,
    email: str,
    name: str | None,
    last_activity_at: dt.datetime,
) -> int:
    """Store a prospect's contact; the email and name are sealed, the email found by its keyed hash."""
    key = create_key(conn, keyring, scope="marketing")
    sealed = seal_json(key.data_key, {"email": email, "name": name}, context=MARKETING_CONTACTS_CONTACT)
    row = conn.execute(
        INSERT_CONTACT, (last_activity_at, keyring.email_hash(email), key.key_id, sealed)
    ).fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return int(row[0])
