"""Mail to an account's holder: the link confirming a new address, and notices of security changes.

A message is sealed with the account's data key and written to the outbox on the caller's connection, so
it commits (or not) with the change it tells of; api/outbox.py sends it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from api.queries import mail as queries
from privacy.keys.crypto import seal_json
from privacy.keys.fields import MAIL_OUTBOX_MESSAGE
from privacy.keys.subject_keys import reserve_row_key
from thuis.db import Connection

# Times in mail are written as the portal shows them by default; the UTC instant stands beside them.
SHOWN_IN = zoneinfo.ZoneInfo("Europe/Amsterdam")
MAX_USER_AGENT = 120
SIGN_OFF = "Thuis\n\n(This message was sent automatically; replies are not read.)\n"


@dataclass(frozen=True)
class Circumstances:
    """Where and when a change was made, for the notice that tells of it."""

    at: dt.datetime
    ip: str | None
    user_agent: str | None

    def describe(self) -> str:
        """Return the lines that say when, from where and with what the change was made."""
        local = self.at.astimezone(SHOWN_IN).strftime("%d %B %Y %H:%M %Z")
        lines = [f"When:         {local} ({self.at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"]
        if self.ip is not None:
            lines.append(f"From address: {self.ip}")
        if self.user_agent is not None:
            lines.append(f"Browser/app:  {self.user_agent[:MAX_USER_AGENT]}")
        return "\n".join(lines) + "\n"


async def queue(
    conn: Connection,
    *,
    key: bytes,
    key_id: int,
    user_id: int,
    kind: str,
    to: str,
    subject: str,
    text: str,
) -> None:
    """Put a message for an account in the outbox, sealed with its key; it leaves once committed.

    The message is bound to its row, so its key is reserved first.
    """
    message_id = await reserve_row_key(conn, MAIL_OUTBOX_MESSAGE)
    document = {"to": to, "subject": subject, "text": text}
    sealed = seal_json(key, document, context=MAIL_OUTBOX_MESSAGE.at(message_id, key_id))
    await conn.execute(queries.INSERT_MAIL, message_id, user_id, kind, sealed)


def masked(address: str) -> str:
    """Return an address with its local part hidden but its first letter: a***@example.org."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def confirmation(*, username: str, link: str, expires_at: dt.datetime) -> tuple[str, str]:
    """Return the subject and text of the mail carrying the link that confirms a new address."""
    until = expires_at.astimezone(SHOWN_IN).strftime("%d %B %Y %H:%M %Z")
    return (
        "Confirm your new email address for Thuis",
        f"Hello,\n\nThe Thuis account '{username}' asked to use this address from now on. To confirm it,\n"
        f"open this link and press the button on the page:\n\n    {link}\n\n"
        f"The link works once, until {until}.\n\n"
        "If you did not ask for this, ignore this message: nothing changes unless the link is followed,\n"
        "and the account's present address has been told.\n\n" + SIGN_OFF,
    )


# What a notice says of each change: (subject, what happened).
CHANGES = {
    "password": ("Your Thuis password was changed", "The password of your account was changed."),
    "totp_on": (
        "Two-factor authentication was turned on for your Thuis account",
        "Two-factor authentication was turned on: signing in now needs a code of the authenticator app\n"
        "that was set up.",
    ),
    "totp_off": (
        "Two-factor authentication was turned off for your Thuis account",
        "Two-factor authentication was turned off: signing in now needs only the password.",
    ),
    "recovery_codes": (
        "New recovery codes for your Thuis account",
        "New recovery codes were made; the old ones no longer work.",
    ),
    "email_requested": (
        "A new email address was asked for your Thuis account",
        "A new email address ({new}) was asked for your account. It takes effect only when the link\n"
        "sent to it is followed; until then this address stays in force.",
    ),
    "email_changed": (
        "The email address of your Thuis account was changed",
        "The email address of your account is now {new}: the link sent there was followed.\n"
        "This address no longer receives the account's mail.",
    ),
    "email_removed": (
        "The email address of your Thuis account was removed",
        "The email address of your account was removed: this address no longer receives its mail.",
    ),
}


def security_notice(
    change: str, *, username: str, circumstances: Circumstances, new_email: str | None = None
) -> tuple[str, str]:
    """Return the subject and text of the notice of a security change, sent to the verified address."""
    subject, what = CHANGES[change]
    what = what.format(new=masked(new_email) if new_email else "")
    ended = "" if change == "email_changed" else "Every other session of the account was signed out.\n"
    return (
        subject,
        f"Hello {username},\n\n{what}\n{ended}\n{circumstances.describe()}\n"
        "If this was you, there is nothing to do. If it was not, someone else can use your account:\n"
        "sign in, change your password and sign out everywhere (Account page), and tell your\n"
        "installer or Thuis.\n\n" + SIGN_OFF,
    )
