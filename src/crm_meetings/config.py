"""Settings: one TOML file plus ``CRM_MEETINGS_*`` environment variables (pydantic-settings).

Where a value comes from, highest priority first: arguments to ``Settings(...)``, environment
variables (``CRM_MEETINGS_SYNC__HOUR=3``: section and key joined by two underscores), the TOML
file (``crm-meetings.toml`` in the current directory, or ``--config PATH`` /
``CRM_MEETINGS_CONFIG``), then the defaults below.

Any secret ``x`` may instead be given as ``x_file``: the path of a file that holds only the
secret (Docker and systemd credentials). The file is read at load time, in the layer (file or
environment) that names it. Relative paths start from the current directory.

:func:`load_settings` is the entry point: it loads, validates, checks that every enabled
CRM and provider has its credentials, and registers every secret with
:mod:`crm_meetings.redaction`. Every problem is a :class:`~crm_meetings.errors.ConfigurationError`
that names the dotted key (``sync.timezone``), what is wrong, and what to do.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crm_meetings.errors import ConfigurationError
from crm_meetings.model import normalize_email
from crm_meetings.redaction import MASK, register_secrets

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_CONFIG",
    "ENV_PREFIX",
    "NOT_SET",
    "GoToSettings",
    "HubSpotSettings",
    "InboundSettings",
    "LogSettings",
    "SalesforceSettings",
    "Section",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "SyncSettings",
    "WebSettings",
    "ZohoSettings",
    "ZoomSettings",
    "env_name",
    "load_settings",
    "resolve_config_path",
]

ENV_PREFIX: Final = "CRM_MEETINGS_"
ENV_CONFIG: Final = "CRM_MEETINGS_CONFIG"
DEFAULT_CONFIG_FILE: Final = Path("crm-meetings.toml")
NOT_SET: Final = "(not set)"
_NESTED: Final = "__"
_FILE: Final = "_file"
_INVALID: Final = "crm_meetings_invalid"


def env_name(section: str, key: str) -> str:
    """The environment variable for ``section.key``, e.g. ``CRM_MEETINGS_SYNC__HOUR``."""
    return f"{ENV_PREFIX}{section.upper()}{_NESTED}{key.upper()}"


# --- value types ----------------------------------------------------------------------


def _invalid(message: str, hint: str) -> PydanticCustomError:
    """A validation failure that carries its own hint to the error message."""
    return PydanticCustomError(_INVALID, "{message}", {"message": message, "hint": hint})


def _check_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise _invalid(
            f"{value!r} is not an http(s) URL", "Give a full URL such as https://example.com."
        )
    return value.rstrip("/")


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(
            f"{value!r} is not a timezone",
            "Use an IANA name such as Europe/Paris, America/New_York or UTC.",
        ) from None
    return value


def _check_file(value: Path) -> Path:
    if not value.is_file():
        raise _invalid(
            f"{str(value)!r} is not an existing file",
            "Give the path of a readable file (relative paths start from the current directory).",
        )
    return value


def _check_email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError:
        raise _invalid(
            f"{value!r} is not an e-mail address", "Give a bare address such as meetings@acme.com."
        ) from None


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _org_id(pattern: str, what: str, hint: str) -> AfterValidator:
    """An org id checked against ``pattern``, with a hint saying where to find it."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _invalid(f"{value!r} is not a {what}", hint)
        return value

    return AfterValidator(check)


SalesforceOrgId = Annotated[
    str,
    _org_id(
        r"00D[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?",
        "Salesforce organization id",
        "Copy the 15- or 18-character Organization ID (00D…) from Setup > Company Information.",
    ),
]
ZohoOrgId = Annotated[
    str,
    _org_id(
        r"\d+",
        "Zoho org id",
        "Give the digits of org[0].id from GET /crm/v8/org (Setup > Company Details).",
    ),
]


