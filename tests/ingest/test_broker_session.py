"""`thuis ingest` and the broker's side of its session: a grant below QoS 1, a broker that lost its state."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path

from ops.localstack import MosquittoBroker
from tests.fixtures.broker import MakeBroker
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess, ingest_environment


def metric(ingest: IngestProcess, name: str) -> float:
    url = f"http://127.0.0.1:{ingest.env['THUIS_STATUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


def test_the_ingest_refuses_to_run_when_the_broker_grants_qos_0(
    database: Database, broker_factory: MakeBroker, certs_dir: Path, workdir: Path
):
    # With `max_qos 0` the broker grants QoS 0 to the ingest's QoS 1 subscriptions: nothing would be kept
    # for redelivery, so acknowledging after the commit would protect nothing.
    broker = broker_factory("max_qos 0")
    ingest = IngestProcess(
        env=ingest_environment(database, broker, certs_dir), log_path=workdir / "ingest-qos0.log"
    )
    ingest.start(until="the ingest cannot run")
    assert ingest.process is not None
    code = ingest.process.wait(timeout=30)
    log = ingest.log()
    assert code == 1, log
    assert "the broker granted QoS 0 for topic filter 'benext/+/#', asked for at QoS 1" in log, log
    assert "subscribed to" not in log
    assert "Traceback" not in log


def test_the_ingest_counts_a_session_the_broker_lost(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess
):
    assert metric(ingest, "thuis_ingest_mqtt_sessions_lost_total") == 0
    assert metric(ingest, "thuis_ingest_mqtt_connections_total") == 1
    offset = ingest.log_path.stat().st_size
    broker.stop(signal.SIGKILL)
    (broker.data_dir / "mosquitto.db").unlink(missing_ok=True)
    time.sleep(0.5)
    broker.start()
    ingest.wait_for_log("subscribed to", after=offset)
    assert metric(ingest, "thuis_ingest_mqtt_sessions_lost_total") == 1
    assert metric(ingest, "thuis_ingest_mqtt_connections_total") == 2
    assert "the broker has no session for us" in ingest.log_path.read_text()[offset:]
