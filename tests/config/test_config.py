"""Settings: TOML file + environment, every mistake named by its key with a way to fix it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from crm_meetings.config import (
    HubSpotSettings,
    SalesforceSettings,
    Section,
    Settings,
    ZohoSettings,
    ZoomSettings,
    env_name,
    load_settings,
)
from crm_meetings.errors import ConfigurationError
from crm_meetings.redaction import MASK, redact

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "crm-meetings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None = None, env: dict[str, str] | None = None) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path, env or {})
    return caught.value


def test_defaults_apply_when_there_is_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings == Settings()
    assert (settings.sync.hour, settings.sync.minute, settings.sync.timezone) == (2, 0, "UTC")
    assert settings.store.url is None
    assert settings.store.data_dir == Path("data")
    assert not settings.salesforce.enabled
    assert settings.log.level == "INFO"


def test_the_file_in_the_current_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[sync]\nhour = 4\ntimezone = "Europe/Paris"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert (settings.sync.hour, settings.sync.timezone) == (4, "Europe/Paris")


def test_bad_toml_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[sync]\nhour = 3\ntimezone = "UTC\n')
    error = load_error(path)
    assert str(path) in error.message
    assert "line 3" in error.message
    assert re.search(r"column \d+", error.message)
    assert "invalid TOML" in error.message


def test_toml_that_ends_too_soon_names_the_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync]\nhour = [1,\n")
    error = load_error(path)
    assert error.message == f"{path}, line 2, at the end of the file: invalid TOML: Invalid value"


def test_unknown_key_names_its_path_and_suggests_the_closest(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "[sync]\nhuor = 3\n"))
    assert error.key == "sync.huor"
    assert error.message.startswith("sync.huor is not a known key")
    assert str(tmp_path) in error.message
    assert error.hint == "Did you mean sync.hour?"


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "[salesforse]\nenabled = true\n"))
    assert error.key == "salesforse"
    assert "not a known section" in error.message
    assert error.hint == "Did you mean salesforce?"


def test_unknown_environment_key_suggests_the_variable() -> None:
    error = load_error(env={"CRM_MEETINGS_SYNC__HOURS": "3"})
    assert error.key == "sync.hours"
    assert "CRM_MEETINGS_SYNC__HOURS" in error.message
    assert error.hint == "Did you mean CRM_MEETINGS_SYNC__HOUR?"


def test_single_underscore_between_section_and_key_is_pointed_out() -> None:
    error = load_error(env={"CRM_MEETINGS_SYNC_HOUR": "3"})
    assert error.key == "sync.hour"
    assert "two underscores" in error.message
    assert error.hint == "Rename it to CRM_MEETINGS_SYNC__HOUR."


def test_unrelated_crm_meetings_variables_are_ignored() -> None:
    settings = load_settings(env={"CRM_MEETINGS_TEST_POSTGRES": "x", "CRM_MEETINGS_LOG__JSON": ""})
    assert not settings.log.json_format


def test_bad_timezone_asks_for_an_iana_name(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, '[sync]\ntimezone = "Paris"\n'))
    assert error.key == "sync.timezone"
    assert "sync.timezone is invalid: 'Paris' is not a timezone" in error.message
    assert "IANA name such as Europe/Paris" in error.hint


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CRM_MEETINGS_SYNC__HOUR": "24"}, "less than or equal to 23, got '24'"),
        ({"CRM_MEETINGS_SYNC__HOUR": "-1"}, "greater than or equal to 0, got '-1'"),
        ({"CRM_MEETINGS_SYNC__HOUR": "three"}, "valid integer"),
    ],
)
def test_bad_hour_says_what_is_allowed(env: dict[str, str], expected: str) -> None:
    error = load_error(env=env)
    assert error.key == "sync.hour"
    assert expected in error.message
    assert "(from CRM_MEETINGS_SYNC__HOUR)" in error.message
    assert error.hint == "Correct CRM_MEETINGS_SYNC__HOUR."


def test_bad_hour_in_the_file_points_at_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync]\nhour = 25\n")
    error = load_error(path)
    assert error.message.startswith("sync.hour is invalid: input should be less than or equal")
    assert error.hint == f"Correct it in {path}."


def test_every_bad_value_is_counted(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, '[sync]\nhour = 25\nminute = 60\ntimezone = "Nowhere"\n'))
    assert "(and 2 more: sync.minute, sync.timezone)" in error.message


@pytest.mark.parametrize(
    ("section", "needed"),
    [
        ("salesforce", "client_id"),
        ("hubspot", "access_token"),
        ("zoho", "client_id"),
        ("goto", "client_id"),
        ("zoom", "account_id"),
    ],
)
def test_enabled_service_without_credentials_names_the_first_missing_key(
    section: str, needed: str
) -> None:
    error = load_error(env={env_name(section, "enabled"): "true"})
    assert error.key == f"{section}.{needed}"
    assert error.message.startswith(f"{section}.{needed} is required because")


@pytest.mark.parametrize(
    ("section", "given"),
    [
        ("salesforce", ("client_id", "refresh_token")),
        ("zoho", ("client_id", "refresh_token")),
        ("goto", ("client_id", "refresh_token")),
        ("zoom", ("account_id", "client_id")),
    ],
)
def test_missing_secret_says_both_ways_to_give_it(section: str, given: tuple[str, ...]) -> None:
    env = {env_name(section, key): f"{key}-value" for key in given}
    env[env_name(section, "enabled")] = "1"
    error = load_error(env=env)
    assert error.key == f"{section}.client_secret"
    assert f"{section}.client_secret is required" in error.message
    assert env_name(section, "client_secret") in error.hint
    assert f"{section}.client_secret_file" in error.hint
    assert env_name(section, "client_secret_file") in error.hint


def test_hubspot_oauth_needs_all_three_keys() -> None:
    error = load_error(
        env={"CRM_MEETINGS_HUBSPOT__ENABLED": "yes", env_name("hubspot", "client_id"): "id"}
    )
    assert error.key == "hubspot.client_secret"


def test_salesforce_jwt_needs_a_username_not_a_secret(tmp_path: Path) -> None:
    key = tmp_path / "jwt.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    env = {
        "CRM_MEETINGS_SALESFORCE__ENABLED": "true",
        "CRM_MEETINGS_SALESFORCE__CLIENT_ID": "3MVG9",
        "CRM_MEETINGS_SALESFORCE__PRIVATE_KEY_FILE": str(key),
    }
    assert load_error(env=env).key == "salesforce.username"
    env["CRM_MEETINGS_SALESFORCE__USERNAME"] = "integration@acme.com"
    assert load_settings(env=env).salesforce.private_key_file == key


def test_smtp_username_needs_a_password() -> None:
    error = load_error(env={"CRM_MEETINGS_SMTP__USERNAME": "mailer"})
    assert error.key == "smtp.password"
    assert "smtp.username is set" in error.message


def test_disabled_services_need_nothing() -> None:
    settings = load_settings(env={})
    for section in (settings.salesforce, settings.hubspot, settings.zoho, settings.zoom):
        assert section.missing() == []


def test_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[sync]\nhour = 4\ntimezone = "Europe/Paris"\n')
    settings = load_settings(path, {"CRM_MEETINGS_SYNC__HOUR": "3"})
    assert settings.sync.hour == 3
    assert settings.sync.timezone == "Europe/Paris"


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync]\nminute = 30\n", name="elsewhere.toml")
    assert load_settings(env={"CRM_MEETINGS_CONFIG": str(path)}).sync.minute == 30


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    error = load_error(tmp_path / "missing.toml")
    assert "missing.toml does not exist" in error.message
    assert "--config" in error.hint


def test_secret_from_a_file_is_read_stripped_and_redacted(tmp_path: Path) -> None:
    secret_file = tmp_path / "zoho_secret"
    secret_file.write_text("zoho-client-secret-from-file\n", encoding="utf-8")
    path = write(
        tmp_path,
        f'[zoho]\nenabled = true\nclient_id = "1000.ABC"\n'
        f'client_secret_file = "{secret_file}"\nrefresh_token = "1000.refresh-token-in-toml"\n',
    )
    settings = load_settings(path, {})
    assert settings.zoho.client_secret is not None
    assert settings.zoho.client_secret.get_secret_value() == "zoho-client-secret-from-file"
    assert redact("got zoho-client-secret-from-file back") == f"got {MASK} back"
    assert redact("token 1000.refresh-token-in-toml") == f"token {MASK}"


def test_secret_file_from_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("pat-na1-from-env-file", encoding="utf-8")
    path = write(tmp_path, '[hubspot]\naccess_token = "pat-na1-from-toml"\n')
    settings = load_settings(path, {"CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN_FILE": str(secret_file)})
    assert settings.hubspot.access_token is not None
    assert settings.hubspot.access_token.get_secret_value() == "pat-na1-from-env-file"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = load_error(env={"CRM_MEETINGS_SMTP__PASSWORD_FILE": str(missing)})
    assert error.key == "smtp.password_file"
    assert f"smtp.password_file names {missing}, which cannot be read" in error.message
    assert "CRM_MEETINGS_SMTP__PASSWORD" in error.hint


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    error = load_error(env={"CRM_MEETINGS_WEB__SESSION_SECRET_FILE": str(empty)})
    assert error.key == "web.session_secret_file"
    assert "which is empty" in error.message


def test_secret_and_secret_file_together_are_ambiguous(tmp_path: Path) -> None:
    path = write(tmp_path, '[zoom]\nwebhook_secret = "abcdefgh"\nwebhook_secret_file = "x"\n')
    error = load_error(path)
    assert error.key == "zoom.webhook_secret"
    assert "given twice" in error.message


def test_file_variant_only_exists_for_secrets(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, '[sync]\nhour_file = "/tmp/hour"\n'))
    assert error.key == "sync.hour_file"
    assert "not a known key" in error.message


def test_redacted_settings_hide_every_secret(tmp_path: Path) -> None:
    env = {
        "CRM_MEETINGS_STORE__URL": "postgresql://crm:db-password-123@127.0.0.1:5432/crm",
        "CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN": "pat-na1-very-secret",
        "CRM_MEETINGS_WEB__SESSION_SECRET": "session-secret-value",
    }
    shown = load_settings(env=env).redacted()
    text = repr(shown)
    for secret in ("db-password-123", "pat-na1-very-secret", "session-secret-value"):
        assert secret not in text
    assert shown["store"]["url"] == f"postgresql://crm:{MASK}@127.0.0.1:5432/crm"
    assert shown["hubspot"]["access_token"] == MASK
    assert shown["hubspot"]["client_secret"] == "(not set)"
    assert shown["log"] == {"level": "INFO", "json": False}
    assert redact("connecting with db-password-123") == f"connecting with {MASK}"


def test_zoho_urls_follow_the_data_center() -> None:
    assert ZohoSettings(data_center="eu").accounts_base == "https://accounts.zoho.eu"
    assert ZohoSettings(data_center="ca").accounts_base == "https://accounts.zohocloud.ca"
    assert ZohoSettings(data_center="com.au").api_base == "https://www.zohoapis.com.au"
    custom = ZohoSettings(data_center="eu", api_domain="https://127.0.0.1:8443/")
    assert custom.api_base == "https://127.0.0.1:8443"
    error = load_error(env={"CRM_MEETINGS_ZOHO__DATA_CENTER": "us"})
    assert error.key == "zoho.data_center"
    assert "'com', 'eu'" in error.message


def test_urls_must_be_http(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, '[hubspot]\nbase_url = "api.hubapi.com"\n'))
    assert error.key == "hubspot.base_url"
    assert "not an http(s) URL" in error.message
    assert "https://" in error.hint


def test_log_level_is_case_insensitive_and_json_is_a_key() -> None:
    settings = load_settings(
        env={"CRM_MEETINGS_LOG__LEVEL": "debug", "CRM_MEETINGS_LOG__JSON": "1"}
    )
    assert (settings.log.level, settings.log.json_format) == ("DEBUG", True)


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(PydanticValidationError):
        settings.sync.hour = 5  # type: ignore[misc]


def test_the_orgs_served_and_hubspot_profiles_come_from_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    file = tmp_path / "crm-meetings.toml"
    file.write_text(
        '[salesforce]\norg_id = "00D5g0000000001AAA"\n[hubspot]\nportal_id = 62515\n'
        '[zoho]\norg_id = "5725767000000000001"\n'
        '[web]\nhubspot_profiles = { "olivia@acme.com" = "sales" }\n',
        encoding="utf-8",
    )
    loaded = load_settings(file, {})
    assert (loaded.salesforce.org_id, loaded.hubspot.portal_id, loaded.zoho.org_id) == (
        "00D5g0000000001AAA",
        62515,
        "5725767000000000001",
    )
    assert loaded.web.hubspot_profiles == {"olivia@acme.com": "sales"}
    env = {"CRM_MEETINGS_WEB__HUBSPOT_PROFILES": '{"bob@acme.com": "admin"}'}
    assert load_settings(file, env).web.hubspot_profiles == {"bob@acme.com": "admin"}
    with pytest.raises(ConfigurationError, match="not a JSON object") as raised:
        load_settings(file, {"CRM_MEETINGS_WEB__HUBSPOT_PROFILES": "bob=admin"})
    assert "CRM_MEETINGS_WEB__HUBSPOT_PROFILES" in str(raised.value)
    with pytest.raises(ConfigurationError, match=r"salesforce\.org_id"):
        load_settings(file, {"CRM_MEETINGS_SALESFORCE__ORG_ID": "not-an-org"})


def test_smtp_port_follows_security() -> None:
    assert load_settings(env={"CRM_MEETINGS_SMTP__SECURITY": "tls"}).smtp.effective_port == 465
    assert load_settings(env={"CRM_MEETINGS_SMTP__PORT": "2525"}).smtp.effective_port == 2525


def test_the_example_file_loads_and_shows_every_key() -> None:
    example = REPO / "crm-meetings.example.toml"
    assert load_settings(example, {}) == Settings()
    parts = re.split(r"^\[(\w+)\]$", example.read_text(encoding="utf-8"), flags=re.MULTILINE)
    blocks = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert list(blocks) == list(Settings.section_types())
    for name, section in Settings.section_types().items():
        for key in section.valid_keys():
            if not key.endswith("_file") or key == "private_key_file":
                shown = re.search(rf"^#? ?{key}(_file)? = ", blocks[name], re.MULTILINE)
                assert shown, f"{name}.{key} is missing from crm-meetings.example.toml"


@pytest.mark.parametrize("model", [SalesforceSettings, HubSpotSettings, ZohoSettings, ZoomSettings])
def test_every_credential_is_a_secret(model: type[Section]) -> None:
    secrets = model.secret_keys()
    assert "client_secret" in secrets
    assert "client_id" not in secrets


def test_enabled_services_lists_crms_and_providers_switched_on() -> None:
    env = {
        "CRM_MEETINGS_HUBSPOT__ENABLED": "true",
        "CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN": "pat-na1-token",
        "CRM_MEETINGS_ZOOM__ENABLED": "true",
        "CRM_MEETINGS_ZOOM__ACCOUNT_ID": "acc",
        "CRM_MEETINGS_ZOOM__CLIENT_ID": "cid",
        "CRM_MEETINGS_ZOOM__CLIENT_SECRET": "zoom-client-secret",
    }
    assert load_settings(env=env).enabled_services() == ["hubspot", "zoom"]
    assert load_settings(env={}).enabled_services() == []


def test_store_url_password_is_registered_encoded_and_decoded() -> None:
    env = {"CRM_MEETINGS_STORE__URL": "postgresql://crm:p%40ss-word-42@db:5432/crm"}
    settings = load_settings(env=env)
    assert settings.redacted()["store"]["url"] == f"postgresql://crm:{MASK}@db:5432/crm"
    assert redact("password p@ss-word-42 rejected") == f"password {MASK} rejected"
