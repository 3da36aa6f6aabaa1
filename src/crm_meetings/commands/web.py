"""``crm-meetings web serve``: the HTTP API and the pages, over uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_meetings.commands import console, settings, store_url

__all__ = ["app"]

app = typer.Typer(help="The HTTP API, the record-page panel and the admin page.")


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: web.port).")] = None,
    admin: Annotated[
        list[str] | None, typer.Option(help="E-mail of a user who may open the admin page.")
    ] = None,
) -> None:
    """Serve the web app until interrupted (Ctrl-C).

    Actions, record types and "sync now" use the CRMs and providers the settings enable;
    their clients are built on first use, shared by every request and closed on exit.
    """
    import uvicorn

    from crm_meetings.cli import DOCTOR_CHECKS
    from crm_meetings.store import Store
    from crm_meetings.sync.schedule import build_scheduler, stop_scheduler
    from crm_meetings.web.live import live_app
    from crm_meetings.web.wiring import Clients

    loaded = settings(ctx)
    url = store_url(loaded)
    scheduler = build_scheduler(url, timezone=loaded.sync.timezone)
    scheduler.start(paused=True)  # the worker runs the jobs; the web app reschedules them
    bind_host, bind_port = host or loaded.web.host, port or loaded.web.port
    try:
        with Store(url) as store, Clients.from_settings(loaded) as clients:
            web_app = live_app(
                loaded,
                store,
                clients,
                scheduler=scheduler,
                admins=frozenset(a.lower() for a in admin or ()),
                checks=tuple(DOCTOR_CHECKS),
            )
            console.print(
                f"Serving on http://{bind_host}:{bind_port}/ (panel: /panel, admin: /admin)"
            )
            uvicorn.run(
                web_app,
                host=bind_host,
                port=bind_port,
                proxy_headers=True,
                log_level=loaded.log.level.lower(),
            )
    finally:
        stop_scheduler(scheduler)
