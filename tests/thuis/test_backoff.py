"""The reconnect policy: delays with jitter between their bounds, growing, spread, reset on success."""

# ruff: noqa: S311 - seeded generators make the jitter reproducible; nothing here is a secret

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from thuis.backoff import Backoff, ServeLoopSettings
from thuis.settings import SettingsError


def delays(policy: Backoff, count: int) -> list[float]:
    return [policy.next_delay() for _ in range(count)]


def test_every_delay_lies_between_initial_and_max():
    for seed in range(200):
        policy = Backoff(initial_s=0.5, max_s=20.0, multiplier=3.0, rng=random.Random(seed))
        assert all(0.5 <= delay <= 20.0 for delay in delays(policy, 40))


def test_a_delay_is_never_more_than_the_multiplier_times_the_one_before():
    for seed in range(200):
        policy = Backoff(initial_s=1.0, max_s=1000.0, multiplier=2.0, rng=random.Random(seed))
        series = delays(policy, 30)
        assert series[0] <= 2.0
        assert all(later <= 2.0 * earlier for earlier, later in itertools.pairwise(series))


def test_the_mean_delay_grows_as_derived_until_the_ceiling():
    # Each delay is uniform between 1 and 3 times the one before, so its mean is (1 + 3 m) / 2 for a
    # previous mean m, starting from m = 1: 2, 3.5, 5.75, 9.125.
    expected = [2.0, 3.5, 5.75, 9.125]
    samples = [
        delays(Backoff(initial_s=1.0, max_s=10_000.0, multiplier=3.0, rng=random.Random(seed)), 4)
        for seed in range(20_000)
    ]
    for attempt, mean in enumerate(expected):
        assert statistics.fmean(series[attempt] for series in samples) == pytest.approx(mean, rel=0.03)
    # Capped at 8 s: after a delay of 8 s the next is uniform on [1, 24], capped, so 8 s again with
    # probability (24 - 8) / (24 - 1), and otherwise uniform on [1, 8), never below the floor.
    after_ceiling = [
        later
        for seed in range(500)
        for earlier, later in itertools.pairwise(delays(Backoff(1.0, 8.0, 3.0, random.Random(seed)), 40))
        if earlier == 8.0
    ]
    assert len(after_ceiling) > 5000
    assert after_ceiling.count(8.0) / len(after_ceiling) == pytest.approx(16 / 23, abs=0.02)
    below = [delay for delay in after_ceiling if delay < 8.0]
    assert min(below) >= 1.0
    assert statistics.fmean(below) == pytest.approx(4.5, rel=0.03)


def test_workers_that_fail_together_come_back_apart():
    # A hundred workers see the database go at the same moment; each draws its own delays.
    first = [Backoff(initial_s=1.0, max_s=60.0, multiplier=3.0).next_delay() for _ in range(100)]
    assert len(set(first)) == 100
    assert max(first) - min(first) > 1.0  # spread over most of [1, 3] s
    assert statistics.pstdev(first) > 0.3  # uniform on [1, 3] has 0.58


def test_a_success_starts_the_delays_over():
    policy = Backoff(initial_s=1.0, max_s=60.0, multiplier=3.0, rng=random.Random(7))
    delays(policy, 20)
    assert policy.failures == 20
    policy.reset()
    assert policy.failures == 0
    assert 1.0 <= policy.next_delay() <= 3.0


@pytest.mark.parametrize(
    ("initial_s", "max_s", "multiplier"),
    [(0.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (5.0, 1.0, 2.0), (1.0, 5.0, 0.5)],
)
def test_a_policy_that_could_not_back_off_is_refused(initial_s: float, max_s: float, multiplier: float):
    with pytest.raises(ValueError, match=r"need 0 < initial_s <= max_s|multiplier must be at least 1"):
        Backoff(initial_s=initial_s, max_s=max_s, multiplier=multiplier)


def test_the_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("THUIS_DATABASE_URL", "postgresql://thuis_rollup:Xq7-real-secret@db/thuis")
    monkeypatch.setenv("THUIS_RECONNECT_INITIAL_S", "0.25")
    monkeypatch.setenv("THUIS_RECONNECT_MAX_S", "4")
    monkeypatch.setenv("THUIS_RECONNECT_MULTIPLIER", "2")
    policy = ServeLoopSettings.load().reconnect_policy()
    assert (policy.initial_s, policy.max_s, policy.multiplier) == (0.25, 4.0, 2.0)
    monkeypatch.setenv("THUIS_RECONNECT_INITIAL_S", "5")
    with pytest.raises(SettingsError, match="THUIS_RECONNECT_INITIAL_S is above THUIS_RECONNECT_MAX_S"):
        ServeLoopSettings.load()


def test_a_placeholder_password_on_the_command_line_is_refused_like_one_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("THUIS_DATABASE_URL", "postgresql://thuis_rollup:Xq7-real-secret@db/thuis")
    monkeypatch.setenv("THUIS_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="placeholder password"):
        ServeLoopSettings.load(database_url="postgresql://thuis_rollup:changeme@db/thuis")
    monkeypatch.setenv("THUIS_ENVIRONMENT", "development")
    settings = ServeLoopSettings.load(database_url="postgresql://thuis_rollup:changeme@db/thuis")
    assert settings.database_url.get_secret_value().endswith(":changeme@db/thuis")


def test_a_refusal_names_the_problem_but_never_the_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("THUIS_DATABASE_URL", "postgresql://thuis_rollup:Xq7-real-secret@db/thuis")
    monkeypatch.setenv("THUIS_RECONNECT_MAX_S", "-1")
    with pytest.raises(SettingsError) as refused:
        ServeLoopSettings.load()
    assert "THUIS_RECONNECT_MAX_S: Input should be greater than 0" in str(refused.value)
    assert "Xq7-real-secret" not in str(refused.value)
    monkeypatch.delenv("THUIS_DATABASE_URL")
    monkeypatch.delenv("THUIS_RECONNECT_MAX_S")
    with pytest.raises(SettingsError, match="configuration refused: THUIS_DATABASE_URL is not set"):
        ServeLoopSettings.load()