def _json_table(value: object) -> object:
    """A table given in an environment variable, as a JSON object."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise _invalid(
            f"{value!r} is not a JSON object",
            'In the environment give a JSON object such as {"olivia@acme.com": "sales"}.',
        ) from None


Url = Annotated[str, AfterValidator(_check_url)]
Timezone = Annotated[str, AfterValidator(_check_timezone)]
ExistingFile = Annotated[Path, AfterValidator(_check_file)]
Email = Annotated[str, AfterValidator(_check_email)]
Port = Annotated[int, Field(ge=1, le=65535)]
Secret = SecretStr | None
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]
StringTable = Annotated[dict[str, str], BeforeValidator(_json_table)]


def _is_set(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return value is not None and value != ""


# --- sections -------------------------------------------------------------------------


class Section(BaseModel):
    """One ``[section]`` of the file: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: keys that must be set when the section's ``enabled`` is true
    required_when_enabled: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def secret_keys(cls) -> frozenset[str]:
        """The keys holding secrets (each may also be given as ``<key>_file``)."""
        return frozenset(name for name, info in cls.model_fields.items() if _is_secret_field(info))

    @classmethod
    def valid_keys(cls) -> list[str]:
        """Every key accepted in this section, ``_file`` variants included."""
        names = [info.alias or name for name, info in cls.model_fields.items()]
        return sorted([*names, *(f"{key}{_FILE}" for key in cls.secret_keys())])

    def missing(self) -> list[tuple[str, str]]:
        """``(key, reason)`` for each required key left unset."""
        if not getattr(self, "enabled", False):
            return []
        return [
            (key, "the section is enabled")
            for key in self.required_when_enabled
            if not _is_set(getattr(self, key))
        ]

    def secret_values(self) -> Iterator[str]:
        """The secret strings this section holds, for redaction."""
        for key in sorted(self.secret_keys()):
            value = getattr(self, key)
            if isinstance(value, SecretStr) and value.get_secret_value():
                yield value.get_secret_value()

    def redacted(self) -> dict[str, Any]:
        """Every key with a printable value; secrets as ``***`` or ``(not set)``."""
        secrets = self.secret_keys()
        shown: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name in secrets:
                value = MASK if _is_set(value) else NOT_SET
            elif isinstance(value, Path):
                value = str(value)
            shown[info.alias or name] = value
        return shown


def _is_secret_field(info: FieldInfo) -> bool:
    annotation = info.annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


class StoreSettings(Section):
    """The database: ``url`` (SQLAlchemy URL) or, if unset, SQLite in ``data_dir``."""

    url: str | None = None
    data_dir: Path = Path("data")

    def secret_values(self) -> Iterator[str]:
        password = urlsplit(self.url).password if self.url else None
        if password:
            yield password
            yield unquote(password)  # what the driver sends, e.g. p@ss for p%40ss

    def redacted(self) -> dict[str, Any]:
        values = super().redacted()
        if self.url:
            values["url"] = _mask_url_password(self.url)
        return values


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{netloc}"))


class _Remote(Section):
    """A vendor API: off unless ``enabled``; ``ca_bundle`` for private CAs (the sandbox)."""

    enabled: bool = False
    ca_bundle: ExistingFile | None = None


class SalesforceSettings(_Remote):
    """Salesforce: OAuth refresh token (client_secret + refresh_token) or JWT bearer."""

    instance_url: Url | None = None
    login_url: Url = "https://login.salesforce.com"
    api_version: Annotated[str, Field(pattern=r"^\d{2,3}\.0$")] = "62.0"
    client_id: str | None = None
    client_secret: Secret = None
    refresh_token: Secret = None
    username: str | None = None
    private_key_file: ExistingFile | None = None
    #: the org this connection serves (Setup > Company Information > Salesforce.com
    #: Organization ID, 15 or 18 characters); Canvas requests from another org are refused
    org_id: SalesforceOrgId | None = None

    def missing(self) -> list[tuple[str, str]]:
        if not self.enabled:
            return []
        needed: tuple[str, ...]
        if self.private_key_file is not None:
            needed = ("client_id", "username")
            reason = "salesforce uses the JWT bearer flow (private_key_file is set)"
        else:
            needed = ("client_id", "client_secret", "refresh_token")
            reason = "salesforce is enabled (or set username and private_key_file for JWT)"
        return [(key, reason) for key in needed if not _is_set(getattr(self, key))]


