"""When to connect again: two schedules of growing delays, each delay with bounded random jitter.

The spec leaves reconnecting to the client; what it asks is that a client not hammer a server that
told it why it ended the connection (4.13, 3.14.2.1). The policy:

- The ordinary schedule, `RECONNECT_DELAYS_S`, after a connection was lost or refused for a passing
  reason (`Retry.SOON`): its first retry comes within a quarter second, to be subscribed again before
  the gateways have reconnected after a broker restart, then it slows to 10 s.
- The back-off schedule, `BACK_OFF_DELAYS_S`, when the broker refused or ended the connection for a
  reason about us (`Retry.LATER`: session taken over, quota, not authorised, ...): 5 s growing to 60 s.
- Each failure moves one step along the schedule in use; only a connection that stayed up for
  `STABLE_AFTER_S` starts both schedules again from their first step.
- A broker that accepts us and then ends the connection before it was stable, `SHORT_CONNECTIONS`
  times in a row, gets the back-off schedule whatever it said: that is two clients taking one session
  from each other, or a broker that keeps dropping us. Mosquitto before 2.0.15 closes the old
  connection of a session taken over without the DISCONNECT 0x8E that says so (eclipse-mosquitto#2340),
  so the reason code alone cannot stop such a fight. A broker restart does not look like this: its
  first retries are refused, and the connection before it had lasted.
- Every delay is drawn uniformly from `[d * (1 - JITTER), d * (1 + JITTER)]`, so that workers that lost
  the broker together do not all come back in the same instant; no delay exceeds
  `max(BACK_OFF_DELAYS_S) * (1 + JITTER)`.
"""

from __future__ import annotations

import random

from mqttv5.reason_codes import Retry

__all__ = [
    "BACK_OFF_DELAYS_S",
    "JITTER",
    "RECONNECT_DELAYS_S",
    "SHORT_CONNECTIONS",
    "STABLE_AFTER_S",
    "ReconnectPolicy",
]

RECONNECT_DELAYS_S = (0.2, 1.0, 2.0, 5.0, 10.0)
BACK_OFF_DELAYS_S = (5.0, 10.0, 20.0, 40.0, 60.0)
JITTER = 0.25
# Longer than any delay: two clients fighting over a session never hold it this long.
STABLE_AFTER_S = 90.0
SHORT_CONNECTIONS = 2


class ReconnectPolicy:
    """Choose the delay before each new connection from why the last ones ended and how long they lasted."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._failures = 0
        self._short_connections = 0

    @property
    def failures(self) -> int:
        """Return how many connections failed or ended since the last stable one."""
        return self._failures

    def connection_lasted(self, seconds: float) -> None:
        """Record how long a connection stayed up; a stable one starts the schedules again."""
        if seconds >= STABLE_AFTER_S:
            self._failures = 0
            self._short_connections = 0
        else:
            self._short_connections += 1

    def next_delay(self, retry: Retry) -> float:
        """Return the seconds to wait before the next attempt, and count this failure."""
        if self._short_connections >= SHORT_CONNECTIONS:
            retry = Retry.LATER
        schedule = RECONNECT_DELAYS_S if retry is Retry.SOON else BACK_OFF_DELAYS_S
        base = schedule[min(self._failures, len(schedule) - 1)]
        self._failures += 1
        return base * self._rng.uniform(1 - JITTER, 1 + JITTER)
