"""Sandbox tests get a fresh, started sandbox per test (see crm_meetings.sandbox.testing)."""

from crm_meetings.sandbox.testing import sandbox, sandbox_factory  # noqa: F401
