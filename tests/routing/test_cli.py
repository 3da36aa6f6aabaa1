"""The ``rotation``, ``senders`` and ``contacts`` sub-commands, run in-process on SQLite.

One fixture mounts the three sub-apps under a root like cli.py's, so they share it here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
from click.testing import Result
from typer.testing import CliRunner

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.commands import CliState
from crm_meetings.commands.contacts import app as contacts_app
from crm_meetings.commands.rotation import app as rotation_app
from crm_meetings.commands.rotation import assistant_config
from crm_meetings.commands.senders import app as senders_app
from crm_meetings.config import Settings
from crm_meetings.errors import ConfigurationError, ConflictError
from crm_meetings.model import Invitee
from crm_meetings.routing.requests import AssistantConfig, TrustRepository
from crm_meetings.senders.store import code_in
from crm_meetings.store import Store, upgrade

Run = Callable[..., Result]
PAST = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)


def _runner(sqlite_url: str, config: Path) -> Run:
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = CliState(config_path=config, env={})

    root.add_typer(rotation_app, name="rotation")
    root.add_typer(senders_app, name="senders")
    root.add_typer(contacts_app, name="contacts")

    def run(*args: str) -> Result:
        return CliRunner().invoke(root, list(args), env={"COLUMNS": "200"})

    return run


@pytest.fixture
def cli(tmp_path: Path, sqlite_url: str) -> Run:
    upgrade(sqlite_url)
    config = tmp_path / "crm-meetings.toml"
    config.write_text(
        f'[store]\nurl = "{sqlite_url}"\n[smtp]\nfrom_address = "no-reply@acme.example"\n',
        encoding="utf-8",
    )
    return _runner(sqlite_url, config)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_rotation_commands(cli: Run) -> None:
    created = json.loads(ok(cli("rotation", "create", "Inbound", "--member", "ann@acme.example",
                                "--member", "bob@acme.example", "--json")))  # fmt: skip
    assert [m["email"] for m in created["members"]] == ["ann@acme.example", "bob@acme.example"]
    picked = json.loads(ok(cli("rotation", "pick", "Inbound", "--zone", "Europe/Paris", "--json")))
    assert picked["explanation"]["chosen"] == "ann@acme.example"
    booked = json.loads(ok(cli("rotation", "book", "Inbound", "m1", "--json")))
    assert booked["booked"] == "ann@acme.example"
    assert booked["overridden"] is False
    override = ok(cli("rotation", "book", "Inbound", "m2", "--member", "ann@acme.example"))
    assert "booked: ann@acme.example" in override
    assert "Suggested: bob@acme.example" in override
    toggled = json.loads(ok(cli("rotation", "toggle", "Inbound", "bob@acme.example", "--json")))
    assert [m["available"] for m in toggled["members"]] == [True, False]
    configured = json.loads(ok(cli("rotation", "configure", "Inbound", "ann@acme.example",
                                   "--weight", "2", "--daily-cap", "3", "--json")))  # fmt: skip
    assert (configured["members"][0]["weight"], configured["members"][0]["daily_cap"]) == (2, 3)
    ok(cli("rotation", "add-member", "Inbound", "cat@acme.example"))
    shown = json.loads(ok(cli("rotation", "show", "--json")))
    assert [(m["email"], m["count"]) for m in shown[0]["members"]] == [
        ("ann@acme.example", 0), ("bob@acme.example", 0), ("cat@acme.example", 0),
    ]  # fmt: skip
    table = ok(cli("rotation", "show", "Inbound"))
    assert "cat@acme.example" in table
    assert "never" in table
    assert "was not booked" in ok(cli("rotation", "unbook", "m9"))
    duplicate = cli("rotation", "book", "Inbound", "m1")
    assert isinstance(duplicate.exception, ConflictError)


def _code(sqlite_url: str) -> str:
    with Store(sqlite_url) as store, store.transaction() as uow:
        raw = uow.session.scalars(
            sa.select(OutboxMessageRow.raw).order_by(OutboxMessageRow.id.desc())
        ).first()
    assert raw is not None
    code = code_in(raw)
    assert code is not None
    return code


def test_senders_commands(cli: Run, sqlite_url: str) -> None:
    for email in ("old@acme.example", "new@acme.example"):
        added = json.loads(ok(cli("senders", "add", email, "--name", "Sales", "--profile", "rep",
                                  "--json")))  # fmt: skip
        assert added["status"] == "pending"
        ok(cli("senders", "confirm", email, _code(sqlite_url)))
    ok(cli("senders", "use", "invitations", "default", "old@acme.example"))
    edited = json.loads(ok(cli("senders", "edit", "old@acme.example", "--name", "Old Sales",
                               "--profile", "admin", "--profile", "rep", "--json")))  # fmt: skip
    assert (edited["display_name"], edited["profiles"]) == ("Old Sales", ["admin", "rep"])
    listed = json.loads(ok(cli("senders", "list", "--json")))
    assert [(a["email"], a["status"], a["uses"]) for a in listed] == [
        ("old@acme.example", "confirmed", [{"kind": "invitations", "ref": "default"}]),
        ("new@acme.example", "confirmed", []),
    ]
    refused = cli("senders", "delete", "old@acme.example")
    assert isinstance(refused.exception, ConflictError)
    moved = json.loads(ok(cli("senders", "delete", "old@acme.example",
                              "--replacement", "new@acme.example", "--json")))  # fmt: skip
    assert moved["moved"] == [{"kind": "invitations", "ref": "default"}]
    assert "new@acme.example" in ok(cli("senders", "list"))


def test_senders_resend_issues_a_new_code(cli: Run, sqlite_url: str) -> None:
    ok(cli("senders", "add", "desk@acme.example", "--name", "Desk", "--profile", "rep"))
    first = _code(sqlite_url)
    ok(cli("senders", "resend", "desk@acme.example"))
    second = _code(sqlite_url)
    assert first != second
    assert cli("senders", "confirm", "desk@acme.example", first).exit_code != 0
    assert "confirmed" in ok(cli("senders", "confirm", "desk@acme.example", second))


def test_senders_add_needs_a_from_address(tmp_path: Path, sqlite_url: str) -> None:
    upgrade(sqlite_url)
    config = tmp_path / "bare.toml"
    config.write_text(f'[store]\nurl = "{sqlite_url}"\n', encoding="utf-8")
    result = _runner(sqlite_url, config)(
        "senders", "add", "a@acme.example", "--name", "A", "--profile", "rep"
    )
    assert isinstance(result.exception, ConfigurationError)
    assert "smtp.from_address" in str(result.exception)


def test_contacts_commands(cli: Run, sqlite_url: str, make_meeting: Any) -> None:
    meeting = make_meeting(
        start=PAST,  # the CLI's clock is the real one: this meeting was held
        end=PAST + timedelta(hours=1),
        invitees=(Invitee("zed@client.example", "Zed"),),
    )
    with Store(sqlite_url) as store, store.transaction() as uow:
        uow.meetings.add(meeting)
    mine = json.loads(ok(cli("contacts", "mine", "--user", "olivia@acme.example", "--json")))
    assert [c["email"] for c in mine] == ["zed@client.example"]
    assert "zed@client.example" in ok(cli("contacts", "firm"))
    ok(cli("contacts", "set-company", "client.example", "--type", "client",
           "--partner", "olivia@acme.example"))  # fmt: skip
    ok(cli("contacts", "save-filter", "My clients", "--user", "olivia@acme.example",
           "--type", "client", "--partner", "me"))  # fmt: skip
    (saved,) = json.loads(ok(cli("contacts", "filters", "--user", "olivia@acme.example",
                                 "--json")))  # fmt: skip
    assert saved == {"name": "My clients", "scope": "firm", "type": "client", "partner": "me"}
    by_filter = json.loads(ok(cli("contacts", "companies", "--user", "olivia@acme.example",
                                  "--filter", "My clients", "--json")))  # fmt: skip
    assert [(c["domain"], c["type"], c["partner"]) for c in by_filter] == [
        ("client.example", "client", "olivia@acme.example")
    ]
    prospects = ok(cli("contacts", "companies", "--user", "olivia@acme.example",
                       "--type", "prospect"))  # fmt: skip
    assert "Nobody yet." in prospects


def test_trust_commands(cli: Run, sqlite_url: str) -> None:
    assert "olivia@acme.example: restricted" in ok(
        cli("rotation", "trust", "signup", "olivia@acme.example")
    )
    added = ok(cli("rotation", "trust", "add", "olivia@acme.example",
                   "--domain", "*.partner.example", "--address", "vip@gmail.com"))  # fmt: skip
    assert "trusts *.partner.example" in added
    assert "trusts vip@gmail.com" in added
    config = AssistantConfig(Sender("assistant@acme.example"), b"k" * 32, "https://x/")
    with Store(sqlite_url) as store, store.transaction() as uow:
        uow.repository(TrustRepository).receive(
            "olivia@acme.example", "eve@client.example", config=config, subject="Hello"
        )
    queue = json.loads(ok(cli("rotation", "trust", "requests", "olivia@acme.example", "--json")))
    assert [(r["from"], r["status"]) for r in queue] == [("eve@client.example", "pending")]
    assert "eve@client.example" in ok(cli("rotation", "trust", "requests", "olivia@acme.example"))


def test_assistant_config_signs_with_a_key_derived_from_the_session_secret() -> None:
    with pytest.raises(ConfigurationError, match=r"web\.session_secret"):
        assistant_config(Settings(), "assistant@acme.example")
    configured = Settings.model_validate(
        {"web": {"session_secret": "s3cret", "public_url": "https://meet.acme.example/"}}
    )
    config = assistant_config(configured, "assistant@acme.example", zone="Europe/Paris")
    assert config.approval_url == "https://meet.acme.example/approvals/"
    assert config.secret != b"s3cret"
    assert len(config.secret) == 32
    assert config.zone == "Europe/Paris"
