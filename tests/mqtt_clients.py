"""Gateways of the tests' own as paho clients with real certificates: connect, be refused, be ended."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ops.certs import issue_gateway_certificate
from thuis.identity import gateway_paths


@dataclass
class Client:
    """A paho client of the test, with what happened to it."""

    paho: mqtt.Client
    connacks: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    gone: threading.Event = field(default_factory=threading.Event)


@contextmanager
def connected_as(
    cert: Path,
    key: Path,
    client_id: str,
    port: int,
    certs_dir: Path,
    *,
    will_topic: str | None = None,
    reconnect: bool = False,
) -> Iterator[Client]:
    """Connect with a certificate (persistent session, like a gateway); the client's record is yielded."""
    paho = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
    context.load_cert_chain(cert, key)
    paho.tls_set_context(context)
    client = Client(paho)

    def on_connect(_c: object, _u: object, _f: object, code: object, _p: object) -> None:
        client.connacks.append(str(code))
        client.connected.set()

    def on_disconnect(_c: object, _u: object, _f: object, code: object, _p: object) -> None:
        client.disconnects.append(str(code))
        client.gone.set()
        if not reconnect:
            paho.disconnect()  # no automatic reconnect: each attempt is the test's own

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        client.received.append((message.topic, message.payload, bool(message.retain)))

    def on_connect_fail(_c: object, _u: object) -> None:
        client.disconnects.append("the connection failed (a refused TLS handshake)")
        client.gone.set()
        paho.disconnect()

    paho.on_connect = on_connect
    paho.on_connect_fail = on_connect_fail
    paho.on_disconnect = on_disconnect
    paho.on_message = on_message
    if will_topic is not None:
        paho.will_set(will_topic, b'{"schema":1,"state":"offline"}', qos=1)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    try:
        paho.connect("localhost", port, clean_start=False, properties=properties)
    except OSError as err:  # refused at the TLS handshake (ssl.SSLError), reset, or no listener yet
        client.disconnects.append(f"refused at the handshake: {err}")
        client.gone.set()
        yield client
        return
    paho.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not (client.connected.is_set() or client.gone.is_set()) and time.monotonic() < deadline:
            time.sleep(0.01)
        yield client
    finally:
        paho.disconnect()
        paho.loop_stop()


def as_gateway(
    serial: str, port: int, certs_dir: Path, *, will_topic: str | None = None
) -> AbstractContextManager[Client]:
    """Connect as a gateway, with its certificate of the test CA."""
    paths = gateway_paths(certs_dir, serial)
    return connected_as(paths.cert, paths.key, serial, port, certs_dir, will_topic=will_topic)


def refused(serial: str, port: int, certs_dir: Path) -> bool:
    """Say whether a fresh connection with the gateway's certificate is refused."""
    with as_gateway(serial, port, certs_dir) as client:
        # Refused at the TLS handshake (a revoked certificate), or by CONNACK; else it is connected.
        return client.connacks != ["Success"] or bool(client.disconnects)


def thuis(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `thuis` command line, with extra environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def gateway_serials(count: int, certs_dir: Path) -> list[str]:
    """Return fresh gateway serials, each with a certificate of the test CA."""
    serials = [f"rev{secrets.token_hex(3)}-{i}" for i in range(count)]
    for serial in serials:
        issue_gateway_certificate(certs_dir, serial)
    return serials
