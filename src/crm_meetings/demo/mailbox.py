"""The demo's SMTP sink: an aiosmtpd server on 127.0.0.1 keeping every message as it arrived.

:meth:`MailSink.save_new` writes each message not yet saved, byte for byte, to
``mail/NNN-<method>-<recipient>.eml``: ``<method>`` is the iCalendar METHOD of its
text/calendar part in lower case (``request``, ``cancel``), or ``notice`` for plain mail.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["MailSink", "Received", "calendar_method"]

HOST = "127.0.0.1"
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def calendar_method(message: Message) -> str | None:
    """The ``method`` parameter of the message's text/calendar part, if it has one."""
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            method = part.get_param("method")
            return str(method).upper() if isinstance(method, str) else None
    return None


@dataclass(frozen=True, slots=True)
class Received:
    """One message for one recipient, as the server got it."""

    recipient: str
    raw: bytes

    @property
    def method(self) -> str | None:
        return calendar_method(message_from_bytes(self.raw, policy=default))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class MailSink:
    """Accepts every message; :meth:`save_new` files them under ``mail_dir``."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.port = _free_port()
        self.received: list[Received] = []
        self.saved: list[Path] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        with self._lock:
            self.received.extend(Received(str(rcpt), raw) for rcpt in envelope.rcpt_tos)
        return "250 2.0.0 Accepted"

    def start(self) -> None:
        self._controller = Controller(self, hostname=HOST, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def save_new(self) -> list[Path]:
        """Write the messages received since the last call; returns their files."""
        with self._lock:
            fresh = self.received[len(self.saved) :]
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for message in fresh:
            number = len(self.saved) + 1
            method = (message.method or "notice").lower()
            name = f"{number:03d}-{method}-{_UNSAFE.sub('_', message.recipient)}.eml"
            path = self.mail_dir / name
            path.write_bytes(message.raw)
            self.saved.append(path)
            written.append(path)
        return written
