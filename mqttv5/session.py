"""A persistent MQTT v5 session: connect, subscribe, keep alive, and reconnect by itself.

`Session` keeps one connection to the broker at a time (mqttv5/connection.py). Each connection sends
CONNECT with Clean Start off (3.1.2.4), so the broker keeps the session and the QoS 1 messages queued for
it while the client is away, for `session_expiry_s` (3.1.2.11.2). After CONNACK (3.2) it tells its user
whether the broker resumed the session (Session Present, 3.2.2.1.1), subscribes again (3.8; the broker
may not have restored the subscriptions, and Mosquitto 2.0 does not restore shared ones), pings when it
has sent nothing for a while (3.1.2.10, 3.12), and drops a connection that stays silent for one and a
half keep-alive intervals. When a connection ends, it waits as `ReconnectPolicy` says and connects again.

Acknowledging is the user's: a QoS 1 message is acknowledged (PUBACK, 3.4) only when the user says so,
on the connection it came from, since packet identifiers are per connection (2.2.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mqttv5.codec import (
    PINGREQ_PACKET,
    ConnAck,
    connect_packet,
    disconnect_packet,
    subscribe_packet,
    unsubscribe_packet,
)
from mqttv5.connection import Connection, PublishHandler, describe
from mqttv5.errors import BrokerRefusedError, ProtocolError, QosNotGrantedError, SessionFailedError
from mqttv5.options import ClientOptions
from mqttv5.reason_codes import Retry, needs_operator, reason_text, retry_after
from mqttv5.reconnect import ReconnectPolicy

__all__ = ["ConnectHandler", "Session", "SessionState", "SessionStats"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
SESSION_TAKEN_OVER = 0x8E


class SessionState(enum.Enum):
    """What the broker had for us when a connection began (Session Present, 3.2.2.1.1)."""

    NEW = "new"  # no session, and none was expected: the first connection
    RESUMED = "resumed"  # the broker kept it: it sends the unacknowledged QoS 1 messages again (4.4)
    LOST = "lost"  # a session was expected but the broker has none: nothing unacknowledged comes again


# Called once per connection, after CONNACK and before subscribing.
ConnectHandler = Callable[[Connection, SessionState], None]


@dataclass
class SessionStats:
    """Counts since the session started, for the user's metrics."""

    connections: int = 0  # accepted by CONNACK
    sessions_lost: int = 0  # CONNACK said Session Present = 0 where a session was expected
    taken_over: int = 0  # ended by DISCONNECT 0x8E: another connection with our client id
    disconnects: Counter[int] = field(default_factory=Counter)  # the broker's DISCONNECTs, by reason


