"""The reliability suite's tally, printed as one line at the end of the run.

Tests add what they saw to :data:`TALLY` (kill points survived, duplicates, lost and
double-sent invitations); ``pytest_terminal_summary`` prints
``reliability: N kill points, D duplicates, L lost, S double-sent``. The counters are only
ever non-zero on a failing run: each test asserts its own zeros as well.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from crm_meetings.sandbox.testing import SandboxFactory, sandbox_factory  # noqa: F401

#: seeded kill points per run; ``RELIABILITY_KILL_POINTS=120 make test`` for a long run
KILL_POINTS = int(os.environ.get("RELIABILITY_KILL_POINTS", "20"))
SEED = int(os.environ.get("RELIABILITY_SEED", "20261123"))

TALLY: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.write_line(
        f"reliability: {TALLY['kill_points']} kill points, {TALLY['duplicates']} duplicates, "
        f"{TALLY['lost']} lost, {TALLY['double_sent']} double-sent"
        f"; {TALLY['fault_runs']} fault runs ({TALLY['fault_retries']} retries), "
        f"{TALLY['bad_inputs_refused']} bad inputs refused, "
        f"{TALLY['bad_inputs_escaped']} escaped; "
        f"{TALLY['provider_orphans']} provider meetings orphaned in the documented window, "
        f"{TALLY['redelivered_same_message_id']} mails re-sent by a killed sender "
        "(same Message-ID, the outbox's documented bound)"
    )


@pytest.fixture
def tally() -> Counter[str]:
    return TALLY
