"""The `crm-meetings` command line (Typer + rich).

Exit status: 0 when all went well, 1 when it did not (a :class:`CrmMeetingsError` is shown
as its message and hint, without a traceback), 2 for a usage error (Click's own).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings import __version__
from crm_meetings.commands import (
    Check,
    CheckResult,
    CliState,
    DemoRun,
    Step,
    console,
    run_app,
    run_check,
    settings,
    state,
    store_url,
)
from crm_meetings.commands.contacts import app as contacts_app
from crm_meetings.commands.meeting import app as meeting_app
from crm_meetings.commands.outbox import app as outbox_app
from crm_meetings.commands.rotation import app as rotation_app
from crm_meetings.commands.sandbox import app as sandbox_app
from crm_meetings.commands.senders import app as senders_app
from crm_meetings.commands.sync import app as sync_app
from crm_meetings.commands.web import app as web_app
from crm_meetings.commands.worker import app as worker_app
from crm_meetings.config import NOT_SET, Settings
from crm_meetings.demo import STEPS as SCENARIO_STEPS
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.redaction import redact

__all__ = ["DEMO_STEPS", "DOCTOR_CHECKS", "app", "main"]


app = typer.Typer(
    help="crm-meetings: meetings, calendars and CRMs in agreement.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox", help="See and retry queued e-mail.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(web_app, name="web")
app.add_typer(rotation_app, name="rotation")
app.add_typer(senders_app, name="senders")
app.add_typer(contacts_app, name="contacts")
app.add_typer(meeting_app, name="meeting")
app.add_typer(sync_app, name="sync")
app.add_typer(worker_app, name="worker")


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (default: $CRM_MEETINGS_CONFIG, else ./crm-meetings.toml).",
            dir_okay=False,
        ),
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--log-console", help="Log JSON lines (default: log.json in the settings)."
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            case_sensitive=False, help="Lowest level logged (default: log.level in the settings)."
        ),
    ] = None,
) -> None:
    """Global options; logs go to stderr."""
    cli_state = CliState(
        config_path=config, log_json=log_json, log_level=log_level.value if log_level else None
    )
    ctx.obj = cli_state
    cli_state.configure_logging()


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


# --- config ---------------------------------------------------------------------------


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective settings; secrets are shown as *** (or "(not set)")."""
    values = settings(ctx).redacted()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    typer.echo(f"# from {state(ctx).config_source()}; secrets hidden")
    typer.echo(_as_toml(values))


def _as_toml(values: dict[str, dict[str, Any]]) -> str:
    """TOML text of the redacted settings; unset keys become comments."""
    lines: list[str] = []
    for section, keys in values.items():
        lines += ["", f"[{section}]"]
        for key, value in keys.items():
            if value is None or value == NOT_SET:
                lines.append(f"# {key} = (not set)")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines).lstrip("\n")


# --- db -------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the configured database to the newest schema."""
    from crm_meetings.store import db, migrate

    url = store_url(settings(ctx))
    before = migrate.current(url)
    after = migrate.upgrade(url, revision)
    console.print(Text(f"{db.describe(url)}: {before or 'empty'} → {after}"))


#: the modules above the store that declare their own rows on ``Base``: ``db adopt-org``
#: loads them to re-key their rows too (the migration drift test loads the same list, so a
#: module missing here fails it)
TABLE_MODULES: Final = (
    "crm_meetings.calendar.outbox_table",
    "crm_meetings.sync.claims",
    "crm_meetings.routing.tables",
    "crm_meetings.senders.tables",
    "crm_meetings.contacts.tables",
    "crm_meetings.web.tables",
    "crm_meetings.store.preferences",
    "crm_meetings.actions.tables",
)


@db_app.command("adopt-org")
def db_adopt_org(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Option("--from", help="The org the rows are stored under now.")
    ] = "default",
    org: Annotated[
        str | None,
        typer.Option(
            help="Where rows without a CRM (senders, rotations, contacts, checkpoints…) go "
            "(default: the one org of the enabled CRMs)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would move; change nothing.")
    ] = False,
) -> None:
    """Move rows stored under "default" to the org each CRM's connection now serves.

    For installs that ran before ``[salesforce] org_id``, ``[hubspot] portal_id`` or
    ``[zoho] org_id`` was set: each CRM's meetings (and mail log, API keys) move to its
    configured org, the rest to ``--org``. A row whose key the target org already holds
    stays, and is reported.
    """
    import importlib

    from crm_meetings.clients import ORG_KEYS, configured_org, org_for_cli
    from crm_meetings.errors import ConfigurationError, ValidationError
    from crm_meetings.store import Store
    from crm_meetings.store.adopt import adopt_org

    loaded = settings(ctx)
    by_crm = {crm: found for crm in ORG_KEYS if (found := configured_org(loaded, crm))}
    if not by_crm and org is None:
        raise ConfigurationError(
            "No CRM names the org its connection serves, so there is nowhere to move to",
            hint="Set [salesforce] org_id, [hubspot] portal_id or [zoho] org_id first "
            "(`crm-meetings doctor` says which), or pass --org.",
        )
    try:
        shared: str | None = org_for_cli(loaded, org)
    except ValidationError as error:
        shared = None
        console.print(Text(f"Rows without a CRM stay under {source}: {error.message}", "yellow"))
    for module in TABLE_MODULES:
        importlib.import_module(module)
    with Store(store_url(loaded)) as store, store.transaction() as uow:
        report = adopt_org(uow, source, by_crm, shared)
        if dry_run:
            uow.session.rollback()
    verb = "would move" if dry_run else "moved"
    table = Table(title=f"Rows stored under {source}")
    for column in ("table", verb, "left", "why left"):
        table.add_column(column)
    for name in sorted({*report.moved, *report.kept}):
        left, why = report.kept.get(name, (0, ""))
        table.add_row(name, str(report.moved.get(name, 0)), str(left), why)
    console.print(table)
    targets = ", ".join(f"{crm.value} → {found}" for crm, found in by_crm.items())
    console.print(
        f"{sum(report.moved.values())} row(s) {verb} ({targets or 'no CRM org'}"
        f"{f'; others → {shared}' if shared and shared != source else ''})."
    )


