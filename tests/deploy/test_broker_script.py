"""The Compose broker's script (deploy/mosquitto/broker.sh) reloads the CRL when it is replaced, no restart.

Run here with this machine's Mosquitto 2.0 and the project's broker configuration, as the eclipse-mosquitto
container runs it: the script starts the broker and watches the CRL the revocation worker publishes.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from ops.certs import CertificateAuthority, publish_crl
from ops.localstack import MosquittoBroker, free_port
from tests.mqtt_clients import as_gateway, gateway_serials, refused, thuis

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "broker.sh"


@pytest.mark.slow
def test_the_compose_broker_refuses_a_revoked_gateway_once_its_crl_is_replaced(
    workdir: Path, certs_dir: Path
):
    broker = MosquittoBroker(workdir / f"compose-broker-{free_port()}", certs_dir, free_port())
    broker.configure()
    revoked, kept = gateway_serials(2, certs_dir)
    process = subprocess.Popen(
        ["/bin/sh", str(SCRIPT), str(broker.config_dir / "mosquitto.conf"), str(broker.crl_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while refused(kept, broker.port, certs_dir):
            assert time.monotonic() < deadline, "the broker did not come up"
            time.sleep(0.2)
        with as_gateway(kept, broker.port, certs_dir) as other:
            assert thuis("certs", "revoke", revoked, "--dir", str(certs_dir)).returncode == 0
            crl = CertificateAuthority(certs_dir).crl()
            assert crl is not None
            publish_crl(crl, broker.crl_file)  # as the revocation worker does, into the broker-crl volume
            deadline = time.monotonic() + 10
            while not refused(revoked, broker.port, certs_dir):
                assert time.monotonic() < deadline, "the broker never read the new CRL"
                time.sleep(0.2)
            assert other.connacks == ["Success"]
            assert not other.disconnects, "the broker was restarted"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "changed; the broker reads it again" in output
