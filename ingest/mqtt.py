"""The MQTT boundary: paho's network loop in its own thread, handing messages over through a bounded queue."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from thuis.settings import MqttClientSettings

log = logging.getLogger(__name__)

GATEWAY_TOPICS = ("benext/+/#", "maxem/+/#")
# Room for a few QoS 0 messages beyond the broker's Receive Maximum window.
QUEUE_SLACK = 256


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as it came off the wire, with what is needed to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: dt.datetime  # when paho handed it to us, UTC
    connection: int  # which connection it arrived on; an ack is only valid on that one


class MqttReceiver:
    """Subscribe to the gateway topics with a persistent session and acknowledge only when told to.

    The broker may have at most `receive_maximum` unacknowledged QoS 1 messages in flight to us, so
    the queue between paho's thread and the writer never holds more than that: when the writer is slow
    or the database is down, the broker keeps the backlog, not us.
    """

    def __init__(
        self, settings: MqttClientSettings, *, client_id: str, session_expiry_s: int, receive_maximum: int
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._queue: queue.Queue[ReceivedMessage] = queue.Queue(maxsize=receive_maximum + QUEUE_SLACK)
        self._connection = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.tls_set(
            ca_certs=str(self._settings.ca_file),
            certfile=str(self._settings.cert_file),
            keyfile=str(self._settings.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a connection is lost."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly and stop paho's thread; unacknowledged messages stay with the broker."""
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def get_batch(self, *, max_messages: int, linger_s: float, timeout_s: float) -> list[ReceivedMessage]:
        """Wait up to `timeout_s` for a message, then gather more for up to `linger_s`; blocks the caller."""
        try:
            batch = [self._queue.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + linger_s
        while len(batch) < max_messages:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def queued(self) -> int:
        """Return how many received messages wait for the writer."""
        return self._queue.qsize()

    def ack(self, messages: list[ReceivedMessage]) -> int:
        """Acknowledge committed messages; return how many acks were sent on the current connection.

        A message that arrived on an earlier connection is not acknowledged: the broker sends it again
        on the new one, and its rows already exist, so it is stored once.
        """
        with self._lock:
            connection = self._connection
        sent = 0
        for message in messages:
            if message.qos == 0 or message.connection != connection:
                continue
            if self._client.ack(message.mid, message.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent += 1
        return sent

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._connection += 1
        log.info("connected to the broker (session present: %s)", flags.session_present)
        self.connected.set()
        client.subscribe([(topic, 1) for topic in GATEWAY_TOPICS])

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error(
                "broker refused the subscription to %s: %s", ", ".join(GATEWAY_TOPICS), ", ".join(refused)
            )
            return
        log.info("subscribed to %s", ", ".join(GATEWAY_TOPICS))
        self.subscribed.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason_code.is_failure:
            log.warning("disconnected from the broker: %s", reason_code)
        else:
            log.info("disconnected from the broker")

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            connection = self._connection
        received = ReceivedMessage(
            topic=message.topic,
            payload=bytes(message.payload),
            mid=message.mid,
            qos=message.qos,
            received_at=dt.datetime.now(dt.UTC),
            connection=connection,
        )
        # Blocks paho's thread only if the queue is full, which the Receive Maximum window prevents for
        # QoS 1; for QoS 0 floods it stops reading the socket, and TCP slows the broker down.
        self._queue.put(received)
