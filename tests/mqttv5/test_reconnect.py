"""The reconnect policy: which schedule each reason code selects, and the bounds of every jittered delay."""

from __future__ import annotations

import random
import statistics

import pytest

from mqttv5.reason_codes import REASONS, Retry, needs_operator, retry_after
from mqttv5.reconnect import (
    BACK_OFF_DELAYS_S,
    JITTER,
    RECONNECT_DELAYS_S,
    SHORT_CONNECTIONS,
    STABLE_AFTER_S,
    ReconnectPolicy,
)

SAMPLES = 2000


def seeded(seed: int) -> random.Random:
    """Return a reproducible generator: jitter, not cryptography."""
    return random.Random(seed)  # noqa: S311


def delays(policy: ReconnectPolicy, retry: Retry, count: int) -> list[float]:
    return [policy.next_delay(retry) for _ in range(count)]


@pytest.mark.parametrize(
    ("retry", "schedule"), [(Retry.SOON, RECONNECT_DELAYS_S), (Retry.LATER, BACK_OFF_DELAYS_S)]
)
def test_each_delay_stays_within_the_jitter_of_its_step(retry: Retry, schedule: tuple[float, ...]):
    for seed in range(SAMPLES // 10):
        policy = ReconnectPolicy(seeded(seed))
        for step, delay in enumerate(delays(policy, retry, len(schedule) + 3)):
            base = schedule[min(step, len(schedule) - 1)]
            assert base * (1 - JITTER) <= delay <= base * (1 + JITTER), (seed, step, delay)


def test_no_delay_is_longer_than_the_last_back_off_step_with_its_jitter():
    ceiling = max(BACK_OFF_DELAYS_S) * (1 + JITTER)
    policy = ReconnectPolicy(seeded(1))
    mixed = [policy.next_delay(seeded(n).choice(list(Retry))) for n in range(SAMPLES)]
    assert max(mixed) <= ceiling
    assert ceiling == pytest.approx(75.0)


def test_the_first_retry_after_a_passing_failure_comes_within_a_quarter_second():
    firsts = [ReconnectPolicy(seeded(seed)).next_delay(Retry.SOON) for seed in range(SAMPLES)]
    assert min(firsts) >= 0.15
    assert max(firsts) <= 0.25


def test_jitter_spreads_workers_that_failed_together():
    # 100 workers lose the broker at once: their first retries must not fall in the same instant.
    firsts = [ReconnectPolicy(seeded(seed)).next_delay(Retry.LATER) for seed in range(100)]
    assert len({round(delay, 3) for delay in firsts}) > 90
    assert statistics.pstdev(firsts) > 0.5  # uniform over [3.75, 6.25] s: about 0.72 s
    assert statistics.mean(firsts) == pytest.approx(BACK_OFF_DELAYS_S[0], rel=0.05)


def test_policies_made_without_a_generator_draw_different_delays():
    # Each worker process makes its own policy: they must not share one sequence of "random" delays.
    firsts = {ReconnectPolicy().next_delay(Retry.LATER) for _ in range(20)}
    assert len(firsts) == 20


def test_delays_grow_until_a_connection_lasts():
    policy = ReconnectPolicy(seeded(3))
    before = delays(policy, Retry.LATER, 3)
    assert before[0] < before[1] < before[2]
    policy.connection_lasted(STABLE_AFTER_S - 1)  # a short connection does not start the schedule again
    assert policy.next_delay(Retry.LATER) >= BACK_OFF_DELAYS_S[3] * (1 - JITTER)
    policy.connection_lasted(STABLE_AFTER_S)
    assert policy.failures == 0
    assert policy.next_delay(Retry.LATER) <= BACK_OFF_DELAYS_S[0] * (1 + JITTER)


def test_connections_that_keep_ending_early_back_off_even_without_a_reason_code():
    # Two clients with one client id on Mosquitto 2.0.11: each connection is closed without a DISCONNECT
    # as soon as the other one connects. Passing failures, yet not to be retried at once.
    policy = ReconnectPolicy(seeded(4))
    policy.connection_lasted(0.3)
    assert policy.next_delay(Retry.SOON) <= RECONNECT_DELAYS_S[0] * (1 + JITTER)
    for _ in range(SHORT_CONNECTIONS - 1):
        policy.connection_lasted(0.3)
    assert policy.next_delay(Retry.SOON) >= BACK_OFF_DELAYS_S[1] * (1 - JITTER)


def test_a_broker_restart_after_a_stable_connection_is_retried_at_once():
    policy = ReconnectPolicy(seeded(5))
    policy.connection_lasted(0.3)  # an earlier short connection is forgotten once one lasts
    policy.connection_lasted(STABLE_AFTER_S + 1)
    firsts = [policy.next_delay(Retry.SOON) for _ in range(3)]  # then refused while it restarts
    assert firsts[0] <= 0.25
    assert firsts[1] <= RECONNECT_DELAYS_S[1] * (1 + JITTER)


def test_stable_means_longer_than_any_delay_so_two_clients_fighting_never_reset():
    assert max(BACK_OFF_DELAYS_S) * (1 + JITTER) < STABLE_AFTER_S


@pytest.mark.parametrize(
    ("code", "retry", "operator"),
    [
        (0x8B, Retry.SOON, False),  # server shutting down: it restarts
        (0x8D, Retry.SOON, False),  # keep alive timeout: our network
        (0x88, Retry.SOON, False),  # server unavailable
        (0x80, Retry.SOON, False),  # unspecified error
        (0x8E, Retry.LATER, False),  # session taken over: do not fight over it
        (0x97, Retry.LATER, False),  # quota exceeded
        (0x9F, Retry.LATER, False),  # connection rate exceeded
        (0x89, Retry.LATER, False),  # server busy
        (0x98, Retry.LATER, False),  # administrative action
        (0x87, Retry.LATER, True),  # not authorised: the ACL
        (0x86, Retry.LATER, True),  # bad user name or password
        (0x8A, Retry.LATER, True),  # banned
        (0x84, Retry.LATER, True),  # unsupported protocol version
        (0x9C, Retry.LATER, True),  # use another server: the configuration names the wrong one
        (0x9D, Retry.LATER, True),  # server moved
        (0x82, Retry.LATER, True),  # protocol error: a bug of ours, reconnecting at once repeats it
        (0x95, Retry.LATER, True),  # packet too large
    ],
)
def test_each_reason_code_selects_a_schedule(code: int, retry: Retry, operator: bool):
    assert retry_after(code) is retry
    assert needs_operator(code) is operator


def test_every_error_code_the_spec_names_backs_off_unless_it_passes_by_itself():
    passing = {code for code in REASONS if code >= 0x80 and retry_after(code) is Retry.SOON}
    assert passing == {0x80, 0x83, 0x88, 0x8B, 0x8D, 0xA0}
    assert all(retry_after(code) is Retry.LATER for code in range(0x80, 0x100) if code not in passing)
