"""The Zoho CRM connector: Zoho's REST API v8 over httpx.

Why not an SDK
--------------
- ``zcrmsdk`` 3.1.0 (2021, API v2) fails at import on Python 3.11: it imports
  ``mysql.connector`` without declaring it.
- The current official SDK (``zohocrmsdk8-0``) imports and can be pointed at a custom URL,
  but it keeps one process-global ``Initializer`` (one Zoho org per process; switching
  orgs swaps global state under every thread), refreshes the access token only when its
  stored expiry says so (a 401 from a token revoked or expired early is returned to the
  caller, not retried), and persists tokens in plaintext files or MySQL through its own
  token stores.
- crm-meetings needs several orgs in one worker, tokens kept in our own store, an explicit
  refresh on ``INVALID_TOKEN`` (once, then a clear error), one retry policy and per-call
  accounting shared with the other connectors. The API itself is plain JSON over HTTPS, so
  one small client (:class:`ZohoConnector`, ~one instance per org) does all of it with
  httpx, which the project already depends on. The requests it sends are the documented
  ones (``Authorization: Zoho-oauthtoken …``, ``/crm/v8/…``), checked by replay tests
  against the examples Zoho publishes (``recordings/zoho/``).

Calls
-----
Reads: ``GET /Events/{id}``, ``GET /Events`` (``fields``, ``page``/``per_page`` ≤ 200,
``page_token`` past 2,000 records, ``If-Modified-Since``), ``GET /Events/deleted``, ``POST
/coql`` (records related to an Account/Deal/Contact; an Event by its UID; stored history
hashes, outside a sync run). Writes, ≤ 100 records per call with per-record results: ``POST
/Events`` (insert), ``PUT /Events/{id}``, ``DELETE /Events/{id}``, ``POST
/CRM_Meeting_Sessions/upsert``, ``POST /Notes`` (a sent e-mail logged as a note; ``GET
/{module}/{id}/Notes`` before a replay). Metadata for ``check()``:
``users?type=CurrentUser``, ``settings/fields``, ``settings/layouts``.

Retries (:func:`crm_meetings.transport.retrying`, in :meth:`ZohoConnector._call` only):
429 waits for ``details.retry_after`` (or ``Retry-After``/``X-RATELIMIT-RESET``), 5xx and
connection errors back off with jitter. Inserts are safe to replay: ``CRM_Meetings_Id`` is
a unique field, so a replayed insert answers ``DUPLICATE_DATA`` naming the record the first
attempt made, which counts as success.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx

from crm_meetings.config import ZOHO_DATA_CENTERS
from crm_meetings.connectors.base import (
    BatchResult,
    Budget,
    ChangePage,
    CheckResult,
    HistoryItem,
    HistoryRun,
    RecordType,
    SentEmail,
)
from crm_meetings.connectors.zoho.mapping import (
    EVENT_FIELDS,
    HISTORY_FIELDS,
    HISTORY_MODULE,
    MEETINGS_CUSTOM_FIELDS,
    mail_marker,
    meeting_from_zoho,
    module_of,
    note_parents,
    note_record,
    session_record,
    zoho_changes,
    zoho_record,
)
from crm_meetings.errors import (
    AuthError,
    AuthExpiredError,
    ConfigurationError,
    CrmMeetingsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RefreshFailedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import CrmKind, Meeting, MeetingChange, RecordRef, Session
from crm_meetings.transport import CallCounter, RetryPolicy, retrying

__all__ = ["DATA_CENTERS", "ZohoConnector", "ZohoCredentials"]

VENDOR: Final = "zoho"
BATCH_LIMIT: Final = 100
PAGE_SIZE: Final = 200
COQL_IN_LIMIT: Final = 50
CURSOR_OVERLAP: Final = timedelta(seconds=1)
DEFAULT_POLICY: Final = RetryPolicy()

#: data center -> (API domain, accounts server), as Zoho's multi-DC page lists them
#: data center -> (API domain, accounts server); one table, kept in the settings
DATA_CENTERS: Final[Mapping[str, tuple[str, str]]] = {
    center: (api, accounts) for center, (accounts, api) in ZOHO_DATA_CENTERS.items()
}
#: Zoho field -> the meeting field it carries, to name fields in our terms
_MODEL_FIELD: Final[Mapping[str, str]] = {
    "Event_Title": "subject",
    "Start_DateTime": "start",
    "End_DateTime": "end",
    "Description": "description",
    "Venue": "location",
    "Participants": "invitees",
    "What_Id": "related",
    "Who_Id": "related",
    "$se_module": "related",
    "Join_URL": "join_url",
}
_SCOPES: Final = (
    "ZohoCRM.modules.ALL, ZohoCRM.settings.fields.READ, ZohoCRM.settings.layouts.READ, "
    "ZohoCRM.users.READ, ZohoCRM.org.READ, ZohoCRM.coql.READ"
)

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ZohoCredentials:
    """A connected app's client and the org's refresh token (from our own token store)."""

    client_id: str
    client_secret: str
    refresh_token: str
    access_token: str | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"ZohoCredentials(client_id={self.client_id!r}, …)"


class _Dropped(ConnectionError):
    """The connection failed before Zoho answered (retryable for idempotent calls)."""


class ZohoConnector:
    """One Zoho CRM org's meetings (Events) and history (``CRM_Meeting_Sessions``).

    ``data_center`` picks the API and accounts hosts (:data:`DATA_CENTERS`); ``api_url``
    and ``accounts_url`` override them (the sandbox). ``verify`` is a CA bundle path or an
    ``SSLContext``. ``on_token`` receives each new access token, for our token store.
    ``owner_ids`` maps organizer e-mails to Zoho user ids (filled by :meth:`users`).
    ``transport`` replaces the network (replay tests).
    """

    crm = CrmKind.ZOHO
    batch_limit = BATCH_LIMIT

    def __init__(
        self,
        credentials: ZohoCredentials,
        *,
        data_center: str = "com",
        api_url: str | None = None,
        accounts_url: str | None = None,
        verify: ssl.SSLContext | str | Path | bool = True,
        timeout: float = 30.0,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] | None = None,
        on_token: Callable[[str], None] | None = None,
        owner_ids: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.BaseTransport | None = None,
        api_version: str = "v8",
    ) -> None:
        if not re.fullmatch(r"v\d+", api_version):
            raise ConfigurationError(
                f"{api_version!r} is not a Zoho API version", key="zoho.api_version",
                hint="Use v8 (the version this connector is tested against).",
            )  # fmt: skip
        self.api_path = f"/crm/{api_version}"
        if data_center not in DATA_CENTERS:
            raise ConfigurationError(
                f"unknown data center {data_center!r}; valid: {', '.join(DATA_CENTERS)}",
                key="zoho.data_center",
            )
        default_api, default_accounts = DATA_CENTERS[data_center]
        self.api_url = (api_url or default_api).rstrip("/")
        self.accounts_url = (accounts_url or default_accounts).rstrip("/")
        self._api_url_fixed = api_url is not None
        self._credentials = credentials
        self._access_token = credentials.access_token
        self._policy = retry_policy
        self._sleep = sleep
        self._on_token = on_token
        self._clock = clock
        self.owner_ids: dict[str, str] = dict(owner_ids or {})
        self.calls = CallCounter()
        self._budget = Budget()
        context = (
            ssl.create_default_context(cafile=str(verify))
            if isinstance(verify, str | Path)
            else verify
        )
        self._http = httpx.Client(verify=context, timeout=timeout, transport=transport)
        weakref.finalize(self, self._http.close)  # an abandoned connector leaks no sockets

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ZohoConnector:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- transport: the one place that retries, refreshes and maps errors -------------

    def refresh(self) -> str:
        """A new access token from the accounts server (``grant_type=refresh_token``)."""
        form = {
            "grant_type": "refresh_token",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret,
            "refresh_token": self._credentials.refresh_token,
        }
        endpoint = "/oauth/v2/token"
        try:
            response = self._http.post(self.accounts_url + endpoint, data=form)
        except httpx.HTTPError as error:
            self.calls.record(VENDOR, endpoint, "POST", None)
            raise RefreshFailedError(
                f"could not reach the accounts server {self.accounts_url}: {error}",
                vendor=VENDOR,
                hint="Check zoho.data_center / zoho.accounts_url and the network.",
            ) from error
        self.calls.record(VENDOR, endpoint, "POST", response.status_code)
        body = _json(response)
        token = body.get("access_token")
        if response.status_code != 200 or "error" in body or not isinstance(token, str):
            raise RefreshFailedError(
                "the accounts server refused the refresh token",
                vendor=VENDOR,
                status=response.status_code,
                vendor_code=str(body.get("error") or "") or None,
            )
        self._access_token = token
        domain = body.get("api_domain")
        if isinstance(domain, str) and domain and not self._api_url_fixed:
            self.api_url = domain.rstrip("/")
        if self._on_token is not None:
            self._on_token(token)
        return token

    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        path: str | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one API request (retried, refreshed once); ``endpoint`` is its template.

        Returns 2xx/304 responses, and 400s that carry per-record results (``data``).
        """
        if self._access_token is None:
            self.refresh()
        refreshed = False
        while True:
            try:
                response: httpx.Response | None = None
                for attempt in retrying(idempotent=True, policy=self._policy, sleep=self._sleep):
                    with attempt:
                        response = self._send(method, endpoint, path, params, json, headers)
                assert response is not None
                return response
            except AuthExpiredError as expired:
                if refreshed:
                    raise RefreshFailedError(
                        "Zoho still refuses the access token right after a refresh",
                        vendor=VENDOR,
                        status=expired.status,
                        vendor_code=expired.vendor_code,
                    ) from expired
                self.refresh()
                refreshed = True
            except _Dropped as error:
                raise RemoteError(
                    f"no answer from {self.api_url}: {error}",
                    vendor=VENDOR,
                    hint="Check zoho.data_center / zoho.api_url and the network, then retry.",
                ) from error

    def _send(
        self,
        method: str,
        endpoint: str,
        path: str | None,
        params: Mapping[str, str | int] | None,
        body: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        url = self.api_url + self.api_path + (path if path is not None else endpoint)
        auth = {"Authorization": f"Zoho-oauthtoken {self._access_token}", **(headers or {})}
        try:
            response = self._http.request(method, url, params=params, json=body, headers=auth)
        except httpx.HTTPError as error:
            self.calls.record(VENDOR, self.api_path + endpoint, method, None)
            raise _Dropped(str(error) or type(error).__name__) from error
        self.calls.record(VENDOR, self.api_path + endpoint, method, response.status_code)
        self._observe_budget(response)
        if response.status_code < 300 or response.status_code == 304:
            return response
        body_json = _json(response)
        if response.status_code == 400 and isinstance(body_json.get("data"), list):
            return response
        raise _response_error(response, body_json)

    def _observe_budget(self, response: httpx.Response) -> None:
        limit = _int(response.headers.get("X-RATELIMIT-LIMIT"))
        remaining = _int(response.headers.get("X-RATELIMIT-REMAINING"))
        if limit is None or remaining is None:
            return
        reset = response.headers.get("X-RATELIMIT-RESET", "")
        self._budget = Budget(
            used=max(0, limit - remaining),
            limit=limit,
            observed_at=self._clock(),
            extra={"reset": reset} if reset else {},
        )

    # --- meetings ---------------------------------------------------------------------

    def get(self, record_id: str) -> Meeting:
        _check_id(record_id)
        response = self._call(
            "GET",
            "/Events/{id}",
            path=f"/Events/{record_id}",
            params={"fields": ",".join(EVENT_FIELDS)},
        )
        rows = _json(response).get("data") if response.status_code == 200 else None
        if not rows:
            raise NotFoundError(f"zoho: no Event {record_id}")
        return meeting_from_zoho(rows[0])

    def find_by_uid(self, uid: str) -> Meeting | None:
        """A COQL query on ``CRM_Meetings_UID`` (``=`` is an exact match), then the Event by
        id. Not the search API: its ``equals`` "behaves like contains" and it needs the
        ``ZohoSearch.securesearch.READ`` scope too (zoho.com/crm/developer/docs/api/v8/
        search-records.html). A deleted Event is in the recycle bin, which COQL does not
        read: ``None``."""
        quoted = "'" + uid.replace("'", "''") + "'"
        rows, _ = self._coql(
            f"select id from Events where CRM_Meetings_UID = {quoted} limit 1"  # noqa: S608 - quoted
        )
        if not rows:
            return None
        try:
            return self.get(str(rows[0]["id"]))
        except NotFoundError:  # deleted between the two reads
            return None

    def record_visible(self, ref: RecordRef) -> bool:
        """Whether the record exists and this org's credentials see it (one GET, id only)."""
        module = module_of(ref)
        if not ref.record_id.isdigit() or not _API_NAME.fullmatch(module):
            return False
        response = self._call(
            "GET",
            "/{module}/{id}",
            path=f"/{module}/{ref.record_id}",
            params={"fields": "id"},
        )
        return response.status_code == 200 and bool(_json(response).get("data"))

    def create(self, meeting: Meeting) -> Meeting:
        ((result, modified),) = self._insert([meeting])
        if not result.ok:
            assert result.error is not None
            raise result.error
        return dataclasses.replace(
            meeting, crm_record_id=result.record_id, crm_modified_at=modified or self._clock()
        )

    def create_many(self, meetings: Sequence[Meeting]) -> list[BatchResult]:
        return [result for result, _ in self._insert(meetings)]

    def _insert(self, meetings: Sequence[Meeting]) -> list[tuple[BatchResult, datetime | None]]:
        """Insert Events ≤ 100 per call; each result with the record's ``Modified_Time``."""
        out: list[tuple[BatchResult, datetime | None]] = []
        for chunk in _chunks(list(meetings), BATCH_LIMIT):
            bodies: list[Json | CrmMeetingsError] = []
            for meeting in chunk:
                try:
                    owner = self.owner_ids.get(meeting.organizer.email)
                    bodies.append(zoho_record(meeting, owner_id=owner))
                except ValidationError as error:
                    bodies.append(error)
            sendable = [b for b in bodies if isinstance(b, dict)]
            entries = iter(self._write("POST", "/Events", sendable) if sendable else [])
            for meeting, body in zip(chunk, bodies, strict=True):
                if isinstance(body, CrmMeetingsError):
                    out.append((BatchResult(meeting.id, False, error=body), None))
                    continue
                entry = next(entries)
                modified = _parse_time((entry.get("details") or {}).get("Modified_Time"))
                out.append(
                    (_record_result(meeting.id, entry, replay_field="CRM_Meetings_Id"), modified)
                )
        return out

    def _write(self, method: str, endpoint: str, rows: list[Json], **extra: Any) -> list[Json]:
        """One batch write; the per-record entries, in request order."""
        response = self._call(method, endpoint, json={"data": rows, **extra})
        entries = _json(response).get("data")
        if not isinstance(entries, list) or len(entries) != len(rows):
            raise RemoteError(
                f"{method} {endpoint} answered {len(entries or [])} results for {len(rows)} "
                "records",
                vendor=VENDOR,
                status=response.status_code,
            )
        return entries

    def update(self, meeting: Meeting, change: MeetingChange) -> Meeting:
        if not change:
            return meeting
        body = zoho_changes(meeting, change, owner_id=self.owner_ids.get(meeting.organizer.email))
        record_id = body["id"]
        _check_id(record_id)
        response = self._call(
            "PUT", "/Events/{id}", path=f"/Events/{record_id}", json={"data": [body]}
        )
        (entry,) = _json(response).get("data") or [{}]
        result = _record_result(meeting.id, entry)
        if not result.ok:
            error = result.error
            if isinstance(error, ValidationError) and error.field == "id":
                raise NotFoundError(f"zoho: no Event {record_id}") from error
            assert error is not None
            raise error
        modified = _parse_time((entry.get("details") or {}).get("Modified_Time"))
        return dataclasses.replace(meeting, crm_modified_at=modified or self._clock())

    def delete(self, record_id: str) -> None:
        _check_id(record_id)
        response = self._call("DELETE", "/Events/{id}", path=f"/Events/{record_id}")
        (entry,) = _json(response).get("data") or [{"status": "success"}]
        if entry.get("status") == "success" or entry.get("code") == "INVALID_DATA":
            return  # INVALID_DATA for a delete: the record is already gone
        raise _entry_error(entry)

    def list_for_record(self, ref: RecordRef) -> Iterator[Meeting]:
        module = module_of(ref)
        _check_id(ref.record_id)
        column = "Who_Id" if module == "Contacts" else "What_Id"
        offset = 0
        while True:
            rows, more = self._coql(
                f"select id from Events where {column} = '{ref.record_id}' "  # noqa: S608 - numeric id
                f"limit {PAGE_SIZE} offset {offset}"
            )
            ids = [str(r["id"]) for r in rows]
            for chunk in _chunks(ids, BATCH_LIMIT):
                yield from self._events_by_ids(chunk)
            if not more:
                return
            offset += PAGE_SIZE

    def _events_by_ids(self, ids: list[str]) -> Iterator[Meeting]:
        response = self._call(
            "GET",
            "/Events",
            params={"ids": ",".join(ids), "fields": ",".join(EVENT_FIELDS)},
        )
        if response.status_code == 200:
            for record in _json(response).get("data") or ():
                yield meeting_from_zoho(record)

    def _coql(self, query: str) -> tuple[list[Json], bool]:
        response = self._call("POST", "/coql", json={"select_query": query})
        if response.status_code == 204:
            return [], False
        body = _json(response)
        return list(body.get("data") or ()), bool((body.get("info") or {}).get("more_records"))

    def changed_since(self, cursor: str | None) -> Iterator[ChangePage]:
        since = _parse_time(cursor) if cursor else None
        if cursor and since is None:
            raise ValidationError("cursor", f"{cursor!r} is not a Zoho change cursor")
        mark = since
        headers = (
            {"If-Modified-Since": (since - CURSOR_OVERLAP).isoformat(timespec="seconds")}
            if since
            else None
        )
        yielded = False
        params: dict[str, str | int] = {
            "fields": ",".join(EVENT_FIELDS),
            "sort_by": "Modified_Time",
            "sort_order": "asc",
            "per_page": PAGE_SIZE,
        }
        for rows in self._pages("/Events", params, headers):
            meetings = tuple(meeting_from_zoho(r) for r in rows)
            mark = _latest(mark, (m.crm_modified_at for m in meetings))
            yielded = True
            yield ChangePage(meetings, (), _cursor(mark), full_scan=since is None)
        if since is not None:
            deleted_params: dict[str, str | int] = {"type": "all", "per_page": PAGE_SIZE}
            for rows in self._pages("/Events/deleted", deleted_params, headers):
                ids = tuple(str(r["id"]) for r in rows)
                mark = _latest(mark, (_parse_time(r.get("deleted_time")) for r in rows))
                yielded = True
                yield ChangePage((), ids, _cursor(mark))
        if not yielded:
            yield ChangePage((), (), _cursor(mark), full_scan=since is None)

    def _pages(
        self, endpoint: str, params: Mapping[str, str | int], headers: Mapping[str, str] | None
    ) -> Iterator[list[Json]]:
        """Zoho's pager: ``page`` 1, 2, … or ``page_token`` when given; a repeat is an error."""
        query: dict[str, str | int] = {**params, "page": 1}
        seen: set[str] = set()
        while True:
            response = self._call("GET", endpoint, params=query, headers=headers)
            if response.status_code in (204, 304):
                return
            body = _json(response)
            yield list(body.get("data") or ())
            info = body.get("info") or {}
            if not info.get("more_records"):
                return
            token = info.get("next_page_token")
            if token:
                if token in seen:
                    raise RemoteError(
                        f"{endpoint} repeated page token {token}", vendor=VENDOR, status=200
                    )
                seen.add(token)
                query = {**params, "page_token": str(token)}
            else:
                query = {**query, "page": int(query.get("page", 1)) + 1}

    # --- history ----------------------------------------------------------------------

    def write_history_many(
        self, items: Sequence[HistoryItem], *, run: HistoryRun | None = None
    ) -> list[BatchResult]:
        """Upsert one ``CRM_Meeting_Sessions`` record per session on ``Provider_Session_Id``
        (≤ 100 per call). Unless ``run.checked`` (the engine compared the sessions with its
        store already), first read the stored ``History_Hash`` of those sessions (COQL, ≤ 50
        per read) and skip the unchanged ones, so that a replay leaves the records untouched.
        """
        sessions: dict[str, tuple[str | None, Session]] = {}
        for item in items:
            for session in item.sessions:
                sessions[session.provider_session_id] = (item.meeting.crm_record_id, session)
        results: dict[str, BatchResult] = {}
        for key, (event_id, _session) in sessions.items():
            if not event_id:
                results[key] = BatchResult(
                    key, False, error=ValidationError("crm_record_id", "meeting not in Zoho")
                )
        pending = [
            (key, session_record(str(event_id), session))
            for key, (event_id, session) in sessions.items()
            if key not in results
        ]
        if run is None or not run.checked:
            pending = self._changed_only(pending, results)
        for batch in _chunks(pending, BATCH_LIMIT):
            entries = self._write(
                "POST",
                f"/{HISTORY_MODULE}/upsert",
                [record for _, record in batch],
                duplicate_check_fields=["Provider_Session_Id"],
            )
            for (key, _), entry in zip(batch, entries, strict=True):
                results[key] = _record_result(key, entry)
        return [results[key] for key in sessions]

    # --- logged e-mail ----------------------------------------------------------------

    def log_emails(self, emails: Sequence[SentEmail]) -> list[BatchResult]:
        """One note per e-mail and record (``POST /Notes``, ≤ 100 per call).

        Zoho's Emails related list is read-only through the API and ``send_mail`` would
        send the message again, so a note is the honest record of a message sent
        elsewhere. Notes have no unique field: for an e-mail an earlier attempt may have
        logged (``maybe_logged``), the parent's notes are read first (``GET
        /{module}/{id}/Notes``) and a note carrying its key line is not written again.
        """
        results = [BatchResult(e.key, True) for e in emails]
        logged = self._logged_keys(
            {parent for e in emails if e.maybe_logged for parent in note_parents(e)}
        )
        pending: list[tuple[int, Json]] = []
        for index, email in enumerate(emails):
            parents = note_parents(email)
            if not parents:
                error = ValidationError("related", "the meeting has no Zoho record to log it on")
                results[index] = BatchResult(email.key, False, error=error)
            for module, record_id in parents:
                if (module, record_id, email.key) not in logged:
                    pending.append((index, note_record(email, module, record_id)))
        for batch in _chunks(pending, BATCH_LIMIT):
            entries = self._write("POST", "/Notes", [row for _, row in batch])
            for (index, _), entry in zip(batch, entries, strict=True):
                result, current = _record_result(emails[index].key, entry), results[index]
                if current.ok and (not result.ok or current.record_id is None):
                    results[index] = result  # the first failure, else the first note's id
        return results

    def _logged_keys(self, parents: set[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """``(module, record id, key)`` of the e-mails already noted on ``parents``."""
        found: set[tuple[str, str, str]] = set()
        for module, record_id in sorted(parents):
            _check_id(record_id)
            page = 1
            while True:
                response = self._call(
                    "GET",
                    "/{module}/{id}/Notes",
                    path=f"/{module}/{record_id}/Notes",
                    params={"fields": "Note_Content", "page": page, "per_page": PAGE_SIZE},
                )
                body = _json(response) if response.status_code == 200 else {}
                for note in body.get("data") or ():
                    for line in str(note.get("Note_Content") or "").splitlines():
                        key = line.removeprefix(mail_marker(""))
                        if key != line:
                            found.add((module, record_id, key))
                if not (body.get("info") or {}).get("more_records"):
                    break
                page += 1
        return found

    def _changed_only(
        self, records: list[tuple[str, Json]], results: dict[str, BatchResult]
    ) -> list[tuple[str, Json]]:
        """The records Zoho does not hold as they are (by ``History_Hash``); the others are
        answered into ``results`` with their stored id."""
        changed: list[tuple[str, Json]] = []
        for chunk in _chunks(records, COQL_IN_LIMIT):
            stored = self._stored_history([key for key, _ in chunk])
            for key, record in chunk:
                known = stored.get(key)
                if known is not None and known[1] == record["History_Hash"]:
                    results[key] = BatchResult(key, True, record_id=known[0])
                else:
                    changed.append((key, record))
        return changed

    def _stored_history(self, keys: list[str]) -> dict[str, tuple[str, str]]:
        values = ", ".join("'" + k.replace("'", "''") + "'" for k in keys)
        rows, _ = self._coql(
            f"select Provider_Session_Id, History_Hash from {HISTORY_MODULE} "  # noqa: S608 - quoted
            f"where Provider_Session_Id in ({values}) limit {COQL_IN_LIMIT}"
        )
        return {
            str(r["Provider_Session_Id"]): (str(r["id"]), str(r.get("History_Hash") or ""))
            for r in rows
        }

    # --- metadata, doctor -------------------------------------------------------------

    def users(self) -> dict[str, str]:
        """Active users by e-mail → id; remembered as :attr:`owner_ids`."""
        response = self._call("GET", "/users", params={"type": "ActiveUsers"})
        for user in _json(response).get("users") or ():
            if user.get("email"):
                self.owner_ids[str(user["email"]).lower()] = str(user["id"])
        return dict(self.owner_ids)

    def whoami(self) -> Json:
        response = self._call("GET", "/users", params={"type": "CurrentUser"})
        (user,) = _json(response).get("users") or [{}]
        return dict(user)

    def record_types(self) -> list[RecordType]:
        response = self._call("GET", "/settings/layouts", params={"module": "Events"})
        return [
            RecordType(
                id=str(layout["id"]),
                name=str(layout.get("name") or layout["id"]),
                active=layout.get("status", "active") == "active",
                default=layout.get("name") == "Standard",
            )
            for layout in _json(response).get("layouts") or ()
        ]

    def budget(self) -> Budget:
        return self._budget

    def check(self) -> list[CheckResult]:
        checks = [self._check_credentials()]
        if not checks[0].ok:
            return checks
        checks.append(
            self._check_fields("Events", MEETINGS_CUSTOM_FIELDS, unique="CRM_Meetings_Id")
        )
        checks.append(
            self._check_fields(HISTORY_MODULE, HISTORY_FIELDS, unique="Provider_Session_Id")
        )
        budget = self._budget
        remaining = budget.remaining
        checks.append(
            CheckResult(
                "zoho.budget",
                remaining is None or remaining > 0,
                "no limit headers seen"
                if remaining is None
                else f"{remaining} of {budget.limit} API credits left today",
                "" if remaining else "Wait for the daily reset or buy API credits in Zoho.",
            )
        )
        return checks

    def _check_credentials(self) -> CheckResult:
        try:
            user = self.whoami()
        except AuthError as error:
            return CheckResult(
                "zoho.credentials",
                False,
                error.message,
                f"Create a new refresh token for the connected app (scopes {_SCOPES}) and "
                "store it as zoho.refresh_token; check zoho.client_id / client_secret.",
            )
        except RemoteError as error:
            return CheckResult(
                "zoho.credentials",
                False,
                error.message,
                f"Check zoho.data_center or zoho.api_url (now {self.api_url}).",
            )
        return CheckResult(
            "zoho.credentials", True, f"signed in as {user.get('email')} at {self.api_url}"
        )

    def _check_fields(self, module: str, required: Sequence[str], *, unique: str) -> CheckResult:
        name = f"zoho.fields.{module}"
        where = "Setup > Customization > Modules and Fields"
        try:
            response = self._call("GET", "/settings/fields", params={"module": module})
        except RemoteError as error:
            if error.vendor_code == "INVALID_MODULE":
                return CheckResult(
                    name,
                    False,
                    f"the module {module} does not exist",
                    f"Create the custom module {module} in {where} with the fields "
                    f"{', '.join(required)} (see the README).",
                )
            raise
        fields = {str(f.get("api_name")): f for f in _json(response).get("fields") or ()}
        missing = [f for f in required if f not in fields]
        if missing:
            return CheckResult(
                name,
                False,
                f"{module} lacks {', '.join(missing)}",
                f"Add {', '.join(missing)} to {module} in {where} (API names exactly so).",
            )
        if not (fields[unique].get("unique") or {}):
            return CheckResult(
                name,
                False,
                f"{module}.{unique} allows duplicate values",
                f"Tick 'Do not allow duplicate values' on {module}.{unique} in {where}.",
            )
        return CheckResult(name, True, f"{module} has the {len(required)} fields crm-meetings uses")


# --- pure helpers -------------------------------------------------------------------------


def _json(response: httpx.Response) -> Json:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _latest(mark: datetime | None, moments: Iterator[datetime | None] | Any) -> datetime | None:
    for moment in moments:
        if moment is not None and (mark is None or moment > mark):
            mark = moment
    return mark


def _cursor(mark: datetime | None) -> str | None:
    return mark.astimezone(UTC).isoformat(timespec="seconds") if mark else None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_API_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


def _check_id(record_id: str) -> None:
    if not record_id.isdigit():
        raise NotFoundError(f"zoho: {record_id!r} is not a Zoho record id")


def _retry_after(response: httpx.Response, body: Json) -> float | None:
    details = body.get("details") or {}
    for value in (
        details.get("retry_after"),
        response.headers.get("Retry-After"),
        response.headers.get("X-RATELIMIT-RESET"),
    ):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return None


def _response_error(response: httpx.Response, body: Json) -> CrmMeetingsError:
    """The one table from a whole-request Zoho error to :mod:`crm_meetings.errors`."""
    status = response.status_code
    code = str(body.get("code") or "") or None
    message = str(body.get("message") or response.reason_phrase or "error")
    if status == 401:
        return AuthExpiredError(message, vendor=VENDOR, status=status, vendor_code=code)
    if status == 429 or code in ("TOO_MANY_REQUESTS", "LIMIT_REACHED"):
        return RateLimitedError(
            message,
            vendor=VENDOR,
            retry_after=_retry_after(response, body),
            status=status,
            vendor_code=code,
        )
    if status == 403 or code == "NO_PERMISSION":
        return PermissionDeniedError(
            f"zoho: {message} ({code})",
            hint="Give the API user's profile access to Events and CRM_Meeting_Sessions.",
        )
    if status == 400 and (body.get("details") or {}).get("api_name"):
        return _entry_error(body)
    return RemoteError(message, vendor=VENDOR, status=status, vendor_code=code)


def _entry_error(entry: Mapping[str, Any]) -> CrmMeetingsError:
    """A per-record ``{code, details, message, status}`` error as our error."""
    details = entry.get("details") or {}
    code = str(entry.get("code") or "ERROR")
    message = str(entry.get("message") or "rejected")
    api_name = details.get("api_name")
    if api_name:
        field = _MODEL_FIELD.get(str(api_name), str(api_name))
        extra = ", ".join(
            f"{k} {v}"
            for k, v in details.items()
            if k not in ("api_name", "json_path") and not isinstance(v, dict)
        )
        return ValidationError(
            field,
            f"Zoho rejected {api_name}: {message} ({code}{', ' + extra if extra else ''})",
        )
    return RemoteError(message, vendor=VENDOR, status=400, vendor_code=code)


def _record_result(key: str, entry: Mapping[str, Any], *, replay_field: str = "") -> BatchResult:
    details = entry.get("details") or {}
    if entry.get("status") == "success":
        return BatchResult(key, True, record_id=str(details.get("id")))
    if (
        entry.get("code") == "DUPLICATE_DATA"
        and replay_field
        and (details.get("api_name") == replay_field)
    ):
        return BatchResult(key, True, record_id=str(details.get("id")))  # a replayed insert
    return BatchResult(key, False, error=_entry_error(entry))