class Session:
    """Keep a persistent session subscribed at QoS 0 or 1, reconnecting until stopped.

    `on_publish` gets every PUBLISH as it is read; `acknowledge` sends PUBACKs when the user has done
    its work. A subscription granted below the requested QoS ends the session with
    `QosNotGrantedError` (in `error`), since the user's acknowledgements would then guarantee nothing.
    `stale_filters` are unsubscribed after each subscription: filters the session may still hold from
    an earlier configuration.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        topic_filters: tuple[str, ...],
        on_publish: PublishHandler,
        on_connect: ConnectHandler | None = None,
        qos: int = 1,
        stale_filters: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("this client subscribes at QoS 0 or 1 only")
        self.options = options
        self.topic_filters = topic_filters
        self.qos = qos
        self._stale_filters = stale_filters
        self._on_publish = on_publish
        self._on_connect = on_connect
        self._policy = ReconnectPolicy(rng)
        self._packet_ids = itertools.cycle(range(1, 0x10000))
        self._attempts = 0
        self._live: Connection | None = None
        self._previous: Connection | None = None
        self._session_kept_until: float | None = None  # when the broker may forget our session
        self._left = False  # unsubscribed for good: a reconnect does not subscribe again
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: SessionFailedError | None = None
        self.stats = SessionStats()
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def connection(self) -> Connection | None:
        """Return the current connection, if one was made."""
        return self._live

    def start(self) -> None:
        """Connect in the background; reconnect by ourselves after a connection is lost."""
        self._task = asyncio.create_task(self._run(), name=f"mqtt-session-{self.options.client_id}")

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly; unacknowledged messages stay with the broker for the next connection.

        With `end_session`, the broker forgets the session (and anything still queued for it) instead.
        """
        self._stopping.set()
        live = self._live
        # A connection that is already closed has nothing to say; its `closed` may even be cancelled.
        if live is not None and not live.closed.done():
            live.send(disconnect_packet(session_expiry_s=0 if end_session else None))
            if live.transport is not None:
                live.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(live.closed), STOP_TIMEOUT_S)
            if live.transport is not None and not live.closed.done():
                # The broker did not close its side in time (TLS waits for its close_notify): drop it.
                live.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()
        self.subscribed.clear()

    def acknowledge(self, connection: int, packet_ids: Sequence[int]) -> int:
        """PUBACK messages that came on connection number `connection`; return how many acks were sent.

        Messages of an earlier connection are not acknowledged: the identifiers are the broker's to reuse
        (2.2.1), so a late PUBACK could acknowledge another message. The broker sends them again instead.
        """
        live = self._live
        if live is None or live.number != connection:
            return 0
        return live.acknowledge(packet_ids)

    async def unsubscribe(self) -> None:
        """Leave the subscriptions for good (3.10): the broker stops sending us new messages."""
        live = self._live
        if live is None or not self.subscribed.is_set():
            raise BrokerRefusedError("not subscribed")
        await self._request(live, unsubscribe_packet, "unsubscribe", self.topic_filters)
        self._left = True

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                retry = Retry.SOON
                try:
                    retry = await self._connection()
                except BrokerRefusedError as err:
                    retry = self._refused(err)
                except (OSError, ProtocolError, TimeoutError) as err:
                    if not self._stopping.is_set():
                        log.warning("broker connection failed: %s: %s", type(err).__name__, err)
                if self._stopping.is_set():
                    return
                delay = self._policy.next_delay(retry)
                log.info("reconnecting to the broker in %.1f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        except SessionFailedError as err:
            self.error = err
            log.error("the MQTT session cannot go on: %s", err)  # noqa: TRY400 - the reason is the message
        finally:
            self.finished.set()

    def _refused(self, err: BrokerRefusedError) -> Retry:
        code = err.reason_code
        if code is not None and needs_operator(code):
            log.error("%s; retrying until the configuration is fixed", err)
        else:
            log.warning("broker connection failed: %s: %s", type(err).__name__, err)
        return Retry.SOON if code is None else retry_after(code)

    async def _connection(self) -> Retry:
        """Connect, subscribe, and keep the connection alive until it ends; say how soon to retry."""
        self._attempts += 1
        live = await self._open(self._attempts)
        self._live = live
        keepalive = None
        connected_at = None
        closing = False  # closing cleanly, with a DISCONNECT that must reach the broker
        try:
            live.send(self._connect_packet())
            connack = await asyncio.wait_for(asyncio.shield(live.connack), CONNECT_TIMEOUT_S)
            if connack.reason_code >= 0x80:
                why = reason_text(connack.reason_code)
                raise BrokerRefusedError(f"broker refused the connection: {why}", connack.reason_code)
            connected_at = time.monotonic()
            self._connected(live, connack)
            keepalive = asyncio.create_task(self._keep_alive(live, connack.server_keep_alive))
            try:
                await self._subscribe(live)
                await live.closed
            except (OSError, TimeoutError):
                if live.disconnect is None:
                    raise
                # The broker said why it ended the connection before SUBACK came: that is the reason.
            return self._ended(live)
        except SessionFailedError:
            live.send(disconnect_packet())
            if live.transport is not None:
                live.transport.close()
            closing = True
            raise
        finally:
            self.connected.clear()
            self.subscribed.clear()
            if keepalive is not None:
                keepalive.cancel()
            if live.transport is not None and not self._stopping.is_set() and not closing:
                live.transport.abort()
            if connected_at is not None:
                self._policy.connection_lasted(time.monotonic() - connected_at)
                expiry = self.options.session_expiry_s
                self._session_kept_until = time.monotonic() + expiry if expiry else None
                self._previous = live

    async def _open(self, number: int) -> Connection:
        options = self.options
        tls = options.tls if isinstance(options.tls, ssl.SSLContext) else options.tls.context()
        _, live = await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(
                lambda: Connection(
                    number, maximum_packet_size=options.maximum_packet_size, on_publish=self._on_publish
                ),
                options.host,
                options.port,
                ssl=tls,
                server_hostname=options.host,
            ),
            CONNECT_TIMEOUT_S,
        )
        return live

    def _connect_packet(self) -> bytes:
        options = self.options
        return connect_packet(
            client_id=options.client_id,
            keepalive_s=options.keepalive_s,
            session_expiry_s=options.session_expiry_s,
            receive_maximum=options.receive_maximum,
            maximum_packet_size=options.maximum_packet_size,
        )

    def _connected(self, live: Connection, connack: ConnAck) -> None:
        """Tell what the broker had for us, and let the user act on it before anything is subscribed."""
        self.stats.connections += 1
        log.info(
            "connected to the broker (session present: %s, maximum QoS %d)",
            connack.session_present,
            connack.maximum_qos,
        )
        expected = self._session_kept_until is not None and time.monotonic() < self._session_kept_until
        if connack.session_present:
            state = SessionState.RESUMED
        elif expected:
            state = SessionState.LOST
            self._session_lost()
        else:
            state = SessionState.NEW
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect(live, state)

    def _session_lost(self) -> None:
        self.stats.sessions_lost += 1
        unacknowledged = len(self._previous.unacknowledged) if self._previous is not None else 0
        log.warning(
            "the broker has no session for us although it should have kept it for %d s: it lost its "
            "state (a crash, or a restart without its persistence file) or another client ended the "
            "session. The %d messages the previous connection held unacknowledged will not be sent "
            "again, nor what was published for us while we were away; subscribing again",
            self.options.session_expiry_s,
            unacknowledged,
        )

    async def _subscribe(self, live: Connection) -> None:
        if self._left:
            log.info("reconnected without subscribing: this session left its subscriptions")
            return
        granted = await self._request(live, self._subscribe_packet, "subscription", self.topic_filters)
        for topic_filter, code in zip(self.topic_filters, granted, strict=False):
            if code < self.qos:
                raise QosNotGrantedError(topic_filter, requested_qos=self.qos, granted_qos=code)
        if self._stale_filters:
            # The session may still hold subscriptions of an earlier configuration (say plain instead of
            # shared); every message would then come twice.
            await self._request(live, unsubscribe_packet, "unsubscribe", self._stale_filters)
        log.info("subscribed to %s", ", ".join(self.topic_filters))
        self.subscribed.set()

    def _subscribe_packet(self, packet_id: int, topic_filters: tuple[str, ...]) -> bytes:
        return subscribe_packet(packet_id, topic_filters, qos=self.qos)

    def _ended(self, live: Connection) -> Retry:
        """Count how the connection ended; return how soon to come back."""
        if self._stopping.is_set():
            return Retry.SOON
        disconnect = live.disconnect
        if disconnect is None:
            log.warning("lost the connection to the broker")
            return Retry.SOON
        self.stats.disconnects[disconnect.reason_code] += 1
        if disconnect.reason_code == SESSION_TAKEN_OVER:
            self.stats.taken_over += 1
            log.error(
                "another client connected with our client id %r and took the session over; backing off "
                "(two processes with one identity take the session from each other)",
                self.options.client_id,
            )
        elif needs_operator(disconnect.reason_code):
            log.error("the broker ended the connection: %s; backing off", describe(disconnect))
        return retry_after(disconnect.reason_code)

    async def _request(
        self,
        live: Connection,
        make_packet: Callable[[int, tuple[str, ...]], bytes],
        what: str,
        topic_filters: tuple[str, ...],
    ) -> list[int]:
        """Send SUBSCRIBE or UNSUBSCRIBE; return the reason codes; raise if any filter was refused."""
        packet_id = next(self._packet_ids)
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        live.acks[packet_id] = waiter
        live.send(make_packet(packet_id, topic_filters))
        reasons = await asyncio.wait_for(asyncio.shield(waiter), CONNECT_TIMEOUT_S)
        refused = [
            (topic_filter, code)
            for topic_filter, code in zip(topic_filters, reasons, strict=False)
            if code >= 0x80
        ]
        if refused:
            listed = "; ".join(f"{topic_filter}: {reason_text(code)}" for topic_filter, code in refused)
            raise BrokerRefusedError(f"broker refused the {what}: {listed}", refused[0][1])
        return reasons

    async def _keep_alive(self, live: Connection, server_keep_alive: int | None) -> None:
        """Ping when we have sent nothing for a while; drop a connection that stays silent too long."""
        interval = server_keep_alive if server_keep_alive is not None else self.options.keepalive_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            # While we do not read (the user's buffer is full), the broker's answers wait unread: no silence.
            if not live.reading_paused and now - live.last_received > interval * 1.5:
                live.abort(f"nothing from the broker for {now - live.last_received:.0f} s")
                return
            if now - live.last_sent >= interval / 2:
                live.send(PINGREQ_PACKET)
