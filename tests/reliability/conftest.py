"""The reliability suite's tally, printed as one line at the end of the run.

Tests add what they saw to :data:`TALLY` (kill points survived, duplicates, lost and
double-sent invitations); ``pytest_terminal_summary`` prints
``reliability: crash_points=N faults=N bad_inputs=N lost=N duplicated=N`` (faults: the
injected faults the emulators answered, every kind) and lines of details. The counters are only
ever non-zero on a failing run: each test asserts its own zeros as well.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from crm_meetings.sandbox.testing import SandboxFactory, sandbox_factory  # noqa: F401

#: seeded kill points per run; ``RELIABILITY_KILL_POINTS=400 make test`` for a long run
KILL_POINTS = int(os.environ.get("RELIABILITY_KILL_POINTS", "110"))
SEED = int(os.environ.get("RELIABILITY_SEED", "20261123"))

TALLY: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    duplicated = TALLY["duplicates"] + TALLY["double_sent"]
    bad_inputs = TALLY["bad_inputs_refused"] + TALLY["bad_inputs_escaped"]
    terminalreporter.write_line(
        f"reliability: crash_points={TALLY['kill_points']} faults={TALLY['faults']} "
        f"bad_inputs={bad_inputs} lost={TALLY['lost']} duplicated={duplicated}"
    )
    kinds = ("rate_limited", "server_error", "expired_token", "dropped", "timed_out")
    terminalreporter.write_line(
        "reliability faults answered: "
        + ", ".join(f"{kind}={TALLY[f'fault_{kind}']}" for kind in kinds)
        + f"; {TALLY['fault_retries']} failed attempts repeated by the rep"
    )
    terminalreporter.write_line(
        f"reliability details: {TALLY['fault_runs']} fault runs; {TALLY['bad_inputs_refused']} "
        f"bad inputs refused, {TALLY['bad_inputs_escaped']} escaped; "
        f"{TALLY['provider_orphans']} provider meetings orphaned in the documented window; "
        f"{TALLY['redelivered_same_message_id']} mails re-sent by a killed sender "
        "(same Message-ID, the outbox's documented bound)"
    )


@pytest.fixture
def tally() -> Counter[str]:
    return TALLY
