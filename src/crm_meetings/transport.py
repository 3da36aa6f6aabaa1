"""What every outbound API client shares: the retry policy and per-call accounting.

The retry decision is a pure function (:func:`should_retry`), tested as a table; tenacity
runs it (:func:`retrying`). Non-idempotent requests are never replayed blindly: a create
is retried only when the caller says it carries an idempotency key or external id.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from tenacity import RetryCallState, Retrying, stop_after_attempt

from crm_meetings.errors import AuthExpiredError, RateLimitedError, RemoteError

__all__ = [
    "Call",
    "CallCounter",
    "RetryPolicy",
    "retrying",
    "should_retry",
]

TRANSIENT_STATUSES: Final = frozenset({408, 425, 500, 502, 503, 504})
MAX_RETRY_AFTER: Final = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of the retry loop; ``base``/``cap`` shape the jittered exponential backoff."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = MAX_RETRY_AFTER


def should_retry(
    error: BaseException, attempt: int, *, idempotent: bool, policy: RetryPolicy = RetryPolicy()
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

    ``attempt`` counts from 1 (the attempt that just failed). Rate limits wait for the
    vendor's Retry-After (bounded); transient 5xx and connection errors back off with full
    jitter, but only for idempotent requests; auth, validation and 4xx are never retried
    here (auth refresh is the connector's job, once).
    """
    if attempt >= policy.attempts:
        return None
    if isinstance(error, RateLimitedError):
        if error.retry_after is not None and error.retry_after > policy.max_retry_after:
            return None
        wait = error.retry_after if error.retry_after is not None else _backoff(attempt, policy)
        return max(0.0, wait)
    if isinstance(error, AuthExpiredError):
        return None
    if not idempotent:
        return None
    if isinstance(error, RemoteError):
        return _backoff(attempt, policy) if error.status in TRANSIENT_STATUSES else None
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return _backoff(attempt, policy)
    return None


def _backoff(attempt: int, policy: RetryPolicy) -> float:
    ceiling = min(policy.cap, policy.base * (2 ** (attempt - 1)))
    return random.uniform(0, ceiling)  # full jitter (AWS architecture blog)


def retrying(
    *,
    idempotent: bool,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] | None = None,
) -> Retrying:
    """A tenacity ``Retrying`` driven by :func:`should_retry`; re-raises the last error."""
    decisions: dict[int, float | None] = {}

    def decide(state: RetryCallState) -> float | None:
        if state.attempt_number not in decisions:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            decisions[state.attempt_number] = (
                None
                if error is None
                else should_retry(error, state.attempt_number, idempotent=idempotent, policy=policy)
            )
        return decisions[state.attempt_number]

    def retry_condition(state: RetryCallState) -> bool:
        return decide(state) is not None

    def wait(state: RetryCallState) -> float:
        return decide(state) or 0.0

    kwargs: dict[str, object] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Retrying(
        retry=retry_condition,
        wait=wait,
        stop=stop_after_attempt(policy.attempts),
        reraise=True,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call a client made: for run reports and API-budget benchmarks."""

    vendor: str
    endpoint: str
    method: str
    status: int | None


class CallCounter:
    """Thread-safe tally of the calls a client made, by vendor, endpoint and method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[Call] = Counter()

    def record(self, vendor: str, endpoint: str, method: str, status: int | None) -> None:
        with self._lock:
            self._calls[Call(vendor, endpoint, method.upper(), status)] += 1

    def total(self, *, vendor: str | None = None, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for call, n in self._calls.items()
                if (vendor is None or call.vendor == vendor)
                and (endpoint is None or call.endpoint == endpoint)
            )

    def by_endpoint(self) -> dict[str, int]:
        """``{"vendor METHOD endpoint": count}``: the shape run reports store."""
        with self._lock:
            out: Counter[str] = Counter()
            for call, n in self._calls.items():
                out[f"{call.vendor} {call.method} {call.endpoint}"] += n
            return dict(sorted(out.items()))

    def __iter__(self) -> Iterator[tuple[Call, int]]:
        with self._lock:
            return iter(list(self._calls.items()))

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
