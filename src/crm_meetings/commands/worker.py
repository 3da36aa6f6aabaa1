"""``crm-meetings worker``: the nightly history sync on schedule, and the mail outbox.

``--queue celery`` only enqueues the nightly run, one task per organizer; start Celery
workers with ``celery -A crm_meetings.sync.celery_app worker``. ``--web`` also serves the
web app in the same process, so the admin page reschedules this worker's job directly.
With ``[inbound] enabled``, it also runs the scheduling assistant's SMTP listener
(:class:`InboundCompanion`). SIGTERM / Ctrl-C stops it cleanly (exit status 0). Also runnable as
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

    from crm_meetings.routing.inbound import InboundListener
    from crm_meetings.sync.worker import Companion, Worker
    from crm_meetings.web.wiring import Clients

__all__ = ["InboundCompanion", "WebCompanion", "app"]

app = typer.Typer(help="The long-running worker: nightly history sync and mail delivery.")


class QueueKind(StrEnum):
    INLINE = "inline"
    CELERY = "celery"


class WebCompanion:
    """The web app on uvicorn in a thread of the worker, sharing its store and scheduler,
    wired as ``crm-meetings web serve`` wires it (:func:`~crm_meetings.web.live.live_app`:
    CRM connections, actions, org binding, booking hosts)."""

    def __init__(self, settings: Settings, *, host: str, port: int, admins: frozenset[str]):
        self.settings = settings
        self.host = host
        self.port = port
        self.admins = admins
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.clients: Clients | None = None

    def start(self, worker: Worker) -> None:
        import uvicorn

        from crm_meetings.cli import DOCTOR_CHECKS
        from crm_meetings.web.live import live_app
        from crm_meetings.web.wiring import Clients

        self.clients = Clients.from_settings(self.settings)
        web_app = live_app(
            self.settings,
            worker.store,
            self.clients,
            scheduler=worker.scheduler,
            admins=self.admins,
            checks=tuple(DOCTOR_CHECKS),
            clock=worker.clock,
        )
        config = uvicorn.Config(
            web_app,
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
        if self.clients is not None:
            self.clients.close()
            self.clients = None


class InboundCompanion:
    """The scheduling assistant's SMTP listener (``[inbound]``) in the worker: requests
    become the owners' booking requests in the worker's store, and a reply choosing an
    offered time is scheduled on the CRM and provider the settings enable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listener: InboundListener | None = None
        self.clients: Clients | None = None

    def start(self, worker: Worker) -> None:
        from crm_meetings.clients import org_for_cli
        from crm_meetings.commands.rotation import assistant_config
        from crm_meetings.errors import ConfigurationError
        from crm_meetings.routing.inbound import InboundHandler, InboundListener
        from crm_meetings.web.booking import host_contexts
        from crm_meetings.web.wiring import Clients

        inbound = self.settings.inbound
        assert inbound.assistant_address is not None  # required when enabled
        config = assistant_config(
            self.settings, str(inbound.assistant_address), zone=inbound.timezone
        )
        self.clients = Clients.from_settings(self.settings)
        hosts = host_contexts(self.settings, worker.store, self.clients, clock=worker.clock)
        org = org_for_cli(self.settings, inbound.org)
        handler = InboundHandler(worker.store, config, org, hosts)
        listener = InboundListener(handler, host=inbound.host, port=inbound.port)
        try:
            listener.start()
        except OSError as error:
            raise ConfigurationError(
                f"cannot listen on {inbound.host}:{inbound.port}: {error.strerror or error}",
                key="inbound.port",
                hint="Choose a free port, or stop what listens there.",
            ) from error
        self.listener = listener
        console.print(
            f"Receiving mail for {config.sender.address} on {inbound.host}:{inbound.port}."
        )

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self.clients is not None:
            self.clients.close()
            self.clients = None


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
    companions: list[Companion] = []
    if web:
        admins = frozenset(a.lower() for a in admin or ())
        companions.append(
            WebCompanion(
                loaded, host=host or loaded.web.host, port=port or loaded.web.port, admins=admins
            )
        )
    if loaded.inbound.enabled:
        companions.append(InboundCompanion(loaded))
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
