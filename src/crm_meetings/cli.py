"""The `crm-meetings` command line (Typer + rich)."""

from __future__ import annotations

import typer

from crm_meetings import __version__

app = typer.Typer(
    help="crm-meetings: meetings, calendars and CRMs in agreement.", no_args_is_help=True
)


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


def main() -> None:
    app()