class HubSpotSettings(_Remote):
    """HubSpot: a private app's ``access_token``, or OAuth (client id/secret + refresh)."""

    base_url: Url = "https://api.hubapi.com"
    api_path_version: Annotated[str, Field(pattern=r"^v\d+$")] = "v3"
    access_token: Secret = None
    client_id: str | None = None
    client_secret: Secret = None
    refresh_token: Secret = None
    app_id: int | None = None
    #: the HubSpot account (portal, "Hub ID") this connection serves; signed calls from
    #: another portal are refused
    portal_id: Annotated[int, Field(gt=0)] | None = None

    def missing(self) -> list[tuple[str, str]]:
        oauth = ("client_id", "client_secret", "refresh_token")
        if not self.enabled or _is_set(self.access_token):
            return []
        if not any(_is_set(getattr(self, key)) for key in oauth):
            return [("access_token", "hubspot is enabled (or set the OAuth keys instead)")]
        reason = "hubspot uses OAuth (no access_token)"
        return [(key, reason) for key in oauth if not _is_set(getattr(self, key))]


ZOHO_DATA_CENTERS: Final[Mapping[str, tuple[str, str]]] = {
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "com.au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "uk": ("https://accounts.zoho.uk", "https://www.zohoapis.uk"),
    "com.cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
}


class ZohoSettings(_Remote):
    """Zoho CRM: self-client OAuth in one data center; URLs derive from ``data_center``."""

    required_when_enabled = ("client_id", "client_secret", "refresh_token")

    data_center: Literal["com", "eu", "in", "com.au", "jp", "ca", "sa", "uk", "com.cn"] = "com"
    accounts_url: Url | None = None
    api_domain: Url | None = None
    api_version: Annotated[str, Field(pattern=r"^v\d+$")] = "v8"
    client_id: str | None = None
    client_secret: Secret = None
    refresh_token: Secret = None
    #: the Zoho org this connection serves (``GET /crm/v8/org`` → ``org[0].id``), the
    #: widget token's ``org`` claim; tokens naming another org are refused
    org_id: ZohoOrgId | None = None

    @property
    def accounts_base(self) -> str:
        """The OAuth server: ``accounts_url`` or the data center's."""
        return self.accounts_url or ZOHO_DATA_CENTERS[self.data_center][0]

    @property
    def api_base(self) -> str:
        """The API domain: ``api_domain`` or the data center's."""
        return self.api_domain or ZOHO_DATA_CENTERS[self.data_center][1]


class GoToSettings(_Remote):
    """GoTo Meeting: OAuth authorization code with a stored refresh token."""

    required_when_enabled = ("client_id", "client_secret", "refresh_token")

    base_url: Url = "https://api.getgo.com"
    token_url: Url = "https://authentication.logmeininc.com/oauth/token"  # noqa: S105
    client_id: str | None = None
    client_secret: Secret = None
    refresh_token: Secret = None


class ZoomSettings(_Remote):
    """Zoom: Server-to-Server OAuth (account id + client credentials); webhook secret."""

    required_when_enabled = ("account_id", "client_id", "client_secret")

    base_url: Url = "https://api.zoom.us/v2"
    token_url: Url = "https://zoom.us/oauth/token"  # noqa: S105
    account_id: str | None = None
    client_id: str | None = None
    client_secret: Secret = None
    webhook_secret: Secret = None


_SMTP_PORTS: Final = {"none": 25, "starttls": 587, "tls": 465}


class SmtpSettings(Section):
    """Outgoing mail; unset ``host`` means mail is not configured."""

    host: str | None = None
    port: Port | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: Secret = None
    timeout: Annotated[float, Field(gt=0)] = 30.0
    from_address: Email | None = None
    reply_to: Email | None = None

    @property
    def effective_port(self) -> int:
        """``port``, or the usual port for ``security`` (25, 587 or 465)."""
        return self.port or _SMTP_PORTS[self.security]

    def missing(self) -> list[tuple[str, str]]:
        if _is_set(self.username) and not _is_set(self.password):
            return [("password", "smtp.username is set")]
        return []


class SyncSettings(Section):
    """The nightly history sync: when (``hour``:``minute`` in ``timezone``) and how."""

    enabled: bool = True
    hour: Annotated[int, Field(ge=0, le=23)] = 2
    minute: Annotated[int, Field(ge=0, le=59)] = 0
    timezone: Timezone = "UTC"
    overlap_minutes: Annotated[int, Field(ge=0, le=1440)] = 60
    misfire_grace_seconds: Annotated[int, Field(ge=1)] = 3600


