"""One gateway's MQTT v5 session over mutual TLS: QoS 1 publishes, a bounded window of unacknowledged ones."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway_sim.gateways import SimGateway
from thuis.identity import gateway_paths

log = logging.getLogger(__name__)

AckCallback = Callable[[int], None]  # called with the PUBACK reason code, in paho's network thread
DEFAULT_MAX_OUTSTANDING = 100
DEFAULT_SESSION_EXPIRY_S = 3600
DEFAULT_KEEPALIVE_S = 30
NOT_AUTHORIZED = 0x87
WAIT_STEP_S = 0.1  # how often a blocked publisher looks whether it should stop


class MqttConnectionError(Exception):
    """A gateway cannot connect to the broker, or a publish cannot be handed to the client."""


class GatewayConnection:
    """A simulated gateway's own MQTT session: its certificate, its client id, its will.

    `clean_start=False` with a session expiry keeps the session at the broker across reconnects, and paho
    resends every unacknowledged publish after reconnecting. At most `max_outstanding` publishes are
    unacknowledged at once; `submit` blocks for a free slot, so paho's queue never grows without bound.
    """

    def __init__(
        self,
        gateway: SimGateway,
        *,
        host: str,
        port: int,
        certs_dir: Path,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
        connect_timeout_s: float = 10.0,
        announce: bool = True,
    ) -> None:
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be at least 1")
        self.gateway = gateway
        self.host = host
        self.port = port
        self.certs_dir = certs_dir
        self.max_outstanding = max_outstanding
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.announce = announce
        self._client: mqtt.Client | None = None
        self._state = threading.Condition()
        self._callbacks: dict[int, AckCallback | None] = {}  # mid -> what to call when its PUBACK arrives
        self._early_acks: dict[int, int] = {}  # PUBACKs that overtook the registration of their mid
        self._slots_used = 0
        self._connected = False
        self._connack: ReasonCode | None = None
        self._dropped_before_connack = False
        self._closing = False
        self.reconnects = 0

    @property
    def gateway_serial(self) -> str:
        """Return the serial: the certificate's CN, the MQTT username and client id."""
        return self.gateway.serial

    @property
    def outstanding(self) -> int:
        """Return how many publishes wait for their PUBACK."""
        with self._state:
            return self._slots_used

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect with the gateway's own certificate, start paho's network thread and announce `online`."""
        if self._client is not None:
            raise MqttConnectionError(f"{self.gateway_serial}: the connection is already open")
        self._connack = None
        self._dropped_before_connack = False
        self._closing = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.gateway_serial,
            protocol=mqtt.MQTTv5,
        )
        client.tls_set_context(self._tls_context())
        # paho's own in-flight limit equals our window, so it sends at once what it is given.
        client.max_inflight_messages_set(self.max_outstanding)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        will = self.gateway.status_message(online=False, epoch_ms=None)
        client.will_set(will.topic, will.payload, qos=1)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        try:
            client.connect(
                self.host, self.port, keepalive=self.keepalive_s, clean_start=False, properties=properties
            )
        except OSError as err:  # ssl.SSLError is an OSError
            raise MqttConnectionError(
                f"{self.gateway_serial}: cannot connect to {self.host}:{self.port}: {err}"
            ) from None
        self._client = client
        client.loop_start()
        try:
            self._wait_for_connack()
            if self.announce:
                self._announce(online=True)
        except BaseException:
            self._stop_client()
            raise

    def close(self, *, drain_timeout_s: float = 10.0) -> None:
        """Wait for outstanding PUBACKs, announce `offline`, disconnect cleanly and stop paho's thread."""
        if self._client is None:
            return
        try:
            if not self.wait_for_acks(drain_timeout_s):
                log.warning(
                    "%s: closing with %d publishes unacknowledged", self.gateway_serial, self.outstanding
                )
            elif self.announce and self._connected:
                self._announce(online=False)
        finally:
            self._stop_client()

    def submit(
        self,
        topic: str,
        payload: bytes,
        on_ack: AckCallback | None = None,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Publish at QoS 1 once a slot is free; return False when told to stop while waiting for one."""
        client = self._require_client()
        with self._state:
            while self._slots_used >= self.max_outstanding:
                if should_stop is not None and should_stop():
                    return False
                self._state.wait(WAIT_STEP_S)
            self._slots_used += 1
        try:
            info = client.publish(topic, payload, qos=1)
        except BaseException:
            self._release_slot()
            raise
        # Not connected: paho keeps the message and sends it after reconnecting.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._release_slot()
            raise MqttConnectionError(
                f"{self.gateway_serial}: publish refused by paho: {mqtt.error_string(info.rc)}"
            )
        with self._state:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._callbacks[info.mid] = on_ack
                return True
        self._release_slot()
        if on_ack is not None:
            on_ack(early)
        return True

    def publish(self, topic: str, payload: bytes, *, timeout_s: float = 10.0) -> int:
        """Publish at QoS 1, wait for the PUBACK and return its reason code (0x87: not authorized)."""
        acked = threading.Event()
        result: list[int] = []

        def on_ack(reason_code: int) -> None:
            result.append(reason_code)
            acked.set()

        deadline = time.monotonic() + timeout_s
        sent = self.submit(topic, payload, on_ack, should_stop=lambda: time.monotonic() > deadline)
        if not sent or not acked.wait(max(0.0, deadline - time.monotonic())):
            raise MqttConnectionError(f"{self.gateway_serial}: no PUBACK for {topic} within {timeout_s} s")
        return result[0]

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Wait until every publish is acknowledged; return False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._state:
            while self._slots_used:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(min(remaining, WAIT_STEP_S))
        return True

    def _tls_context(self) -> ssl.SSLContext:
        paths = gateway_paths(self.certs_dir, self.gateway_serial)
        ca_file = self.certs_dir / "ca.crt"
        for path in (ca_file, paths.cert, paths.key):
            if not path.exists():
                raise MqttConnectionError(
                    f"{self.gateway_serial}: {path} is missing; provision the gateway first"
                )
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile=str(paths.cert), keyfile=str(paths.key))
        return context

    def _wait_for_connack(self) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        with self._state:
            while self._connack is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MqttConnectionError(
                        f"{self.gateway_serial}: no CONNACK from {self.host}:{self.port} within "
                        f"{self.connect_timeout_s} s"
                    )
                self._state.wait(min(remaining, WAIT_STEP_S))
            if self._dropped_before_connack:
                raise MqttConnectionError(
                    f"{self.gateway_serial}: the broker closed the connection before its CONNACK; "
                    "is the certificate signed by the broker's CA?"
                )
            if self._connack.is_failure:
                raise MqttConnectionError(f"{self.gateway_serial}: connection refused: {self._connack}")

    def _announce(self, *, online: bool) -> None:
        status = self.gateway.status_message(online=online, epoch_ms=int(time.time() * 1000))
        reason_code = self.publish(status.topic, status.payload)
        if reason_code >= 0x80:
            log.warning(
                "%s: status %s refused with reason code 0x%02X",
                self.gateway_serial,
                status.topic,
                reason_code,
            )

    def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        client.disconnect()
        client.loop_stop()

    def _require_client(self) -> mqtt.Client:
        if self._client is None:
            raise MqttConnectionError(f"{self.gateway_serial}: the connection is not open")
        return self._client

    def _release_slot(self) -> None:
        with self._state:
            self._slots_used -= 1
            self._state.notify_all()

    # paho callbacks: they run in paho's network thread while it holds its own locks, so they only take
    # our condition briefly and never call back into paho.

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._state:
            if self._connack is not None and not reason_code.is_failure:
                self.reconnects += 1
            self._connack = reason_code
            self._connected = not reason_code.is_failure
            self._state.notify_all()
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", self.gateway_serial, reason_code)
        else:
            log.debug("%s: connected, session present: %s", self.gateway_serial, flags.session_present)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._state:
            self._connected = False
            before_connack = self._connack is None
            if before_connack:
                # Dropped before the CONNACK: fail the open() rather than let paho retry for ever.
                self._connack = (
                    reason_code
                    if reason_code.is_failure
                    else ReasonCode(PacketTypes.CONNACK, "Unspecified error")
                )
                self._dropped_before_connack = True
            self._state.notify_all()
        if before_connack:
            log.debug("%s: connection closed before the CONNACK (%s)", self.gateway_serial, reason_code)
        elif not self._closing:
            log.warning(
                "%s: connection lost (%s); paho reconnects and resends %d unacknowledged publishes",
                self.gateway_serial,
                reason_code,
                self.outstanding,
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        with self._state:
            if mid not in self._callbacks:
                self._early_acks[mid] = reason_code.value
                return
            on_ack = self._callbacks.pop(mid)
            self._slots_used -= 1
            self._state.notify_all()
        if on_ack is not None:
            on_ack(reason_code.value)
