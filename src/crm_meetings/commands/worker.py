"""``crm-meetings worker``: the nightly history sync on schedule, and the mail outbox.

``--queue celery`` only enqueues the nightly run, one task per organizer; start Celery
workers with ``celery -A crm_meetings.sync.celery_app worker``. ``--web`` also serves the
web app in the same process, so the admin page reschedules this worker's job directly.
SIGTERM / Ctrl-C stops it cleanly (exit status 0). Also runnable as
``python -m crm_meetings.commands.worker``.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from crm_meetings.commands import console, run_app, settings, state
from crm_meetings.config import Settings, resolve_config_path

if TYPE_CHECKING:
    import uvicorn

    from crm_meetings.sync.worker import Worker

__all__ = ["WebCompanion", "app"]

app = typer.Typer(help="The long-running worker: nightly history sync and mail delivery.")


class QueueKind(StrEnum):
    INLINE = "inline"
    CELERY = "celery"


class WebCompanion:
    """The web app on uvicorn in a thread of the worker, sharing its store and scheduler."""

    def __init__(self, settings: Settings, *, host: str, port: int, admins: frozenset[str]):
        self.settings = settings
        self.host = host
        self.port = port
        self.admins = admins
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, worker: Worker) -> None:
        import uvicorn

        from crm_meetings.cli import DOCTOR_CHECKS
        from crm_meetings.web.app import create_app
        from crm_meetings.web.services import WebServices

        services = WebServices(
            scheduler=worker.scheduler, admins=self.admins, checks=tuple(DOCTOR_CHECKS)
        )
        config = uvicorn.Config(
            create_app(self.settings, store=worker.store, services=services),
            host=self.host,
            port=self.port,
            proxy_headers=True,
            log_level=self.settings.log.level.lower(),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)
        self.thread.start()
        console.print(f"Serving on http://{self.host}:{self.port}/ (admin: /admin)")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)


@app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    queue: Annotated[
        QueueKind, typer.Option(help="inline: sync here; celery: enqueue one task per organizer.")
    ] = QueueKind.INLINE,
    outbox_interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between outbox deliveries.")
    ] = 30.0,
    web: Annotated[bool, typer.Option("--web", help="Also serve the web app.")] = False,
    host: Annotated[str | None, typer.Option(help="Web interface (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Web port (default: web.port).")] = None,
    admin: Annotated[
        list[str] | None, typer.Option(help="With --web: e-mail of an admin-page user.")
    ] = None,
) -> None:
    """Run until SIGTERM or Ctrl-C."""
    from crm_meetings.sync.worker import Worker, run_worker

    loaded = settings(ctx)
    path, _ = resolve_config_path(state(ctx).config_path, state(ctx).env)
    config_path = str(path.resolve()) if path.is_file() else None
    companions = []
    if web:
        admins = frozenset(a.lower() for a in admin or ())
        companions.append(
            WebCompanion(
                loaded, host=host or loaded.web.host, port=port or loaded.web.port, admins=admins
            )
        )
    the_worker = Worker(
        loaded,
        config_path=config_path,
        queue=queue.value,
        outbox_interval=outbox_interval,
        companions=companions,
    )
    console.print(f"crm-meetings worker ({queue.value}); SIGTERM or Ctrl-C stops it.")
    if queue is QueueKind.CELERY:
        console.print("Run the tasks with: celery -A crm_meetings.sync.celery_app worker")
    raise typer.Exit(run_worker(the_worker))


if __name__ == "__main__":
    run_app(app)
