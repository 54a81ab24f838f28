"""Webshop orders and marketing contacts, as the webshop and marketing integrations store them: sealed.

Each order and each contact has a data key of its own: an order is kept 7 years for the fiscal duty even
after its customer's account is erased, and a prospect's contact exists without any account.
"""

from __future__ import annotations

import datetime as dt
import json

from privacy.keys.crypto import Keyring, seal_json
from privacy.keys.fields import MARKETING_CONTACTS_CONTACT, WEBSHOP_ORDERS_CUSTOMER
from privacy.keys.subject_keys import create_key, reserve_row_key
from privacy.subjects import queries
from thuis.db import Connection


async def add_webshop_order(
    conn: Connection,
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
    key = await create_key(conn, keyring, scope="order")
    order_id = await reserve_row_key(conn, WEBSHOP_ORDERS_CUSTOMER)
    customer = {"delivery_address": delivery_address, "invoice_address": invoice_address, "phone": phone}
    sealed = seal_json(key.data_key, customer, context=WEBSHOP_ORDERS_CUSTOMER.at(order_id, key.key_id))
    await conn.execute(
        queries.INSERT_ORDER, order_id, ordered_at, json.dumps(products), customer_user_id, key.key_id, sealed
    )
    return order_id


async def add_marketing_contact(
    conn: Connection,
    keyring: Keyring,
    *,
    email: str,
    name: str | None,
    last_activity_at: dt.datetime,
) -> int:
    """Store a prospect's contact; the email and name are sealed, the email found by its keyed hash."""
    key = await create_key(conn, keyring, scope="marketing")
    contact_id = await reserve_row_key(conn, MARKETING_CONTACTS_CONTACT)
    bound = MARKETING_CONTACTS_CONTACT.at(contact_id, key.key_id)
    sealed = seal_json(key.data_key, {"email": email, "name": name}, context=bound)
    await conn.execute(
        queries.INSERT_CONTACT, contact_id, last_activity_at, keyring.email_hash(email), key.key_id, sealed
    )
    return contact_id