class WebSettings(Section):
    """The HTTP server and the secrets that CRM-embedded pages are signed with."""

    host: str = "127.0.0.1"
    port: Port = 8000
    public_url: Url | None = None
    session_secret: Secret = None
    salesforce_canvas_secret: Secret = None
    hubspot_client_secret: Secret = None
    zoho_widget_secret: Secret = None
    #: HubSpot's signed card calls name no role: the CRM profile of each user (by e-mail),
    #: matched against the profiles an organisation address allows
    hubspot_profiles: StringTable = Field(default_factory=dict)


class InboundSettings(Section):
    """E-mail requests to the scheduling assistant: an SMTP listener the worker runs.

    Mail to ``assistant_address`` (handed over by the organisation's MX or a forwarding
    rule; keep ``host`` on loopback behind the MTA that checks SPF/DKIM/DMARC) becomes
    booking requests of the owners' trust circles in ``org`` (unset: the one org the enabled
    CRMs live under, as the CLI's ``--org``); replies choosing an offered time are
    scheduled. Offered times are in ``timezone``. Needs ``[web] session_secret``
    (approval links are signed with it).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 2525
    assistant_address: Email | None = None
    org: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    timezone: Timezone = "UTC"

    required_when_enabled: ClassVar[tuple[str, ...]] = ("assistant_address",)


class LogSettings(Section):
    """Log verbosity and format (``json`` for log collectors)."""

    level: LogLevel = "INFO"
    json_format: bool = Field(default=False, alias="json")  # `json` would shadow BaseModel.json


# --- where values come from -----------------------------------------------------------


class _Origin(NamedTuple):
    where: str
    env_var: str | None = None


@dataclass(frozen=True, slots=True)
class _Layers:
    """The raw values of each source, ``_file`` secrets resolved, and where each key was set."""

    env: dict[str, Any]
    toml: dict[str, Any]
    origins: dict[str, _Origin]


_LAYERS: ContextVar[_Layers | None] = ContextVar("crm_meetings_config_layers", default=None)


class _DictSource(PydanticBaseSettingsSource):
    """A settings source over an already-read mapping."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


