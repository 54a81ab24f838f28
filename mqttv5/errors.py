"""What can go wrong between a subscriber and its broker, as exceptions of the library's own."""

from __future__ import annotations

__all__ = ["BrokerRefusedError", "MqttError", "ProtocolError", "QosNotGrantedError", "SessionFailedError"]


class MqttError(Exception):
    """Base of every error this library raises."""


class ProtocolError(MqttError):
    """The broker sent something this client cannot accept; the connection must be dropped (4.13)."""


class BrokerRefusedError(MqttError):
    """The broker refused the connection (CONNACK) or a subscription (SUBACK, UNSUBACK)."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class SessionFailedError(MqttError):
    """The session cannot do what it was asked to, and connecting again would not change that."""


class QosNotGrantedError(SessionFailedError):
    """The broker granted a subscription a lower QoS than asked for (3.9.3): acks would mean nothing."""

    def __init__(self, topic_filter: str, *, requested_qos: int, granted_qos: int) -> None:
        super().__init__(
            f"the broker granted QoS {granted_qos} for topic filter {topic_filter!r}, asked for at QoS "
            f"{requested_qos}: acknowledging a message after its work is done would mean nothing; "
            "refusing to run (check the broker's max_qos)"
        )
        self.topic_filter = topic_filter
        self.requested_qos = requested_qos
        self.granted_qos = granted_qos
