"""A lean MQTT v5 subscriber: codec, connection and session, with no import from the rest of Thuis.

    options = ClientOptions(host="broker", port=8883, client_id="me", tls=TlsFiles(ca, cert, key),
                            session_expiry_s=3600, receive_maximum=2000)
    session = Session(options, topic_filters=("sensors/#",), on_publish=handle)
    session.start()
    ...  # handle(publishes, connection) is called for every read; later:
    session.acknowledge(connection.number, [p.packet_id for p in publishes if p.qos])
    await session.stop()

See docs/mqtt.md for what of MQTT v5 it implements, what it leaves out, and how it reconnects.
"""

from mqttv5.codec import ConnAck, Disconnect, Publish
from mqttv5.connection import Connection, PublishHandler
from mqttv5.errors import (
    BrokerRefusedError,
    MqttError,
    ProtocolError,
    QosNotGrantedError,
    SessionFailedError,
)
from mqttv5.options import ClientOptions, TlsFiles
from mqttv5.reason_codes import Retry, needs_operator, reason_text, retry_after
from mqttv5.reconnect import ReconnectPolicy
from mqttv5.session import ConnectHandler, Session, SessionState, SessionStats

__all__ = [
    "BrokerRefusedError",
    "ClientOptions",
    "ConnAck",
    "ConnectHandler",
    "Connection",
    "Disconnect",
    "MqttError",
    "ProtocolError",
    "Publish",
    "PublishHandler",
    "QosNotGrantedError",
    "ReconnectPolicy",
    "Retry",
    "Session",
    "SessionFailedError",
    "SessionState",
    "SessionStats",
    "TlsFiles",
    "needs_operator",
    "reason_text",
    "retry_after",
]
