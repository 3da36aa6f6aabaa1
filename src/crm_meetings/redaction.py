"""Masking of secrets before text reaches a log line, an error message or a screen.

Two layers: values registered at start-up (every secret the configuration loaded) are
replaced wherever they appear, and well-known token shapes (``Bearer …``,
``access_token=…``, ``"client_secret": "…"``) are masked even when unregistered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# Short values would mask ordinary words; real tokens are long.
_MIN_SECRET_LENGTH = 6

_KEYS = (
    r"(?:access_token|refresh_token|id_token|client_secret|password|api_key|apikey"
    r"|session_id|secret|token)"
)
_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=!-]{12,}"),
    re.compile(r"(?i)(\bZoho-oauthtoken\s+)[A-Za-z0-9._~+/=!-]{12,}"),
    # form and query strings: access_token=…&
    re.compile(rf"(?i)(\b{_KEYS}=)[^&\s,;\"']+"),
    # JSON: "access_token": "…"
    re.compile(rf"(?i)(\"{_KEYS}\"\s*:\s*\")[^\"]+"),
    re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+(@)"),
)


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that ``redact`` masks it from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and token-shaped values masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex == 2 else ""),
            text,
        )
    return text