# --- doctor ---------------------------------------------------------------------------


def check_store(settings: Settings) -> CheckResult:
    """The database answers and its schema is at the newest revision."""
    from crm_meetings.store import db, migrate

    url = store_url(settings)
    parsed = db.normalize_url(url)
    name = db.describe(parsed)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    fix = "Run `crm-meetings db upgrade`."
    if file and file != ":memory:" and not file.startswith("file:") and not Path(file).exists():
        return CheckResult("store", False, f"{name} does not exist yet", fix)
    now, head = migrate.current(url), migrate.head()
    if now != head:
        return CheckResult("store", False, f"{name} is at {now or 'no revision'}, not {head}", fix)
    return CheckResult("store", True, f"{name} at revision {head}")


def check_crms(settings: Settings) -> list[CheckResult] | None:
    """Each enabled CRM: credentials, required objects and fields, API budget."""
    from crm_meetings.connectors.registry import CONNECTORS, build_connector

    enabled = [name for name in CONNECTORS if getattr(settings, name).enabled]
    results: list[CheckResult] = []
    for name in enabled:
        try:
            connector = build_connector(name, settings)
        except CrmMeetingsError as error:
            results.append(CheckResult(name, False, error.message, error.hint))
            continue
        try:
            results += _prefixed(name, _checked(name, connector.check))
        finally:
            connector.close()
    return results or None


def check_providers(settings: Settings) -> list[CheckResult] | None:
    """Each enabled conferencing provider: credentials and API access."""
    from crm_meetings.conferencing.factory import from_settings

    results: list[CheckResult] = []
    for section in (settings.zoom, settings.goto):
        if not section.enabled:
            continue
        name = "zoom" if section is settings.zoom else "goto"
        try:
            provider = from_settings(section)
        except CrmMeetingsError as error:
            results.append(CheckResult(name, False, error.message, error.hint))
            continue
        try:
            results += _prefixed(name, _checked(name, provider.check))
        finally:
            provider.close()
    return results or None


def check_smtp(settings: Settings) -> CheckResult | None:
    """The SMTP server answers (and accepts our login) when mail is configured."""
    from crm_meetings.calendar.outbox import SmtpConfig, connect

    if not settings.smtp.host:
        return None
    config = SmtpConfig.from_settings(settings.smtp)
    where = f"{config.host}:{config.port}"
    try:
        client = connect(config)
    except OSError as error:
        return CheckResult(
            "smtp",
            False,
            redact(f"{where}: {error}"),
            "Check [smtp] host, port, security and credentials, and that the server is up.",
        )
    try:
        code, _ = client.noop()
    finally:
        client.quit()
    return CheckResult("smtp", code == 250, f"{where} answered {code}")


