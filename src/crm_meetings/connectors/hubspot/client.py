"""hubspot-api-client, pointed where we say, counted, retried and translated in one place.

The SDK builds one ``Configuration`` + ``ApiClient`` per sub-package (``crm.objects.meetings``,
``crm.associations.v4``, ``oauth``…). :class:`HubSpotHttp` passes its own ``api_factory``
to ``HubSpot(...)`` — the SDK's documented extension point — so that every sub-client:

- uses our ``host`` and CA bundle (``Configuration.host`` / ``ssl_ca_cert``), no urllib3
  retries (``retries=False``: retrying is ours), and is built once and reused;
- sends through :class:`_Rest`, a wrapper of the SDK's REST client that rewrites the path
  version (``/crm/v3/objects/…`` → ``/crm/objects/2026-03/…`` for date versions), sets the
  bearer token (so a refresh reaches every sub-client), a timeout, records the call in a
  :class:`~crm_meetings.transport.CallCounter`, reads the ``X-HubSpot-RateLimit-*`` headers,
  and turns the SDK's per-package ``ApiException`` and urllib3 errors into our error tree.

:meth:`HubSpotHttp.call` runs a request under :func:`crm_meetings.transport.retrying` and
refreshes the OAuth token once on a 401.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import urllib3
from hubspot import HubSpot

from crm_meetings.connectors.base import Budget
from crm_meetings.connectors.hubspot.mapping import VENDOR, error_from_hubspot
from crm_meetings.errors import AuthExpiredError, RefreshFailedError, RemoteError
from crm_meetings.transport import CallCounter, RetryPolicy, retrying

__all__ = ["HubSpotHttp", "OAuthCredentials"]

T = TypeVar("T")
DEFAULT_BASE_URL: Final = "https://api.hubapi.com"
DEFAULT_POLICY: Final = RetryPolicy()
_VERSIONED: Final = re.compile(r"^/crm/v3/(objects|properties|owners|schemas)/")
_ID_SEGMENT: Final = re.compile(r"/(\d+)(?=/|$)")
_DATE_VERSION: Final = re.compile(r"^\d{4}-\d{2}$")


def versioned_path(path: str, version: str) -> str:
    """``/crm/v3/objects/x`` in the wanted version: ``v3`` or a date (``2026-03``)."""
    if version == "v3":
        return path
    return _VERSIONED.sub(lambda m: f"/crm/{m.group(1)}/{version}/", path)


def endpoint_of(path: str, query: str = "") -> str:
    """A path with record ids replaced, for call accounting; a read by a unique property
    (``?idProperty=…``) has that property's value as its last segment."""
    if "idProperty=" in query:
        path = path.rsplit("/", 1)[0] + "/{id}"
    return _ID_SEGMENT.sub("/{id}", path)


class OAuthCredentials:
    """What refreshing needs; ``on_refresh`` persists the new access token."""

    def __init__(
        self,
        refresh_token: str,
        client_id: str,
        client_secret: str,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        self.refresh_token = refresh_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.on_refresh = on_refresh


class _Rest:
    """The SDK's REST client, wrapped: every request of every sub-client passes here."""

    def __init__(self, inner: Any, http: HubSpotHttp) -> None:
        self._inner = inner
        self._http = http

    def request(
        self,
        method: str,
        url: str,
        query_params: Any = None,
        headers: Mapping[str, str] | None = None,
        post_params: Any = None,
        body: Any = None,
        _preload_content: bool = True,
        _request_timeout: Any = None,
    ) -> Any:
        parts = urlsplit(url)
        path = versioned_path(parts.path, self._http.api_version)
        url = urlunsplit(parts._replace(path=path))
        sent = dict(headers or {})
        if not path.startswith("/oauth/v1/token"):
            sent["Authorization"] = f"Bearer {self._http.access_token}"
        endpoint = endpoint_of(path, parts.query or str(query_params or ""))
        try:
            response = self._inner.request(
                method,
                url,
                query_params=query_params,
                headers=sent,
                post_params=post_params,
                body=body,
                _preload_content=True,
                _request_timeout=_request_timeout or self._http.timeout,
            )
        except urllib3.exceptions.HTTPError as error:
            self._http.calls.record(VENDOR, endpoint, method, None)
            raise ConnectionError(f"hubspot: {method} {path}: {error}") from error
        except Exception as error:
            status = getattr(error, "status", None)
            if not isinstance(status, int):
                raise
            self._http.calls.record(VENDOR, endpoint, method, status or None)
            if status == 0:  # the SDK's wrapping of a TLS failure
                raise RemoteError(
                    str(getattr(error, "reason", error)),
                    vendor=VENDOR,
                    hint="Check the HubSpot base URL and the CA bundle (ca_path).",
                ) from error
            found = dict(getattr(error, "headers", None) or {})
            self._http.observe(found)
            raise error_from_hubspot(status, _body(getattr(error, "body", None)), found) from error
        self._http.calls.record(VENDOR, endpoint, method, response.status)
        self._http.observe(dict(response.getheaders()))
        return response

    def __getattr__(self, name: str) -> Any:
        if name in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"):
            return lambda url, **kw: self.request(name, url, **kw)
        return getattr(self._inner, name)


def _body(raw: Any) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:300]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:300]}


