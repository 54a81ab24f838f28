"""What a client needs to reach its broker: address, identity over TLS, and what CONNECT announces."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from mqttv5.codec import MAX_VARINT

__all__ = ["ClientOptions", "TlsFiles"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The CA to trust and the client's own certificate and key, read again on every connection."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        """Return a TLS 1.2+ client context that verifies the broker and presents our certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Where the broker is, who we are, and what CONNECT announces (3.1.2)."""

    host: str
    port: int
    client_id: str
    tls: TlsFiles | ssl.SSLContext
    keepalive_s: int = 30  # 3.1.2.10; the broker's Server Keep Alive wins (3.2.2.3.14)
    session_expiry_s: int = 0  # 3.1.2.11.2; 0 ends the session when the connection ends
    receive_maximum: int = 65_535  # 3.1.2.11.3: unacknowledged QoS 1 messages the broker may send us
    maximum_packet_size: int = MAX_VARINT  # 3.1.2.11.4: larger packets the broker must not send us

    def __post_init__(self) -> None:
        """Refuse values CONNECT cannot carry."""
        limits = {
            "keepalive_s": (self.keepalive_s, 0, 0xFFFF),
            "session_expiry_s": (self.session_expiry_s, 0, 0xFFFF_FFFF),
            "receive_maximum": (self.receive_maximum, 1, 0xFFFF),
            "maximum_packet_size": (self.maximum_packet_size, 1, MAX_VARINT),
        }
        for name, (value, low, high) in limits.items():
            if not low <= value <= high:
                raise ValueError(f"{name} must be within {low}..{high}, not {value}")
