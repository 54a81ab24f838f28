"""The ingest's MQTT boundary: its subscriptions, and a bounded queue between the session and the writer.

The session (mqttv5/) speaks MQTT on the ingest's own event loop; this module is what the ingest does
with it. Messages go from the TLS socket straight into a bounded queue of `ReceivedMessage`; the service
takes them in batches, commits them, and only then acknowledges them, in a single write per batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass

from mqttv5 import ClientOptions, Connection, Publish, Session, SessionState, SessionStats, TlsFiles
from thuis.settings import MqttClientSettings

log = logging.getLogger(__name__)

GATEWAY_TOPICS = ("benext/+/#", "maxem/+/#")
# Every ingest worker joins this shared subscription group, so the broker spreads messages over them.
SHARE_GROUP = "thuis-ingest"
# Room for a few QoS 0 messages beyond the broker's Receive Maximum window.
QUEUE_SLACK = 256
DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024


def shared(topic_filters: tuple[str, ...], group: str = SHARE_GROUP) -> tuple[str, ...]:
    """Return the shared-subscription form of each filter: `$share/<group>/<filter>` (4.8.2)."""
    return tuple(f"$share/{group}/{topic_filter}" for topic_filter in topic_filters)


def client_options(
    mqtt: MqttClientSettings,
    *,
    client_id: str,
    session_expiry_s: int,
    receive_maximum: int,
    maximum_packet_size: int,
) -> ClientOptions:
    """Return the library's connection options for the ingest's settings."""
    return ClientOptions(
        host=mqtt.host,
        port=mqtt.port,
        client_id=client_id,
        tls=TlsFiles(mqtt.ca_file, mqtt.cert_file, mqtt.key_file),
        keepalive_s=mqtt.keepalive_s,
        session_expiry_s=session_expiry_s,
        receive_maximum=receive_maximum,
        maximum_packet_size=maximum_packet_size,
    )


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as it came off the wire, with what is needed to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: dt.datetime  # when it was read off the socket, UTC
    connection: int  # which connection it arrived on; an ack is only valid on that one


class MqttReceiver:
    """Subscribe with a persistent session and acknowledge only when told to.

    The broker should have at most `receive_maximum` unacknowledged QoS 1 messages in flight to us, but
    Mosquitto 2.0 sends more once acknowledgements flow, and QoS 0 messages are not counted at all. So
    the queue has limits of its own, in messages and in bytes: when either is reached, reading from the
    socket pauses, TCP stops the broker, and the broker keeps the backlog, not us. The queue can exceed
    a limit by at most what one read from the socket holds (256 KiB of TLS records).
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        topic_filters: tuple[str, ...] = GATEWAY_TOPICS,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        former_filters: tuple[str, ...] = (),
    ) -> None:
        self._session = Session(
            options,
            topic_filters=topic_filters,
            on_publish=self._deliver,
            on_connect=self._connected,
            qos=1,
            stale_filters=former_filters,
        )
        self.topic_filters = topic_filters
        self._queue: collections.deque[ReceivedMessage] = collections.deque()
        self._queue_limit = options.receive_maximum + QUEUE_SLACK
        self._queued_bytes = 0
        self._max_queued_bytes = max_queued_bytes
        self._available = asyncio.Event()
        self.connected = self._session.connected
        self.subscribed = self._session.subscribed

    @property
    def stats(self) -> SessionStats:
        """Return the session's counts (connections, sessions lost, takeovers, disconnects)."""
        return self._session.stats

    def start(self) -> None:
        """Connect in the background; reconnect by ourselves after a connection is lost."""
        self._session.start()

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly; unacknowledged messages stay with the broker for the next connection.

        With `end_session`, the broker forgets the session (and anything still queued for it) instead.
        """
        await self._session.stop(end_session=end_session)

    async def unsubscribe(self) -> None:
        """Leave the subscription (to retire a worker): the broker stops sending us new messages."""
        await self._session.unsubscribe()

    async def get_batch(
        self, *, max_messages: int, linger_s: float, timeout_s: float
    ) -> list[ReceivedMessage]:
        """Wait up to `timeout_s` for a message, then gather more for up to `linger_s`.

        Raises the session's `SessionFailedError` once it has given up (a subscription below QoS 1).
        """
        self._raise_if_failed()
        queue = self._queue
        if not queue:
            self._available.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._available.wait(), timeout_s)
            if not queue:
                self._raise_if_failed()
                return []
        if len(queue) < max_messages and linger_s > 0:
            deadline = time.monotonic() + linger_s
            while len(queue) < max_messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._available.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._available.wait(), remaining)
        batch = [queue.popleft() for _ in range(min(max_messages, len(queue)))]
        self._queued_bytes -= sum(len(message.payload) for message in batch)
        live = self._session.connection
        if (
            live is not None
            and live.reading_paused
            and len(queue) <= self._queue_limit // 2
            and self._queued_bytes <= self._max_queued_bytes // 2
        ):
            live.resume_reading()
        return batch

    def queued_bytes(self) -> int:
        """Return the payload bytes of the received messages that wait for the writer."""
        return self._queued_bytes

    def queued(self) -> int:
        """Return how many received messages wait for the writer."""
        return len(self._queue)

    def ack(self, messages: list[ReceivedMessage]) -> int:
        """Acknowledge committed messages in one write; return how many acks were sent.

        A message that arrived on an earlier connection is not acknowledged: the broker sends it again
        on the new one, and its rows already exist, so it is stored once.
        """
        live = self._session.connection
        if live is None:
            return 0
        number = live.number
        return self._session.acknowledge(
            number, [m.mid for m in messages if m.qos == 1 and m.connection == number]
        )

    def _raise_if_failed(self) -> None:
        if self._session.error is not None:
            raise self._session.error

    def _deliver(self, publishes: list[Publish], connection: Connection) -> None:
        """Queue what one read from the socket brought; pause reading when the queue is full."""
        received_at = dt.datetime.now(dt.UTC)
        number = connection.number
        self._queue.extend(
            ReceivedMessage(p.topic, p.payload, p.packet_id, p.qos, received_at, number) for p in publishes
        )
        self._queued_bytes += sum(len(p.payload) for p in publishes)
        self._available.set()
        if len(self._queue) >= self._queue_limit or self._queued_bytes >= self._max_queued_bytes:
            connection.pause_reading()

    def _connected(self, connection: Connection, state: SessionState) -> None:
        """Forget queued QoS 1 messages of earlier connections if the broker sends them again.

        They could no longer be acknowledged, and keeping them could leave the queue full, so that the
        new connection's SUBACK would wait unread behind the messages sent again. Without a resumed
        session nothing comes again: the queued messages are all there is of them, and they are kept
        (the broker has no messages queued for us either, so the SUBACK is not held up).
        QoS 0 messages are never sent again; they always stay.
        """
        number = connection.number
        kept = [m for m in self._queue if m.connection == number or m.qos == 0]
        stale = len(self._queue) - len(kept)
        if not stale:
            return
        if state is not SessionState.RESUMED:
            log.warning(
                "keeping %d queued messages of the previous connection: the broker will not send them "
                "again (their acknowledgements are not sent: the broker has forgotten them)",
                stale,
            )
            return
        self._queue.clear()
        self._queue.extend(kept)
        self._queued_bytes = sum(len(message.payload) for message in kept)
        log.info("dropped %d queued messages of the lost connection; the broker sends them again", stale)