def _checked(name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    try:
        return check()
    except CrmMeetingsError as error:
        return [CheckResult(name, False, error.message, error.hint)]


def _prefixed(name: str, results: list[CheckResult]) -> list[CheckResult]:
    return [
        r if r.name.startswith(name) else CheckResult(f"{name} {r.name}", r.ok, r.detail, r.fix)
        for r in results
    ]


def check_web_orgs(settings: Settings) -> list[CheckResult] | None:
    """The org each enabled CRM's connection serves on the web (README: one org per
    connection)."""
    from crm_meetings.web.orgs import org_checks

    return org_checks(settings)


def check_store_orgs(settings: Settings) -> list[CheckResult] | None:
    """Meetings left under "default" by an install that has since named a CRM's org: no
    entry point reads them there any more."""
    from sqlalchemy import func, select

    from crm_meetings.clients import ORG_KEYS, configured_org
    from crm_meetings.store import DEFAULT_ORG_ID, Store, migrate
    from crm_meetings.store.tables import MeetingRow

    bound = {crm: org for crm in ORG_KEYS if (org := configured_org(settings, crm))}
    url = store_url(settings)
    if not bound or migrate.current(url) != migrate.head():
        return None  # nothing bound, or the store check already says what to do
    with Store(url) as store, store.transaction() as uow:
        counts = dict(
            uow.session.execute(
                select(MeetingRow.crm, func.count())
                .where(MeetingRow.org_id == DEFAULT_ORG_ID)
                .group_by(MeetingRow.crm)
            ).all()
        )
    results = []
    for crm, org in bound.items():
        key, what = ORG_KEYS[crm]
        left = int(counts.get(crm.value, 0))
        name = f"{crm.value} store org"
        if left:
            detail = (
                f"{left} {crm.value} meeting(s) are stored under {DEFAULT_ORG_ID!r} but "
                f"[{crm.value}] {key} = {org}: the CLI, the sync and the web read {org} only"
            )
            fix = "Run `crm-meetings db adopt-org` (add --dry-run first to see what moves)."
            results.append(CheckResult(name, False, detail, fix))
        else:
            results.append(CheckResult(name, True, f"meetings are kept under {what} {org}"))
    return results


#: what ``doctor`` checks once the settings load; each feature appends its own
DOCTOR_CHECKS: list[Check] = [
    check_store,
    check_crms,
    check_providers,
    check_smtp,
    check_web_orgs,
    check_store_orgs,
]


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the settings, the database and every enabled service; exit 1 if any fails."""
    cli_state = state(ctx)
    try:
        loaded = cli_state.settings()
    except CrmMeetingsError as error:
        results = [CheckResult("configuration", False, error.message, error.hint)]
    else:
        services = ", ".join(loaded.enabled_services()) or "none"
        detail = f"loaded {cli_state.config_source()}; enabled: {services}"
        results = [CheckResult("configuration", True, detail)]
        results += [r for check in DOCTOR_CHECKS for r in run_check(check, loaded)]
    table = Table(title="crm-meetings doctor")
    for column in ("check", "", "detail", "to fix"):
        table.add_column(column, overflow="fold")
    for result in results:
        mark = Text("ok", style="green") if result.ok else Text("FAIL", style="bold red")
        table.add_row(result.name, mark, Text(result.detail), Text(result.fix))
    console.print(table)
    failed = [result.name for result in results if not result.ok]
    if failed:
        console.print(Text(f"{len(failed)} check(s) failed: {', '.join(failed)}", style="red"))
        raise typer.Exit(1)
    console.print(Text("All checks passed.", style="green"))


# --- demo -----------------------------------------------------------------------------


def step_create_store(run: DemoRun) -> str:
    """A throwaway SQLite database in the scratch directory."""
    from crm_meetings.store import db

    run.store_url = db.default_sqlite_url(run.workdir)
    return f"created {db.describe(run.store_url)}"


def step_migrate(run: DemoRun) -> str:
    """Bring the new database to the newest schema."""
    from crm_meetings.store import migrate

    before = migrate.current(run.store_url)
    return f"migrated {before or 'empty'} → {migrate.upgrade(run.store_url)}"


#: the demo scenario, in order; a failed step stops the run
DEMO_STEPS: list[Step] = [step_create_store, step_migrate, *SCENARIO_STEPS]


def _run_step(step: Step, run: DemoRun) -> dict[str, Any]:
    name = step.__name__.removeprefix("step_").replace("_", " ")
    try:
        return {"step": name, "ok": True, "detail": step(run)}
    except CrmMeetingsError as error:
        return {"step": name, "ok": False, "detail": error.message, "hint": error.hint}
    except Exception as error:  # the report must say what broke
        return {"step": name, "ok": False, "detail": redact(f"{type(error).__name__}: {error}")}


@app.command()
def demo(
    out: Annotated[
        Path,
        typer.Option(help="Directory for report.json (created; files in it are replaced)."),
    ] = Path("demo-output"),
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Keep the panel and the admin page served until Ctrl-C, then finish."
        ),
    ] = False,
) -> None:
    """Run the scenario on a throwaway store and write what happened to OUT/report.json."""
    out.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-meetings-demo-") as scratch:
        run = DemoRun(out=out, workdir=Path(scratch), serve=serve)
        for step in DEMO_STEPS:
            steps.append(_run_step(step, run))
            mark = Text("✓ ", style="green") if steps[-1]["ok"] else Text("✗ ", style="red")
            console.print(mark + Text(f"{steps[-1]['step']}: {steps[-1]['detail']}"))
            if not steps[-1]["ok"]:
                break
    ok = all(step["ok"] for step in steps) and len(steps) == len(DEMO_STEPS)
    report = {"version": __version__, "ok": ok, "steps": steps}
    report_file = out / "report.json"
    report_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(Text(f"Report: {report_file}"))
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    """The console-script entry point: a :class:`CrmMeetingsError` becomes exit status 1."""
    run_app(app)
