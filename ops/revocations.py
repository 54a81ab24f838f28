"""The revocation worker: turns the database's queue of gateways to revoke into a CRL the broker enforces.

Erasing a home deletes its gateways and decommissioning one sets `decommissioned_at`; triggers queue the
serial in `gateway_revocations` (migration 0014). The portal never holds the CA key: this worker, the only
long-running holder of it, runs as the `thuis_certs` role (which may read and delete that queue and nothing
else), and for each serial

1. adds every certificate the CA issued to it to the CRL, signs it, and publishes it where the broker reads
   it (the broker reloads it on SIGHUP: `MosquittoBroker` and `deploy/mosquitto/broker.sh` watch the file);
2. waits until the broker refuses a probe certificate revoked in the same CRL, so it knows the CRL is loaded;
3. ends a connection the gateway still holds, by taking over its session with a fresh five-minute
   certificate for its CN. The takeover resumes the session (clean start off), so the broker does not
   publish the will of the connection it ends (with clean start it would: measured on Mosquitto 2.0.11),
   and ends it with session expiry 0, so its queued messages go too. The gateway's next connection is
   refused at the TLS handshake;
4. removes the serial from the queue.

A crash before step 4 leaves the serial queued; the next run revokes nothing new and ends the connection
again. The same run renews the CRL when it comes close to its next-update time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field

from ops import queries
from ops.certs import CertificateAuthority, CertificateError, publish_crl
from thuis.backoff import ServeLoopSettings
from thuis.db import Connection
from thuis.identity import GATEWAY_SERIAL

log = logging.getLogger(__name__)

# The CN of the certificate the worker revokes with each CRL, to see when the broker has loaded it.
PROBE_IDENTITY = "thuis-crl-probe"
# A certificate that ends a revoked gateway's connection lives only in the worker's memory, and not long.
TAKEOVER_VALIDITY = dt.timedelta(minutes=5)
RELOAD_TIMEOUT_S = 30.0


class RevocationSettings(ServeLoopSettings):
    """Settings of `thuis certs revocations`: the database of thuis_certs, the CA, the broker."""

    # Seconds between runs of `thuis certs revocations serve`: how long a revoked gateway may still connect.
    revocation_interval_s: float = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker listens, to see that it loaded the CRL and to end revoked gateways' connections."""

    host: str
    port: int
    server_name: str = "localhost"  # the name the broker's certificate is checked against


@dataclass
class RevocationRun:
    """What one run did."""

    gateways: list[str] = field(default_factory=list)
    certificates: list[int] = field(default_factory=list)  # serial numbers newly revoked
    crl_renewed: bool = False
    broker_reloaded: bool | None = None  # None: no broker to check
    connections_ended: list[str] = field(default_factory=list)


async def apply_revocations(
    conn: Connection, *, ca_dir: Path, publish_to: Path | None, broker: BrokerAddress | None
) -> RevocationRun:
    """Revoke the certificates of every queued gateway, publish the CRL, end their connections, dequeue."""
    serials = [row["gateway_serial"] for row in await conn.fetch(queries.SELECT_REVOCATIONS)]
    ca = CertificateAuthority(ca_dir)
    if not ca.exists():
        raise CertificateError(f"no CA in {ca_dir}")
    run = RevocationRun(gateways=serials)
    if not serials:
        if ca.crl_needs_renewal():
            await asyncio.to_thread(_renew, ca, publish_to)
            run.crl_renewed = True
        return run
    run = await asyncio.to_thread(revoke_gateways, ca, serials, publish_to=publish_to, broker=broker)
    await conn.execute(queries.DELETE_REVOCATIONS, serials)
    return run


def _renew(ca: CertificateAuthority, publish_to: Path | None) -> None:
    crl = ca.write_crl()
    if publish_to is not None:
        publish_crl(crl, publish_to)
    log.info("signed the CRL anew; next update %s", crl.next_update_utc)


