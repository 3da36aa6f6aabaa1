"""What every ``crm-meetings`` sub-command shares: the global options, settings, output.

A feature adds its commands as a Typer app in ``crm_meetings/commands/<name>.py``; cli.py
mounts it. Inside a command, take ``ctx: typer.Context`` and call :func:`settings` (it honours
``--config`` and the log options), print results with :data:`console` (stdout) and let
:class:`~crm_meetings.errors.CrmMeetingsError` propagate: the root command prints its message
and hint and exits with status 1.

``doctor`` runs functions shaped as :data:`Check`; ``demo`` runs functions shaped as
:data:`Step`. Both are listed in cli.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from crm_meetings.config import Settings, load_settings, resolve_config_path
from crm_meetings.connectors.base import CheckResult
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.logging import configure_logging
from crm_meetings.redaction import redact

if TYPE_CHECKING:
    from crm_meetings.demo.system import DemoSystem

__all__ = [
    "Check",
    "CheckResult",
    "CliState",
    "DemoRun",
    "Org",
    "Step",
    "console",
    "err_console",
    "print_error",
    "settings",
    "state",
    "store_url",
]

#: standard output, for results; logs and errors go to stderr
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(slots=True)
class CliState:
    """The global options of one invocation, and the settings once loaded."""

    config_path: Path | None = None
    log_json: bool | None = None
    log_level: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _settings: Settings | None = None

    def configure_logging(self, settings: Settings | None = None) -> None:
        """Command-line log options win over ``[log]`` in the settings."""
        log = settings.log if settings is not None else None
        json = self.log_json if self.log_json is not None else bool(log and log.json_format)
        level = self.log_level or (log.level if log else "INFO")
        configure_logging(json=json, level=level)

    def settings(self) -> Settings:
        """Load the settings once (raising ConfigurationError), then reuse them."""
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.env)
            self.configure_logging(self._settings)
        return self._settings

    def config_source(self) -> str:
        """Where settings come from, for humans."""
        path, _ = resolve_config_path(self.config_path, self.env)
        if path.is_file():
            return f"{path} and CRM_MEETINGS_* variables"
        return f"defaults and CRM_MEETINGS_* variables (no {path})"


def state(ctx: typer.Context) -> CliState:
    """The :class:`CliState` the root command stored (a default one outside the CLI)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def settings(ctx: typer.Context) -> Settings:
    """The loaded settings for this invocation."""
    return state(ctx).settings()


def _configured_org(ctx: typer.Context, value: str) -> str:
    from crm_meetings.clients import org_for_cli

    return org_for_cli(settings(ctx), value or None)


#: ``--org`` of the per-org commands (senders, rotations, contacts): the organisation, by
#: default the one org the enabled CRMs' data lives under (an error names the choices when
#: they live under several; see :func:`crm_meetings.clients.org_for_cli`)
Org = Annotated[
    str,
    typer.Option(
        callback=_configured_org,
        show_default=False,
        help="The organisation (default: the org of the enabled CRMs; needed when several).",
    ),
]


def store_url(settings: Settings) -> str:
    """``[store].url``, or the embedded SQLite database in ``[store].data_dir``."""
    if settings.store.url:
        return settings.store.url
    from crm_meetings.store.db import default_sqlite_url

    return default_sqlite_url(settings.store.data_dir)


def print_error(error: CrmMeetingsError) -> None:
    """The message and the hint, in red, on stderr; never a traceback."""
    err_console.print(Text(f"Error: {error.message}", style="bold red"))
    if error.hint:
        err_console.print(Text(error.hint, style="red"))


#: a ``doctor`` check: look at one thing, never change it; ``None`` when it does not apply
#: (e.g. a CRM that is not enabled), several lines when it checks several things
Check = Callable[[Settings], CheckResult | Sequence[CheckResult] | None]


@dataclass(slots=True)
class DemoRun:
    """What ``demo`` steps share: where to write, a scratch directory, results so far.

    Steps fill the fields later steps read; a feature's steps add the fields they need.
    """

    out: Path
    workdir: Path
    store_url: str = ""
    system: DemoSystem | None = None  # the sandbox, SMTP sink and clients (crm_meetings.demo)
    serve: bool = False  # keep the web pages served until Ctrl-C (``demo --serve``)


#: a ``demo`` step: do one thing, return a one-line detail, raise if it failed
Step = Callable[[DemoRun], str]


def run_check(check: Check, settings: Settings) -> list[CheckResult]:
    """The lines one check gives; a check that raises becomes a failed line, never a crash."""
    name = check.__name__.removeprefix("check_").replace("_", " ")
    try:
        outcome = check(settings)
    except CrmMeetingsError as error:
        return [CheckResult(name, False, error.message, error.hint)]
    except Exception as error:  # a check must never stop the others
        return [CheckResult(name, False, redact(f"{type(error).__name__}: {error}"))]
    if outcome is None:
        return []
    return [outcome] if isinstance(outcome, CheckResult) else list(outcome)


def run_app(app: typer.Typer) -> None:
    """Run ``app`` as a program: a :class:`CrmMeetingsError` becomes its message, hint and
    exit status 1 (the console script and ``python -m crm_meetings.commands.<name>``)."""
    try:
        app()
    except CrmMeetingsError as error:
        print_error(error)
        raise SystemExit(1) from None
