"""Shared fixtures: databases (SQLite and PostgreSQL), a store, a clock, sample meetings.

PostgreSQL is the server at 127.0.0.1:5432, database ``test`` (override the admin URL
with ``TEST_POSTGRES_URL``). Every test session picks a random schema prefix
``crm_meetings_test_<hex>``; each test using ``postgres_url`` gets its own schema under it,
reached through the connection's ``search_path`` and dropped afterwards, so parallel runs
never collide. When the server cannot be reached the tests skip — unless ``CI=true``, where
they fail: CI must not pass by silently testing SQLite only.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from crm_meetings.calendar.outbox import SmtpConfig
from crm_meetings.commands import console, err_console
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    Person,
    RecordRef,
    ResponseStatus,
    new_meeting,
)
from crm_meetings.store import Store, default_sqlite_url, upgrade

# rich reads COLUMNS once, when a Console is made: the CLI's consoles are made when
# crm_meetings.commands is first imported, which under pytest-xdist can happen outside any
# CliRunner(env={"COLUMNS": ...}). The in-process CLI tests get one wide width instead.
for _console in (console, err_console):
    _console.width = 250

POSTGRES_ENV = "TEST_POSTGRES_URL"
POSTGRES_ROLES = ("postgres", "root")
SCHEMA_PREFIX = "crm_meetings_test_"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip, or with ``CI=true`` fail, because PostgreSQL cannot be used."""
    message = f"PostgreSQL is not available to the tests: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(message)


def _admin_urls() -> list[URL]:
    explicit = os.environ.get(POSTGRES_ENV)
    if explicit:
        url = sa.make_url(explicit)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return [url]
    return [
        URL.create(
            "postgresql+psycopg", username=role, host="127.0.0.1", port=5432, database="test"
        )
        for role in POSTGRES_ROLES
    ]


@dataclass
class PostgresServer:
    """A reachable server and this session's schema prefix."""

    engine: Engine
    prefix: str = field(default_factory=lambda: f"{SCHEMA_PREFIX}{secrets.token_hex(4)}")
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def create_schema(self) -> str:
        schema = f"{self.prefix}_{next(self._numbers)}"
        with self.engine.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        return schema

    def drop_schema(self, schema: str) -> None:
        with self.engine.connect() as connection:
            connection.execute(sa.text("SET lock_timeout = '10s'"))
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def url_for(self, schema: str) -> str:
        url = self.engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def leftover_schemas(self) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    sa.text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :prefix)"),
                    {"prefix": self.prefix},
                )
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reasons: list[str] = []
    for url in _admin_urls():
        engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 3},
        )
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as error:
            engine.dispose()
            reasons.append(f"{url.render_as_string()}: {str(error.orig).strip()}")
            continue
        server = PostgresServer(engine)
        try:
            yield server
        finally:
            for schema in server.leftover_schemas():
                server.drop_schema(schema)
            engine.dispose()
        return
    postgres_unavailable("; ".join(reasons))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh, empty schema of its own."""
    schema = postgres_server.create_schema()
    try:
        yield postgres_server.url_for(schema)
    finally:
        postgres_server.drop_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The default SQLite URL in a data directory that does not exist yet."""
    return default_sqlite_url(tmp_path / "data")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """An empty database: each test using it runs on SQLite and on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


class Clock:
    """A clock that only moves when told to (``advance``)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[Store]:
    """A migrated store on each backend, its clock fixed at ``T0``."""
    upgrade(store_url)
    with Store(store_url, clock=clock) as opened:
        yield opened


MeetingFactory = Callable[..., Meeting]


@pytest.fixture
def make_meeting() -> MeetingFactory:
    """Build a complete meeting (every field set); keyword arguments override fields."""
    numbers = itertools.count(1)

    def build(**overrides: Any) -> Meeting:
        n = next(numbers)
        fields: dict[str, Any] = {
            "crm": CrmKind.SALESFORCE,
            "subject": f"Quarterly review {n}",
            "start": T0 + timedelta(days=n),
            "end": T0 + timedelta(days=n, hours=1),
            "timezone": "Europe/Paris",
            "organizer": Person("olivia@acme.example", "Olivia Organizer"),
            "now": T0,
            "id_factory": lambda: f"m{n:04d}",
            "crm_record_id": f"00U{n:015d}",
            "description": "Agenda:\n1. numbers\n2. next steps",
            "notes": "internal",
            "location": "Room 4",
            "join_url": f"https://zoom.example/j/{n}",
            "invitees": (
                Invitee(
                    "zed@client.example",
                    "Zed",
                    ResponseStatus.ACCEPTED,
                    crm_relation=RecordRef("Contact", f"003{n}"),
                ),
                Invitee("amy@client.example", "Amy", optional=True),
                Invitee("bob@acme.example", "Bob", ResponseStatus.DECLINED),
            ),
            "related": (RecordRef("Account", "001A"), RecordRef("Opportunity", f"006{n}")),
            "record_type": "Customer_Meeting",
            "provider": "zoom",
            "provider_meeting_id": f"8{n:09d}",
            "crm_modified_at": T0 - timedelta(minutes=5),
        }
        fields.update(overrides)
        return new_meeting(**fields)

    return build