class HubSpotHttp:
    """The SDK client, its sub-clients, the call counter, the budget and the token."""

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        ca_path: str | Path | None = None,
        api_version: str = "v3",
        oauth: OAuthCredentials | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] | None = None,
        timeout: float = 30.0,
        calls: CallCounter | None = None,
    ) -> None:
        if api_version != "v3" and not _DATE_VERSION.match(api_version):
            raise ValueError(f"api_version {api_version!r} is neither 'v3' nor a date like 2026-03")
        self.access_token = access_token
        self.api_version = api_version
        self.oauth = oauth
        self.retry_policy = retry_policy
        self.sleep = sleep
        self.timeout = timeout
        self.calls = calls or CallCounter()
        self._budget = Budget()
        self._lock = threading.Lock()
        self._apis: dict[tuple[str, str], Any] = {}
        self.sdk = HubSpot(
            access_token=access_token,
            host=base_url.rstrip("/"),
            ssl_ca_cert=str(ca_path) if ca_path else None,
            api_factory=self._api_factory,
        )

    def _api_factory(self, package: ModuleType, api_name: str, config: Mapping[str, Any]) -> Any:
        key = (package.__name__, api_name)
        with self._lock:
            if key not in self._apis:
                configuration = package.Configuration()
                configuration.host = config["host"]
                configuration.access_token = config.get("access_token")
                if config.get("ssl_ca_cert"):
                    configuration.ssl_ca_cert = config["ssl_ca_cert"]
                configuration.retries = False
                client = package.ApiClient(configuration=configuration)
                client.user_agent = "crm-meetings (hubspot-api-client)"
                client.rest_client = _Rest(client.rest_client, self)
                self._apis[key] = getattr(package, api_name)(api_client=client)
            return self._apis[key]

    def close(self) -> None:
        """Close every pooled connection of every sub-client."""
        with self._lock:
            apis = list(self._apis.values())
        for api in apis:
            pools = api.api_client.rest_client._inner.pool_manager.pools
            for key in list(pools.keys()):  # urllib3 2.x: clear() alone leaves them open
                pools[key].close()
            pools.clear()

    # --- budget -------------------------------------------------------------------------

    def observe(self, headers: Mapping[str, str]) -> None:
        """Keep the budget the ``X-HubSpot-RateLimit-*`` headers report."""
        lowered = {k.lower(): v for k, v in headers.items()}
        prefix = "x-hubspot-ratelimit-"
        found = {k[len(prefix) :]: v for k, v in lowered.items() if k.startswith(prefix)}
        if not found:
            return
        daily, left = found.get("daily"), found.get("daily-remaining")
        interval, interval_left = found.get("max"), found.get("remaining")
        limit, remaining = (daily, left) if daily and left else (interval, interval_left)
        budget = Budget(
            used=int(limit) - int(remaining) if limit and remaining else None,
            limit=int(limit) if limit else None,
            observed_at=datetime.now(UTC),
            extra=dict(sorted(found.items())),
        )
        with self._lock:
            self._budget = budget

    @property
    def budget(self) -> Budget:
        with self._lock:
            return self._budget

    # --- calls --------------------------------------------------------------------------

    def call(self, request: Callable[[], Any], *, idempotent: bool) -> Any:
        """Run one SDK request (``_preload_content=False``) and return its JSON body.

        Retries per :func:`~crm_meetings.transport.should_retry`; a 401 refreshes the
        token once (when OAuth credentials are configured) and repeats the request.
        """

        self.ensure_token()

        def attempt() -> Any:
            try:
                return request()
            except AuthExpiredError:
                if self.oauth is None:
                    raise
                self.refresh()
                try:
                    return request()
                except AuthExpiredError as error:
                    raise RefreshFailedError(
                        "the refreshed token was rejected too",
                        vendor=VENDOR,
                        status=error.status,
                        vendor_code=error.vendor_code,
                        request_id=error.request_id,
                    ) from error

        kwargs: dict[str, Any] = {"idempotent": idempotent, "policy": self.retry_policy}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        try:
            response = retrying(**kwargs)(attempt)
        except ConnectionError as error:
            raise RemoteError(
                f"could not reach HubSpot: {error}",
                vendor=VENDOR,
                hint="Check the network and the HubSpot base URL; the sync resumes later.",
            ) from error
        data = getattr(response, "data", b"")
        return json.loads(data) if data else None

    def ensure_token(self) -> None:
        """Get a first access token when only a refresh token is configured."""
        if not self.access_token and self.oauth is not None:
            self.refresh()

    def refresh(self) -> str:
        """Exchange the refresh token for a new access token (``POST /oauth/v1/token``)."""
        oauth = self.oauth
        if oauth is None:
            raise RefreshFailedError("no refresh token is configured", vendor=VENDOR)
        try:
            response = self.sdk.oauth.tokens_api.create(
                grant_type="refresh_token",
                refresh_token=oauth.refresh_token,
                client_id=oauth.client_id,
                client_secret=oauth.client_secret,
                _preload_content=False,
            )
        except (RemoteError, ValueError) as error:
            status = getattr(error, "status", None)
            raise RefreshFailedError(
                f"refreshing the access token failed: {error}", vendor=VENDOR, status=status
            ) from error
        token = json.loads(response.data)["access_token"]
        self.access_token = token
        if oauth.on_refresh is not None:
            oauth.on_refresh(token)
        return str(token)