class Settings(BaseSettings):
    """All settings; build with :func:`load_settings` (``Settings()`` skips the checks)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    store: StoreSettings = Field(default_factory=StoreSettings)
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)
    hubspot: HubSpotSettings = Field(default_factory=HubSpotSettings)
    zoho: ZohoSettings = Field(default_factory=ZohoSettings)
    goto: GoToSettings = Field(default_factory=GoToSettings)
    zoom: ZoomSettings = Field(default_factory=ZoomSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _LAYERS.get() or _read_layers(None, os.environ)
        return (
            init_settings,
            _DictSource(settings_cls, layers.env),
            _DictSource(settings_cls, layers.toml),
        )

    @classmethod
    def section_types(cls) -> dict[str, type[Section]]:
        """Section name → its model class."""
        types: dict[str, type[Section]] = {}
        for name, info in cls.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
                types[name] = info.annotation
        return types

    def sections(self) -> Iterator[tuple[str, Section]]:
        """``(name, section)`` in declaration order."""
        for name in self.section_types():
            yield name, getattr(self, name)

    def enabled_services(self) -> list[str]:
        """The CRMs and conferencing providers switched on, e.g. ``["salesforce", "zoom"]``."""
        return [
            name
            for name, section in self.sections()
            if isinstance(section, _Remote) and section.enabled
        ]

    def secret_values(self) -> list[str]:
        """Every secret string loaded, for :func:`crm_meetings.redaction.register_secrets`."""
        return [value for _, section in self.sections() for value in section.secret_values()]

    def redacted(self) -> dict[str, dict[str, Any]]:
        """All settings, printable: secrets as ``***`` (or ``(not set)``)."""
        return {name: section.redacted() for name, section in self.sections()}


def resolve_config_path(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The config file to read and whether it was named explicitly (then it must exist)."""
    env = os.environ if env is None else env
    if path is not None:
        return path, True
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]), True
    return DEFAULT_CONFIG_FILE, False


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and check the settings from the file at ``path`` and ``env`` (default: os.environ).

    Raises :class:`ConfigurationError` for a syntax error, an unknown key, a bad value, an
    unreadable secret file, or an enabled section without its credentials.
    """
    layers = _read_layers(path, os.environ if env is None else env)
    token = _LAYERS.set(layers)
    try:
        settings = Settings()
    except PydanticValidationError as exc:
        raise _translate(exc, layers.origins) from None
    finally:
        _LAYERS.reset(token)
    register_secrets(settings.secret_values())
    for name, section in settings.sections():
        for key, reason in section.missing():
            raise _missing(name, key, reason, type(section))
    return settings


def _read_layers(path: Path | None, env: Mapping[str, str]) -> _Layers:
    file, explicit = resolve_config_path(path, env)
    origins: dict[str, _Origin] = {}
    toml = _read_toml(file, explicit)
    _note_origins(toml, (), _Origin(f"in {file}"), origins)
    toml = _resolve_secret_files(toml, origins)
    environ = _resolve_secret_files(_read_env(env, origins), origins)  # notes last: it wins
    return _Layers(env=environ, toml=toml, origins=origins)


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _read_toml(file: Path, explicit: bool) -> dict[str, Any]:
    hint = "Fix it there; crm-meetings.example.toml shows every section and key."
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not explicit:
            return {}
        raise ConfigurationError(
            f"the config file {file} does not exist",
            hint=f"Check the path given with --config or {ENV_CONFIG}, "
            "or start from crm-meetings.example.toml.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigurationError(f"cannot read the config file {file}: {reason}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        if found is None:
            where = str(file)
        elif found[1]:
            where = f"{file}, line {found[1]}, column {found[2]}"
        else:
            where = f"{file}, line {len(text.splitlines())}, at the end of the file"
        message = message[: found.start()] if found else message
        raise ConfigurationError(f"{where}: invalid TOML: {message}", hint=hint) from None


def _note_origins(
    tree: Mapping[str, Any], prefix: tuple[str, ...], origin: _Origin, into: dict[str, _Origin]
) -> None:
    for key, value in tree.items():
        path = (*prefix, key)
        into[".".join(path)] = origin
        if isinstance(value, Mapping):
            _note_origins(value, path, origin, into)


def _read_env(env: Mapping[str, str], origins: dict[str, _Origin]) -> dict[str, Any]:
    """``CRM_MEETINGS_SECTION__KEY=value`` → ``{"section": {"key": "value"}}``; empty = unset."""
    sections = Settings.section_types()
    tree: dict[str, Any] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG or value == "":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, nested, key = rest.partition(_NESTED)
        if not nested:
            _reject_single_underscore(name, rest, sections)
            continue
        tree.setdefault(section, {})[key] = value
        origins.setdefault(section, _Origin("from the environment"))
        origins[f"{section}.{key}"] = _Origin(f"from {name}", name)
    return tree


def _reject_single_underscore(name: str, rest: str, sections: Mapping[str, type[Section]]) -> None:
    """``CRM_MEETINGS_SYNC_HOUR`` is a typo for ``CRM_MEETINGS_SYNC__HOUR``: say so."""
    for section, model in sections.items():
        key = rest.removeprefix(f"{section}_")
        if key != rest and key in model.valid_keys():
            raise _key_error(
                f"{section}.{key}",
                f"is not read from {name}: section and key are joined by two underscores",
                hint=f"Rename it to {env_name(section, key)}.",
            )


def _resolve_secret_files(tree: dict[str, Any], origins: dict[str, _Origin]) -> dict[str, Any]:
    """Replace each ``<secret>_file`` key by the secret read from that file."""
    sections = Settings.section_types()
    resolved: dict[str, Any] = {}
    for name, values in tree.items():
        model = sections.get(name)
        if model is None or not isinstance(values, Mapping):
            resolved[name] = values
            continue
        section = dict(values)
        for key in sorted(model.secret_keys()):
            file_key = f"{key}{_FILE}"
            if file_key not in section:
                continue
            if key in section:
                raise _key_error(
                    f"{name}.{key}",
                    f"is given twice, as {key} and as {file_key}",
                    hint=f"Keep one of them (one is {origins[f'{name}.{key}'].where}, "
                    f"the other {origins[f'{name}.{file_key}'].where}).",
                )
            section[key] = _read_secret_file(name, file_key, section.pop(file_key))
            origins[f"{name}.{key}"] = origins[f"{name}.{file_key}"]
        resolved[name] = section
    return resolved


def _read_secret_file(section: str, file_key: str, path: object) -> str:
    dotted = f"{section}.{file_key}"
    hint = (
        f"Check the path and its permissions, or give the secret itself in "
        f"{env_name(section, file_key.removesuffix(_FILE))}."
    )
    if not isinstance(path, str) or not path:
        raise _key_error(dotted, "must be the path of a file, as text", hint=hint)
    try:
        secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise _key_error(
            dotted, f"names {path}, which cannot be read ({reason})", hint=hint
        ) from None
    if not secret:
        raise _key_error(dotted, f"names {path}, which is empty", hint=hint)
    return secret


# --- error messages -------------------------------------------------------------------


def _key_error(key: str, message: str, *, hint: str) -> ConfigurationError:
    """``ConfigurationError`` reading "<key> <message>".

    Not "<key>: <message>": redaction masks the word after ``client_secret:`` or
    ``password:``, which would eat the message for exactly the keys that matter most.
    """
    error = ConfigurationError(f"{key} {message}", hint=hint)
    error.key = key
    return error


def _translate(exc: PydanticValidationError, origins: Mapping[str, _Origin]) -> ConfigurationError:
    """One ConfigurationError for all of pydantic's complaints, led by the first."""
    details = exc.errors(include_url=False)
    key, message, hint = _describe(details[0], origins)
    others = [".".join(str(part) for part in error["loc"]) for error in details[1:]]
    if others:
        message += f" (and {len(others)} more: {', '.join(others)})"
    return _key_error(key, message, hint=hint)


