"""``crm-meetings outbox list|retry``: see and put back the mail that is stuck."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings.calendar.outbox import Outbox, OutboxEntry, OutboxStatus
from crm_meetings.commands import console, settings, store_url
from crm_meetings.store import Store

__all__ = ["app", "entries_table"]

app = typer.Typer(help="The mail outbox: invitations and cancellations waiting to be sent.")

_STYLES = {
    OutboxStatus.QUEUED: "yellow",
    OutboxStatus.SENDING: "cyan",
    OutboxStatus.SENT: "green",
    OutboxStatus.FAILED: "bold red",
}


@app.command("list")
def list_messages(
    ctx: typer.Context,
    status: Annotated[
        OutboxStatus | None, typer.Option(help="Only messages with this status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """Show queued, sent and failed messages, newest first."""
    with Store(store_url(settings(ctx))) as store, store.transaction() as uow:
        entries = Outbox.list(uow, status=status, limit=limit)
    if not entries:
        console.print("The outbox is empty." if status is None else f"No {status} messages.")
        return
    console.print(entries_table(entries))


@app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(help="Outbox ids to retry; all failed ones if none.")
    ] = None,
) -> None:
    """Queue failed messages again; the worker sends them on its next round."""
    with Store(store_url(settings(ctx))) as store, store.transaction() as uow:
        count = Outbox.retry(uow, ids or None)
    noun = "message" if count == 1 else "messages"
    console.print(f"{count} failed {noun} queued again.")


def entries_table(entries: list[OutboxEntry]) -> Table:
    """A rich table of outbox entries (the error shown in full: it says what to fix)."""
    table = Table()
    for name in ("id", "status", "to", "subject", "method", "tries", "next / sent", "error"):
        table.add_column(name, no_wrap=name not in ("subject", "error"))
    for entry in entries:
        when = entry.sent_at if entry.status is OutboxStatus.SENT else entry.next_attempt_at
        table.add_row(  # Text, not markup: subjects and errors may contain [brackets]
            str(entry.id),
            Text(entry.status.value, style=_STYLES[entry.status]),
            Text(entry.recipient),
            Text(entry.subject),
            f"{entry.method} #{entry.sequence}",
            str(entry.attempts),
            _when(when),
            Text(entry.last_error or ""),
        )
    return table


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")
