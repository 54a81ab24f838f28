"""Attacks on the broker by gateways that should no longer get in: revoked, erased, or keeping retained data.

Against the real TLS Mosquitto of the project's configuration, with paho clients holding real certificates
of the test CA: a gateway whose certificate was revoked (by `thuis certs revoke`, or by the revocation worker
after its home was erased through the portal) must be refused at its next connection and lose the one it
holds, while other gateways stay connected and the broker is not restarted; a retained publish must be
refused and kept nowhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import ssl
import threading
import time
from pathlib import Path

import psycopg
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet
from ops.certs import issue_ingest_certificate
from ops.localstack import MosquittoBroker
from ops.provision import provision
from tests.fixtures.broker import MakeBroker
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.fixtures.portal import running_portal
from tests.mqtt_clients import as_gateway, connected_as, gateway_serials, refused, thuis
from tests.support import wait_for
from thuis.identity import MAX_INGEST_WORKERS, gateway_paths

MEASURED_AT = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)


@pytest.mark.slow
def test_a_revoked_gateway_is_refused_and_loses_its_connection_while_others_stay(
    broker_factory: MakeBroker, certs_dir: Path
):
    broker = broker_factory()
    pid = broker.pid
    revoked, kept = gateway_serials(2, certs_dir)
    with (
        as_gateway(revoked, broker.port, certs_dir) as victim,
        as_gateway(kept, broker.port, certs_dir) as other,
    ):
        assert victim.connacks == other.connacks == ["Success"]

        result = thuis(
            "certs",
            "revoke",
            revoked,
            "--dir",
            str(certs_dir),
            "--publish-to",
            str(broker.config_dir / "crl.pem"),
            "--broker-host",
            "localhost",
            "--broker-port",
            str(broker.port),
        )

        # The connection it held is ended (its session taken over by the revocation), not left open.
        assert victim.gone.wait(10), "the revoked gateway kept its connection"
        assert refused(revoked, broker.port, certs_dir), "the revoked gateway connected again"
        assert result.returncode == 0, result.stderr
        # The other gateway was not disturbed: still connected, and its publishes are accepted.
        assert not other.disconnects
        assert other.paho.publish(f"benext/{kept}/nodes/1", b"x", qos=1).wait_for_publish(5) is None
        assert broker.pid == pid, "the broker was restarted"
    assert not refused(kept, broker.port, certs_dir)
    assert "Reloading config" in broker.log_file.read_text()


def test_revoking_again_changes_nothing_and_a_stranger_is_refused(certs_dir: Path):
    (serial,) = gateway_serials(1, certs_dir)
    first = thuis("certs", "revoke", serial, "--dir", str(certs_dir))
    again = thuis("certs", "revoke", serial, "--dir", str(certs_dir))
    unknown = thuis("certs", "revoke", "never-issued-gw", "--dir", str(certs_dir))
    bad = thuis("certs", "revoke", "../ca", "--dir", str(certs_dir))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("revoked ")
    assert (again.returncode, again.stdout.strip()) == (
        0,
        f"every certificate of {serial} was already revoked",
    )
    assert unknown.returncode == 2
    assert "issued no certificate to 'never-issued-gw'" in unknown.stderr
    assert bad.returncode == 2
    assert "is not a gateway serial" in bad.stderr


@pytest.mark.slow
async def test_an_erased_homes_gateway_is_refused_and_nothing_it_sends_is_stored(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    prefix = f"er{secrets.token_hex(2)}"
    with psycopg.connect(database.owner_url) as conn:
        (home_gateway,) = provision(
            conn, certs_dir=certs_dir, benext=1, maxem=0, prefix=prefix, registered_at=MEASURED_AT
        )
    (gateway,) = build_fleet(benext=1, maxem=0, prefix=prefix)
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner")
        olga = portal.add_person("olga", "privacy_officer")
        pia = portal.add_person("pia", "privacy_officer")
        portal.sql(
            "UPDATE sites SET owner_user_id = %s WHERE site_id = %s",
            anna.account.user_id,
            home_gateway.site_id,
        )
        for person in (anna, olga, pia):
            assert (await portal.sign_in(person)).status_code == 200
        message = gateway.messages_at(MEASURED_AT)[0]
        with as_gateway(gateway.serial, broker.port, certs_dir, will_topic=gateway.status_topic) as sender:
            assert sender.connacks == ["Success"]
            sender.paho.publish(message.topic, message.payload, qos=1).wait_for_publish(5)

            async def stored() -> bool:
                return portal.sql("SELECT count(*) FROM devices")[0][0] > 0

            await wait_for(stored, what="the gateway's first message")

            # Four eyes: Olga proposes the erasure, Pia approves it, which carries it out.
            filed = await portal.client.post(
                "/api/v1/privacy/requests", json={"kind": "erasure"}, headers=anna.headers
            )
            request_url = f"/api/v1/privacy/requests/{filed.json()['request_id']}"
            proposed = await portal.client.post(
                f"{request_url}/proposal", json={"note": "identity checked"}, headers=olga.headers
            )
            assert proposed.status_code == 200, proposed.text
            done = await portal.client.post(
                f"{request_url}/approval", json={"decision": "approve"}, headers=pia.headers
            )
            assert done.status_code == 200, done.text
            worker = await asyncio.to_thread(
                thuis,
                "certs",
                "revocations",
                "run",
                "--dir",
                str(certs_dir),
                "--publish-to",
                str(broker.config_dir / "crl.pem"),
                "--broker-host",
                "localhost",
                "--broker-port",
                str(broker.port),
                env={"THUIS_DATABASE_URL": database.certs_url, "THUIS_ENVIRONMENT": "test"},
            )
            # The connection the gateway held is ended; its own next one is refused.
            assert sender.gone.wait(10), "the erased home's gateway kept its connection"
        assert await asyncio.to_thread(refused, gateway.serial, broker.port, certs_dir)
        assert worker.returncode == 0, worker.stderr
        await asyncio.sleep(1.0)  # anything that did get through would be stored by now
        footprint = portal.sql(
            "SELECT (SELECT count(*) FROM devices) + (SELECT count(*) FROM smart_home_readings) "
            "+ (SELECT count(*) FROM energy_readings) + (SELECT count(*) FROM quarantine) "
            "+ (SELECT count(*) FROM gateway_revocations) "
            "+ (SELECT count(*) FROM gateway_connectivity_events WHERE gateway_serial = %s)",
            gateway.serial,
        )
        assert footprint == [(0,)], portal.sql(
            "SELECT topic, reason FROM quarantine UNION ALL SELECT gateway_serial, event "
            "FROM gateway_connectivity_events UNION ALL "
            "SELECT gateway_serial, reason FROM gateway_revocations"
        )


def test_decommissioning_a_gateway_queues_its_revocation_for_the_worker_alone(
    database: Database, certs_dir: Path
):
    (serial,) = gateway_serials(1, certs_dir)
    with psycopg.connect(database.owner_url) as conn:
        site_id = conn.execute(
            "INSERT INTO sites (label) VALUES ('decommissioned') RETURNING site_id"
        ).fetchone()
        assert site_id is not None
        conn.execute(
            "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'benext', %s)",
            (serial, site_id[0]),
        )
    result = thuis("gateway", "decommission", serial, env={"THUIS_DATABASE_URL": database.owner_url})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(database.owner_url) as conn:
        assert conn.execute("SELECT gateway_serial, reason FROM gateway_revocations").fetchall() == [
            (serial, "decommissioned")
        ]
        # The history stays: the gateway is still registered, marked decommissioned.
        assert conn.execute(
            "SELECT decommissioned_at IS NOT NULL FROM gateways WHERE gateway_serial = %s", (serial,)
        ).fetchall() == [(True,)]
    # Only the revocation worker's role reads or empties the queue; the portal and the ingest cannot.
    for url in (database.api_url, database.ingest_url):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT gateway_serial FROM gateway_revocations")
    worker = thuis(
        "certs",
        "revocations",
        "run",
        "--dir",
        str(certs_dir),
        env={"THUIS_DATABASE_URL": database.certs_url, "THUIS_ENVIRONMENT": "test"},
    )
    assert worker.returncode == 0, worker.stderr
    assert thuis("certs", "revoke", serial, "--dir", str(certs_dir)).stdout.strip() == (
        f"every certificate of {serial} was already revoked"
    )
    with psycopg.connect(database.owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM gateway_revocations").fetchall() == [(0,)]
    with psycopg.connect(database.certs_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT gateway_serial FROM gateways")


def test_a_retained_publish_is_refused_and_kept_nowhere(
    broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path, database: Database
):
    (serial,) = gateway_serials(1, certs_dir)
    topic = f"benext/{serial}/nodes/1"
    with as_gateway(serial, broker.port, certs_dir) as sender:
        assert sender.connacks == ["Success"]
        sender.paho.publish(topic, b'{"kept": "forever?"}', qos=1, retain=True)
        assert sender.gone.wait(5), "the broker accepted a retained publish"
        assert sender.disconnects == ["Retain not supported"]
    # A subscriber that comes later (an ingest worker's identity, asking for retained messages) gets none.
    reader = issue_ingest_certificate(certs_dir, MAX_INGEST_WORKERS)
    with connected_as(reader.cert, reader.key, "late-reader", broker.port, certs_dir) as late:
        assert late.connacks == ["Success"]
        late.paho.subscribe(f"benext/{serial}/#", qos=1)
        time.sleep(1.0)
        assert late.received == []
    # A will that asks to be retained is refused at CONNECT.
    paho = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=serial, protocol=mqtt.MQTTv5
    )
    paths = gateway_paths(certs_dir, serial)
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
    context.load_cert_chain(paths.cert, paths.key)
    paho.tls_set_context(context)
    paho.will_set(f"benext/{serial}/status", b"offline", qos=1, retain=True)
    codes: list[str] = []
    answered = threading.Event()
    paho.on_connect = lambda _c, _u, _f, code, _p: (codes.append(str(code)), answered.set())
    paho.connect("localhost", broker.port)
    paho.loop_start()
    try:
        assert answered.wait(5)
    finally:
        paho.disconnect()
        paho.loop_stop()
    assert codes == ["Retain not supported"]
    with psycopg.connect(database.owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM quarantine WHERE topic = %s", (topic,)).fetchall() == [(0,)]


async def test_a_gateways_will_still_reaches_the_ingest_without_retain(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    prefix = f"wl{secrets.token_hex(2)}"
    with psycopg.connect(database.owner_url) as conn:
        provision(conn, certs_dir=certs_dir, benext=1, maxem=0, prefix=prefix, registered_at=MEASURED_AT)
    (gateway,) = build_fleet(benext=1, maxem=0, prefix=prefix)
    connection = GatewayConnection(gateway, host="localhost", port=broker.port, certs_dir=certs_dir)
    connection.open()  # announces `online`; its will is `offline`, neither retained
    try:
        client = connection._client
        assert client is not None
        sock = client.socket()
        assert sock is not None
        sock.shutdown(2)  # the connection drops without a DISCONNECT: the broker sends the will

        async def both_stored() -> bool:
            with psycopg.connect(database.owner_url) as conn:
                rows = conn.execute(
                    "SELECT event FROM gateway_connectivity_events WHERE gateway_serial = %s "
                    "AND event IN ('online', 'offline') ORDER BY occurred_at",
                    (gateway.serial,),
                ).fetchall()
            return [row[0] for row in rows][:2] == ["online", "offline"]

        await wait_for(both_stored, timeout_s=20, what="the online status and the will")
    finally:
        connection.close(drain_timeout_s=1)