def _describe(error: ErrorDetails, origins: Mapping[str, _Origin]) -> tuple[str, str, str]:
    """``(dotted key, what is wrong, what to do)`` for one pydantic error."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    origin = origins.get(key, _Origin("in the settings"))
    sections = Settings.section_types()
    if error["type"] == "extra_forbidden":
        what = "key" if len(loc) > 1 else "section"
        return key, f"is not a known {what} ({origin.where})", _suggest(loc, origin, sections)
    if error["type"] == _INVALID:
        detail, hint = error["msg"], str((error.get("ctx") or {}).get("hint", ""))
    else:
        detail = error["msg"].removeprefix("Value error, ")
        detail = detail[:1].lower() + detail[1:]
        secret = len(loc) == 2 and loc[1] in sections.get(loc[0], Section).secret_keys()
        value = error.get("input")
        if not secret and isinstance(value, str | int | float) and not isinstance(value, bool):
            detail += f", got {value!r}"
        hint = ""
    fix = f"Correct {origin.env_var}." if origin.env_var else f"Correct it {origin.where}."
    return key, f"is invalid: {detail} ({origin.where})", hint or fix


def _suggest(loc: list[str], origin: _Origin, sections: Mapping[str, type[Section]]) -> str:
    """Did-you-mean for an unknown section or key, spelled as the user spelled the rest."""
    if len(loc) == 1:
        candidates, parent = list(sections), ""
    elif loc[0] in sections and len(loc) == 2:
        candidates, parent = sections[loc[0]].valid_keys(), loc[0]
    else:
        return "Remove it; see crm-meetings.example.toml for the valid keys."
    close = difflib.get_close_matches(loc[-1], candidates, n=1, cutoff=0.6)
    if not close:
        what = f"keys in [{parent}]" if parent else "sections"
        return f"Valid {what}: {', '.join(candidates)}."
    if origin.env_var:
        name = env_name(parent, close[0]) if parent else f"{ENV_PREFIX}{close[0].upper()}__…"
        return f"Did you mean {name}?"
    return f"Did you mean {parent + '.' if parent else ''}{close[0]}?"


def _missing(section: str, key: str, reason: str, model: type[Section]) -> ConfigurationError:
    dotted = f"{section}.{key}"
    if key in model.secret_keys():
        hint = (
            f"Set {env_name(section, key)}, or put the path of a file holding only the secret "
            f"in {dotted}{_FILE} (or {env_name(section, key + _FILE)})."
        )
    else:
        hint = f"Set {dotted} in the config file, or {env_name(section, key)}."
    return _key_error(dotted, f"is required because {reason}", hint=hint)
