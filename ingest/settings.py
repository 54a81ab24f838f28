"""Settings of `thuis ingest`, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

from pydantic import Field

from thuis.settings import ErasureLedgerFile, ThuisSettings


class IngestSettings(ThuisSettings):
    """Settings of `thuis ingest`."""

    # The erasure ledger: a database that lacks one of its erasures (a restored backup) is refused.
    erasure_ledger_file: ErasureLedgerFile
    # Each Thuis ingest process has its own certificate; the broker uses its CN as username and client id.
    session_expiry_s: int = 7 * 24 * 3600
    # MQTT v5 Receive Maximum: how many unacknowledged messages the broker may have in flight to us.
    # It bounds the ingest's buffer: the broker holds the rest until we acknowledge.
    receive_maximum: int = Field(default=2000, ge=1, le=65535)
    batch_max_messages: int = Field(default=1000, ge=1)
    batch_linger_s: float = Field(default=0.05, ge=0)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    # The largest MQTT packet the ingest accepts (announced to the broker as Maximum Packet Size). Keep it
    # above the broker's max_packet_size: the broker silently discards for us what exceeds it.
    max_packet_bytes: int = Field(default=1024 * 1024, ge=1024, le=268_435_455)
    gateway_cache_ttl_s: float = Field(default=30.0, ge=0)
    # Set to run several workers on one broker: they join this MQTT v5 shared subscription group and the
    # broker hands each message to one of them. Unset (one worker), plain subscriptions are used, which
    # Mosquitto 2.0 keeps across a broker restart (it does not keep shared ones; see docs/operations.md).
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Batches committing at once, each on its own connection; acknowledgements still go out in order.
    commit_pipeline: int = Field(default=2, ge=1, le=16)
    database_pool_size: int = Field(default=3, ge=2)
    # How often per-gateway traffic counters become `traffic` rows and gateways' last_seen_at is updated.
    traffic_interval_s: float = Field(default=60.0, gt=0)
    # `/metrics` (Prometheus) and `/health`; port 0 picks a free port and logs it.
    status_host: str = "127.0.0.1"
    status_port: int = Field(default=9464, ge=0, le=65535)
