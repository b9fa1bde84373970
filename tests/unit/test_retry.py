"""Only transient failures are retried, with jittered exponential backoff."""

import random

import psycopg2
import pytest

from loader.db import DatabaseUnavailable, backoff_delays, is_transient, with_retry


class FakePgError(psycopg2.OperationalError):
    def __init__(self, message: str, pgcode: str | None = None):
        super().__init__(message)
        self._code = pgcode

    @property
    def pgcode(self):  # psycopg2 exposes pgcode read-only
        return self._code


@pytest.mark.parametrize(
    "exc",
    [
        FakePgError("could not connect to server: Connection refused"),
        FakePgError("serialization failure", "40001"),
        FakePgError("deadlock detected", "40P01"),
        FakePgError("terminating connection due to administrator command", "57P01"),
        FakePgError("connection failure", "08006"),
    ],
)
def test_transient_failures_are_recognised(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FakePgError("syntax error", "42601"),
        FakePgError("unique violation", "23505"),
        ValueError("not a database error"),
    ],
)
def test_permanent_failures_are_not_retried(exc):
    calls = []

    def fail():
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)):
        with_retry(fail, what="x", sleep=lambda _: None)
    assert len(calls) == 1
    assert not is_transient(exc)


def test_transient_failure_then_success_is_retried():
    outcomes = [FakePgError("Connection refused"), FakePgError("deadlock", "40P01"), "ok"]
    slept = []

    def flaky():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retry(flaky, what="flaky", sleep=slept.append) == "ok"
    assert len(slept) == 2


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    delays = list(backoff_delays(8, base=1.0, cap=5.0, rng=random.Random(1)))
    assert len(delays) == 7
    for n, d in enumerate(delays):
        assert 0 <= d <= min(5.0, 2**n)


def test_exhausted_retries_raise_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match="loading orders failed after 3 attempts"):
        with_retry(
            lambda: (_ for _ in ()).throw(FakePgError("Connection refused")),
            what="loading orders",
            attempts=3,
            sleep=lambda _: None,
        )
