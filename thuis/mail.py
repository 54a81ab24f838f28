"""Sending mail over SMTP (the standard library's smtplib), with STARTTLS, and what a failure means.

Blocking: callers on an event loop run `send` in a thread of their own. Nothing here logs an address, a
subject, a text or a password; a failure is described by the server's reply code or the kind of error.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

# Reply codes from 500 on are permanent (RFC 5321 section 4.2.1): sending again gets the same answer.
PERMANENT_FROM = 500


class MailError(Exception):
    """A message was not accepted; `permanent` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes and how: host and port, STARTTLS, optional login, the sender's address."""

    host: str
    port: int
    sender: str
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0


def compose(server: SmtpServer, *, to: str, subject: str, text: str) -> EmailMessage:
    """Return a plain-text message from the configured sender."""
    message = EmailMessage()
    message["From"] = server.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(server.sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    return message


def send(server: SmtpServer, message: EmailMessage) -> None:
    """Hand a message to the SMTP server; raise MailError saying whether to try again."""
    try:
        with smtplib.SMTP(server.host, server.port, timeout=server.timeout_s) as smtp:
            if server.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if server.username is not None:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as err:
        codes = sorted({code for code, _ in err.recipients.values()})
        raise MailError(
            f"recipient refused ({', '.join(map(str, codes))})", permanent=min(codes) >= PERMANENT_FROM
        ) from None
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as err:
        # Our login or sender address refused: the configuration is wrong, and once it is right the
        # message can go, so it is kept and tried again.
        raise MailError(f"{type(err).__name__} {err.smtp_code}", permanent=False) from None
    except smtplib.SMTPResponseException as err:
        raise MailError(
            f"{type(err).__name__} {err.smtp_code}", permanent=err.smtp_code >= PERMANENT_FROM
        ) from None
    except (smtplib.SMTPException, OSError) as err:
        # No connection, a timeout, a TLS failure, a server gone mid-way: worth another try.
        raise MailError(type(err).__name__, permanent=False) from None
