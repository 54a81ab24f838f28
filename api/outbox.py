"""The portal's mail sender: takes due messages from the outbox and hands them to the SMTP server.

Why the portal and not a worker of its own: a message is sealed with its account's data key, and only the
portal holds the keyring (docs/operations.md). Every portal worker runs one sender; they share the outbox
through claims (`FOR UPDATE SKIP LOCKED` and a lease), so a message goes out once, or (a worker killed
between the server's acceptance and the delete) at least once. A change wakes its own worker's sender once
committed; the others look every `THUIS_MAIL_POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from api.queries import mail as queries
from api.settings import ApiSettings
from privacy.keys.crypto import DecryptionError, KeyringFile, open_json
from privacy.keys.fields import MAIL_OUTBOX_MESSAGE
from privacy.keys.subject_keys import SubjectKeyError, load_key
from thuis.backoff import DATABASE_ERRORS
from thuis.db import Connection
from thuis.mail import MailError, compose, send

log = logging.getLogger(__name__)

BATCH = 20


class Outbox:
    """Sends what the outbox holds, until stopped; `wake()` after committing a message sends it at once."""

    def __init__(self, pool: asyncpg.Pool, keyring_file: KeyringFile, settings: ApiSettings) -> None:
        self._pool = pool
        self._keyring_file = keyring_file
        self._settings = settings
        self._server = settings.smtp_server()
        # A claim outlasts the slowest send: connecting, STARTTLS, login and data, each within the timeout.
        self._lease = dt.timedelta(seconds=4 * settings.smtp_timeout_s)
        self._woken = asyncio.Event()
        # smtplib blocks: it runs in this one thread, owned and shut down by the sender.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thuis-mail")
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look at the outbox now: a message was just committed."""
        self._woken.set()

    def start(self) -> None:
        """Start sending in the background."""
        self._task = asyncio.create_task(self._run(), name="thuis-mail-outbox")

    async def stop(self) -> None:
        """Stop sending; a message being handed over finishes first (within the SMTP timeout)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _run(self) -> None:
        while True:
            wait_s = self._settings.mail_poll_s
            try:
                await self.send_due()
                wait_s = min(wait_s, await self._seconds_to_next())
            except DATABASE_ERRORS as err:
                log.warning("mail outbox: the database failed (%s); trying again", type(err).__name__)
            except Exception:  # the sender must outlive a bug of its own: the portal goes on serving
                log.exception("mail outbox: sending failed; trying again")
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=max(wait_s, 0.05))

    async def _seconds_to_next(self) -> float:
        async with self._pool.acquire() as conn:
            seconds = await conn.fetchval(queries.SECONDS_TO_NEXT_MAIL)
        return self._settings.mail_poll_s if seconds is None else float(seconds)

    async def send_due(self) -> int:
        """Send every message that is due now, a batch at a time; return how many went out.

        No connection is held while the SMTP server is talked to: a slow server holds no pool connection.
        """
        sent = 0
        while True:
            async with self._pool.acquire() as conn:
                claimed = await conn.fetch(queries.CLAIM_DUE_MAIL, BATCH, self._lease)
                opened = [await self._open(conn, message) for message in claimed]
            for message, document in zip(claimed, opened, strict=True):
                if document is not None:
                    sent += await self._send_one(message, document)
            if len(claimed) < BATCH:
                return sent

    async def _open(self, conn: Connection, message: asyncpg.Record) -> dict[str, str] | None:
        """Return a claimed message's recipient, subject and text; None (and given up) if it cannot open."""
        try:
            key = await load_key(conn, self._keyring_file.get(), message["key_id"])
            bound = MAIL_OUTBOX_MESSAGE.at(message["message_id"], message["key_id"])
            document = open_json(key, bytes(message["message_ciphertext"]), context=bound)
        except (SubjectKeyError, DecryptionError) as err:
            log.error(  # noqa: TRY400 - the kind of failure is the point; a trace adds nothing
                "mail %d (%s) cannot be opened (%s); given up", message["message_id"], message["kind"], err
            )
            await conn.execute(queries.RESCHEDULE_MAIL, message["message_id"], None, "cannot be opened")
            return None
        return {name: str(document[name]) for name in ("to", "subject", "text")}

    async def _send_one(self, message: asyncpg.Record, document: dict[str, str]) -> int:
        message_id, attempts = message["message_id"], message["attempts"]
        email = compose(self._server, to=document["to"], subject=document["subject"], text=document["text"])
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, send, self._server, email)
        except MailError as err:
            delay = None if err.permanent else self._retry_delay(attempts)
            log.warning(
                "mail %d (%s) could not be sent, attempt %d: %s; %s",
                message_id,
                message["kind"],
                attempts,
                err.reason,
                "given up" if delay is None else f"trying again in {delay.total_seconds():.1f} s",
            )
            async with self._pool.acquire() as conn:
                await conn.execute(queries.RESCHEDULE_MAIL, message_id, delay, err.reason[:200])
            return 0
        async with self._pool.acquire() as conn:
            await conn.execute(queries.DELETE_SENT_MAIL, message_id)
        log.info("mail %d (%s) sent after %d attempts", message_id, message["kind"], attempts)
        return 1

    def _retry_delay(self, attempts: int) -> dt.timedelta:
        """Return the wait before the next attempt: doubling from the first, capped, with jitter."""
        ceiling = min(
            self._settings.mail_retry_max_s, self._settings.mail_retry_initial_s * 2 ** (attempts - 1)
        )
        # Jitter spreads retries of several workers; it protects nothing, so the ordinary generator will do.
        return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311