SandboxConfig = Callable[..., Path]


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    """Write a crm-meetings.toml whose enabled services point at a running sandbox.

    ``sandbox_config(sandbox, enable=("hubspot", "zoom"), extra="[smtp]\\n...")`` returns
    the file's path; every vendor section is present, enabled only when named.
    """

    def write(sandbox: Any, *, enable: tuple[str, ...] = (), extra: str = "") -> Path:
        def section(name: str, body: str) -> str:
            on = str(name in enable).lower()
            return f'[{name}]\nenabled = {on}\nca_bundle = "{sandbox.ca_path}"\n{body}\n'

        def url(vendor: str) -> str:
            return str(sandbox.url(vendor)) if vendor in enable else "https://127.0.0.1:9"

        def refresh(vendor: str) -> str:
            return str(sandbox.refresh_token(vendor)) if vendor in enable else "unused-token"

        client = 'client_id = "sandbox-client"\nclient_secret = "sandbox-secret"\n'
        text = "".join(
            [
                section(
                    "salesforce",
                    f'instance_url = "{url("salesforce")}"\nlogin_url = "{url("salesforce")}"\n'
                    f'{client}refresh_token = "{refresh("salesforce")}"',
                ),
                section(
                    "hubspot",
                    f'base_url = "{url("hubspot")}"\n{client}'
                    f'refresh_token = "{refresh("hubspot")}"',
                ),
                section(
                    "zoho",
                    f'accounts_url = "{url("zoho")}"\napi_domain = "{url("zoho")}"\n{client}'
                    f'refresh_token = "{refresh("zoho")}"',
                ),
                section(
                    "zoom",
                    f'base_url = "{url("zoom")}/v2"\ntoken_url = "{url("zoom")}/oauth/token"\n'
                    'account_id = "sandbox-account"\nclient_id = "sandbox-client"\n'
                    f'client_secret = "{refresh("zoom")}"',
                ),
                section(
                    "goto",
                    f'base_url = "{url("goto")}"\ntoken_url = "{url("goto")}/oauth/token"\n'
                    f'{client}refresh_token = "{refresh("goto")}"',
                ),
                extra,
            ]
        )
        path = tmp_path / "crm-meetings.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@dataclass
class SmtpSink:
    """An aiosmtpd handler keeping every message it accepted, byte for byte."""

    received: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 2.0.0 Accepted"


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpConfig, SmtpSink, Controller]]:
    """A real SMTP server on loopback, how to reach it, and its controller, not started yet:
    a test may send while it is down and ``start()`` it later (stopped at the end)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    try:
        yield SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=5), sink, controller
    finally:
        if getattr(controller, "_thread", None) is not None:  # started
            controller.stop()


@pytest.fixture
def smtp_sink(
    smtp_server: tuple[SmtpConfig, SmtpSink, Controller],
) -> tuple[SmtpConfig, SmtpSink]:
    """:func:`smtp_server`, started."""
    config, sink, controller = smtp_server
    controller.start()
    return config, sink


# --- the reliability suite's tally ---------------------------------------------------------
# Tests add what they saw to TALLY (kill points survived, duplicates, lost and double-sent
# invitations); pytest_terminal_summary prints
# ``reliability: crash_points=N faults=N bad_inputs=N lost=N duplicated=N`` (faults: the
# injected faults the emulators answered, every kind) and lines of details. The counters are
# only ever non-zero on a failing run: each test asserts its own zeros as well.

TALLY: Counter[str] = Counter()
WORKER_KEY = "reliability_tally"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist each worker hands its tally to the controller, which prints."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[WORKER_KEY] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    TALLY.update(getattr(node, "workeroutput", {}).get(WORKER_KEY, {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    duplicated = TALLY["duplicates"] + TALLY["double_sent"]
    bad_inputs = TALLY["bad_inputs_refused"] + TALLY["bad_inputs_escaped"]
    terminalreporter.write_line(
        f"reliability: crash_points={TALLY['kill_points']} faults={TALLY['faults']} "
        f"bad_inputs={bad_inputs} lost={TALLY['lost']} duplicated={duplicated}"
    )
    kinds = ("rate_limited", "server_error", "expired_token", "dropped", "timed_out")
    terminalreporter.write_line(
        "reliability faults answered: "
        + ", ".join(f"{kind}={TALLY[f'fault_{kind}']}" for kind in kinds)
        + f"; {TALLY['fault_retries']} failed attempts repeated by the rep"
    )
    terminalreporter.write_line(
        f"reliability details: {TALLY['fault_runs']} fault runs; {TALLY['bad_inputs_refused']} "
        f"bad inputs refused, {TALLY['bad_inputs_escaped']} escaped; "
        f"{TALLY['provider_orphans']} provider meetings orphaned in the documented window; "
        f"{TALLY['redelivered_same_message_id']} mails re-sent by a killed sender "
        "(same Message-ID, the outbox's documented bound)"
    )


@pytest.fixture
def tally() -> Counter[str]:
    return TALLY
