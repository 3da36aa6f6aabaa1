"""The reliability suite's fixtures; its tally (``tally``) and the one line it prints at the
end of the run live in the root ``tests/conftest.py`` (the one a pytest-xdist controller loads).
"""

from __future__ import annotations

from crm_meetings.sandbox.testing import SandboxFactory, sandbox_factory  # noqa: F401
