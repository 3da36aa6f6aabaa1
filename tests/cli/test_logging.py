"""structlog configuration: console or JSON on stderr, stdlib routed through it, redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from crm_meetings.logging import configure_logging
from crm_meetings.redaction import register_secret

SECRET = "log-secret-0123456789"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = logging.getLogger("crm_meetings")
    own_level = own.level
    register_secret(SECRET)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    own.setLevel(own_level)
    structlog.reset_defaults()


def emit() -> None:
    log = structlog.get_logger("crm_meetings.test")
    log.info("connected", token=SECRET, nested={"values": [f"Bearer {SECRET}"]})
    log.debug("not shown at INFO")
    logging.getLogger("some.library").warning("library says %s", SECRET)
    logging.getLogger("some.library").info("library chatter is quiet at INFO")
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("crashed")


def test_json_lines_on_stderr_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="info")
    emit()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert SECRET not in captured.err
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert [event["event"] for event in events] == ["connected", "library says ***", "crashed"]
    assert events[0]["token"] == "***"
    assert events[0]["nested"] == {"values": ["Bearer ***"]}
    assert events[1]["logger"] == "some.library"
    assert events[1]["level"] == "warning"
    assert "RuntimeError: failed with ***" in events[2]["exception"]


def test_console_lines_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=False, level="INFO")
    emit()
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "connected" in err
    assert "token=***" in err
    assert "library says ***" in err
    assert "not shown" not in err
    assert "library chatter" not in err


def test_debug_shows_everything_and_reconfiguring_replaces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json=False, level="INFO")
    configure_logging(json=True, level="DEBUG")
    emit()
    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("connected") == 1
    assert "not shown at INFO" in events
    assert "library chatter is quiet at INFO" in events