def revoke_gateways(
    ca: CertificateAuthority,
    serials: list[str],
    *,
    publish_to: Path | None,
    broker: BrokerAddress | None,
) -> RevocationRun:
    """Revoke every certificate of these gateways, publish the CRL; given the broker, end their connections.

    Their connections are ended only once the broker has loaded the CRL, so that they cannot come back.
    """
    run = RevocationRun(gateways=serials)
    issued = {serial: ca.issued_to(serial) for serial in serials if GATEWAY_SERIAL.fullmatch(serial)}
    for serial in serials:
        if not issued.get(serial):
            log.warning("%s: the CA in %s issued it no certificate; nothing to revoke", serial, ca.directory)
    to_revoke = [cert.serial_number for found in issued.values() for cert in found]
    probe_key = ec.generate_private_key(ec.SECP256R1())
    # Revoked in the same CRL: once the broker refuses it, the broker has loaded this CRL.
    probe = (
        ca.sign_leaf(common_name=PROBE_IDENTITY, key=probe_key, validity=TAKEOVER_VALIDITY)
        if broker is not None
        else None
    )
    newly = ca.revoke(to_revoke + ([probe.serial_number] if probe is not None else []))
    run.certificates = [serial for serial in newly if probe is None or serial != probe.serial_number]
    crl = ca.crl()
    if publish_to is not None and crl is not None:
        publish_crl(crl, publish_to)
    log.info("revoked %d certificates of %s", len(run.certificates), ", ".join(serials))
    if broker is None or probe is None:
        return run
    run.broker_reloaded = _wait_until_refused(ca, broker, probe, probe_key)
    if not run.broker_reloaded:
        log.warning(
            "the broker has not loaded the new CRL within %.0f s; connections the gateways still hold are "
            "not ended now (the next run tries again only if they are queued again)",
            RELOAD_TIMEOUT_S,
        )
        return run
    for serial, found in issued.items():
        if found and _end_connection(ca, broker, serial):
            run.connections_ended.append(serial)
    return run


def _wait_until_refused(
    ca: CertificateAuthority, broker: BrokerAddress, probe: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> bool:
    """Say whether the broker refused the revoked probe's TLS handshake before the timeout."""
    with _client_files(probe, key) as (cert_file, key_file):
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        context.load_cert_chain(cert_file, key_file)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with (
                    socket.create_connection((broker.host, broker.port), timeout=5) as raw,
                    context.wrap_socket(raw, server_hostname=broker.server_name) as tls,
                ):
                    # TLS 1.2 (the broker's setting) checks the client's certificate within the handshake;
                    # reading once also catches a refusal that comes after it.
                    tls.settimeout(0.3)
                    with contextlib.suppress(TimeoutError):
                        if tls.recv(1) == b"":
                            return True
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                return True
            except OSError as err:
                log.warning("cannot reach the broker at %s:%d: %s", broker.host, broker.port, err)
            time.sleep(0.2)
    return False


def _end_connection(ca: CertificateAuthority, broker: BrokerAddress, serial: str) -> bool:
    """Take over a revoked gateway's session with a short-lived certificate for its CN, and end it.

    Clean start off: a resumed session makes the broker drop the ended connection's will instead of
    publishing it. Session expiry 0: the session ends with the DISCONNECT that follows.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.sign_leaf(common_name=serial, key=key, validity=TAKEOVER_VALIDITY)
    connected = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=serial, protocol=mqtt.MQTTv5
    )
    client.on_connect = lambda *_: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    with _client_files(cert, key) as (cert_file, key_file):
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        context.load_cert_chain(cert_file, key_file)
        client.tls_set_context(context)
        try:
            client.connect(broker.host, broker.port, clean_start=False, properties=properties)
        except OSError as err:
            log.warning("%s: cannot end its connection: %s", serial, err)
            return False
    client.loop_start()
    try:
        if not connected.wait(10):
            log.warning("%s: the broker did not answer the takeover in 10 s", serial)
            return False
        client.disconnect()
    finally:
        client.loop_stop()
    log.info("%s: ended its connection and session at the broker", serial)
    return True


@contextlib.contextmanager
def _client_files(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Iterator[tuple[Path, Path]]:
    """Write a certificate and its key where only this process can read them, for as long as needed."""
    with tempfile.TemporaryDirectory(prefix="thuis-revocation-") as folder:
        cert_file, key_file = Path(folder) / "client.crt", Path(folder) / "client.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        yield cert_file, key_file
