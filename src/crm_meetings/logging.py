"""Logging through structlog: console lines for humans, JSON lines for collectors, on stderr.

Standard-library loggers (SQLAlchemy, Alembic, httpx, APScheduler…) are routed through the
same processors, and every string — each value, then the rendered line — passes through
:func:`crm_meetings.redaction.redact`, so a registered secret never reaches a log.

Use ``structlog.get_logger(__name__)`` anywhere; call :func:`configure_logging` once at
start-up (the CLI does).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from crm_meetings.redaction import redact

__all__ = ["configure_logging", "redact_event"]

_HANDLER_NAME: Final = "crm-meetings"


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return value


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: pass every string value (nested too) through ``redact``."""
    return {key: _redact_value(value) for key, value in event_dict.items()}


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """Redacts the rendered line too: catches secrets inside reprs and escaped JSON."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(json: bool = False, level: str = "INFO") -> None:
    """Send all logging to stderr as console lines (or JSON lines).

    crm-meetings' own loggers log at ``level`` and above; other libraries' loggers at
    WARNING and above, unless ``level`` is DEBUG. Calling it again replaces the previous
    configuration.
    """
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = _RedactingFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    threshold = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(threshold if threshold <= logging.DEBUG else max(threshold, logging.WARNING))
    logging.getLogger("crm_meetings").setLevel(threshold)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
