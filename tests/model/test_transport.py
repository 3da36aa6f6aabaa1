"""The retry decision as a table, and tenacity driving it."""

from __future__ import annotations

import pytest

from crm_meetings.errors import (
    AuthExpiredError,
    RateLimitedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.transport import CallCounter, RetryPolicy, retrying, should_retry

POLICY = RetryPolicy(attempts=4, base=0.5, cap=4.0, max_retry_after=60)


def remote(status: int) -> RemoteError:
    return RemoteError("x", vendor="v", status=status)


@pytest.mark.parametrize(
    ("error", "idempotent", "retried"),
    [
        (RateLimitedError("x", vendor="v", retry_after=3), False, True),
        (RateLimitedError("x", vendor="v", retry_after=3), True, True),
        (RateLimitedError("x", vendor="v", retry_after=600), True, False),
        (remote(500), True, True),
        (remote(502), True, True),
        (remote(503), True, True),
        (remote(504), True, True),
        (remote(500), False, False),
        (remote(400), True, False),
        (remote(404), True, False),
        (remote(409), True, False),
        (AuthExpiredError("x", vendor="v", status=401), True, False),
        (ConnectionError("reset"), True, True),
        (TimeoutError("slow"), True, True),
        (ConnectionError("reset"), False, False),
        (ValidationError("f", "bad"), True, False),
        (KeyError("bug"), True, False),
    ],
    ids=repr,
)
def test_should_retry_table(error: BaseException, idempotent: bool, retried: bool) -> None:
    wait = should_retry(error, 1, idempotent=idempotent, policy=POLICY)
    assert (wait is not None) is retried
    if wait is not None:
        assert 0 <= wait <= max(POLICY.cap, 3)


def test_rate_limit_waits_exactly_retry_after() -> None:
    error = RateLimitedError("x", vendor="v", retry_after=3)
    assert should_retry(error, 1, idempotent=False, policy=POLICY) == 3


def test_backoff_is_bounded_by_the_cap_and_attempts() -> None:
    waits = [should_retry(remote(503), n, idempotent=True, policy=POLICY) for n in (1, 2, 3)]
    assert all(w is not None and w <= POLICY.cap for w in waits)
    assert should_retry(remote(503), POLICY.attempts, idempotent=True, policy=POLICY) is None


def test_retrying_retries_transient_errors_then_succeeds() -> None:
    slept: list[float] = []
    outcomes: list[BaseException | None] = [
        RateLimitedError("x", vendor="v", retry_after=2),
        remote(503),
        None,
    ]

    def call() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    result = retrying(idempotent=True, policy=POLICY, sleep=slept.append)(call)
    assert result == "ok"
    assert len(slept) == 2
    assert slept[0] == 2


def test_retrying_reraises_the_last_error_after_bounded_attempts() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise remote(500)

    with pytest.raises(RemoteError):
        retrying(idempotent=True, policy=POLICY, sleep=lambda _s: None)(call)
    assert calls == POLICY.attempts


def test_retrying_never_replays_a_non_idempotent_5xx() -> None:
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        raise remote(500)

    with pytest.raises(RemoteError):
        retrying(idempotent=False, policy=POLICY, sleep=lambda _s: None)(call)
    assert calls == 1


def test_call_counter_tallies_by_endpoint() -> None:
    counter = CallCounter()
    counter.record("hubspot", "/crm/v3/objects/meetings/batch/create", "post", 200)
    counter.record("hubspot", "/crm/v3/objects/meetings/batch/create", "POST", 207)
    counter.record("zoom", "/v2/users/{userId}/meetings", "GET", 200)
    assert counter.total() == 3
    assert counter.total(vendor="hubspot") == 2
    assert counter.by_endpoint() == {
        "hubspot POST /crm/v3/objects/meetings/batch/create": 2,
        "zoom GET /v2/users/{userId}/meetings": 1,
    }
    counter.reset()
    assert counter.total() == 0
