"""MQTT v5 reason codes (2.4, Table 2-6) and what each one means for a subscriber that wants to reconnect.

A broker refuses a connection in CONNACK (3.2.2.2) or ends one with DISCONNECT (3.14.2.1), each time with
a reason code. The client's answer is always to connect again, but not always at once:

- `Retry.SOON` for what passes by itself (the broker restarting or shutting down, a keep-alive timeout,
  an unspecified error): the ordinary schedule, whose first retry comes quickly.
- `Retry.LATER` for what the broker says about *us*: another connection took our session over (0x8E),
  we exceed a quota or a connection rate (0x97, 0x9F), the server is busy (0x89), an operator acted
  (0x98), we are not authorised or banned (0x87, 0x8A, ...), use another server (0x9C, 0x9D), or the
  broker found our packets wrong (0x81, 0x82, 0x93, 0x95, ...). Reconnecting at once would only repeat
  it, or fight over a session in a tight loop: the back-off schedule, seconds that grow.

Codes that no retry can fix without an operator (`needs_operator`) are logged as errors; the client keeps
trying at the back-off pace so that it resumes by itself once the broker's configuration is fixed.
"""

from __future__ import annotations

import enum

__all__ = ["REASONS", "Retry", "needs_operator", "reason_text", "retry_after"]

REASONS = {
    0x00: "success",
    0x01: "granted QoS 1",
    0x02: "granted QoS 2",
    0x04: "disconnect with will message",
    0x10: "no matching subscribers",
    0x11: "no subscription existed",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x92: "packet identifier not found",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


class Retry(enum.Enum):
    """How soon to connect again after a connection was refused or ended."""

    SOON = "soon"  # the ordinary schedule: the first retry comes quickly
    LATER = "later"  # the back-off schedule: seconds, growing


# What passes by itself: the broker restarting, our network, a maximum connect time.
_SOON = frozenset({0x00, 0x04, 0x80, 0x83, 0x88, 0x8B, 0x8D, 0xA0})
# What an operator must fix (credentials, ACL, protocol version, the server's address), or a bug in us.
_NEEDS_OPERATOR = frozenset(
    {0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x99}
    | {0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0xA1, 0xA2}
)


def reason_text(code: int) -> str:
    """Return `0x87 not authorized` for a reason code."""
    return f"0x{code:02X} {REASONS.get(code, 'unknown reason')}"


def retry_after(code: int) -> Retry:
    """Say how soon to reconnect after the broker refused or ended a connection with `code`."""
    return Retry.SOON if code in _SOON else Retry.LATER


def needs_operator(code: int) -> bool:
    """Say whether retrying cannot help until someone changes the broker's or the client's configuration."""
    return code in _NEEDS_OPERATOR
