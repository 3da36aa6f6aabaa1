"""The Salesforce connector on simple-salesforce: Events, EventRelations and history.

Every request goes through :meth:`SalesforceConnector._call`: errors are translated at
that boundary (``errors.translate``), retried by the shared tenacity policy, and an
expired session is refreshed once (OAuth refresh-token grant) before a clear
``RefreshFailedError``; the new token comes from the refresh-token grant or, when a
``username`` and a private key are configured, the JWT bearer grant (a fresh RS256
assertion each time). All writes are idempotent — Events are created by upsert on the
``Meeting_Id__c`` external id, history by upsert on its external ids — so every call
may be retried. A ``requests`` response hook counts each call and reads
``Sforce-Limit-Info`` into :meth:`budget`.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError

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
from crm_meetings.connectors.salesforce import mapping as m
from crm_meetings.connectors.salesforce.errors import VENDOR, record_error, translate
from crm_meetings.errors import (
    AuthError,
    AuthExpiredError,
    CrmMeetingsError,
    NotFoundError,
    RefreshFailedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import CrmKind, Meeting, MeetingChange, RecordRef
from crm_meetings.transport import CallCounter, RetryPolicy, retrying

__all__ = ["DEFAULT_API_VERSION", "SalesforceConnector"]

T = TypeVar("T")
DEFAULT_API_VERSION: Final = "62.0"
BATCH_LIMIT: Final = 200  # sObject Collections
IDS_PER_QUERY: Final = 200  # keeps a GET query URL well under 16 KB
UPDATED_WINDOW: Final = timedelta(days=30)
DELETED_WINDOW: Final = timedelta(days=15)
WINDOW_MARGIN: Final = timedelta(minutes=5)
DEFAULT_POLICY: Final = RetryPolicy()
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME: Final = timedelta(minutes=3)  # Salesforce refuses assertions valid longer
_LIMIT_INFO: Final = re.compile(r"api-usage=(\d+)/(\d+)")
_ID_SEGMENT: Final = re.compile(r"^(?=.*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?(?:-\d+)?$")
_DATA_PREFIX: Final = re.compile(r"^/services/data/v[\d.]+/")
_DUPLICATE_OF: Final = re.compile(r"duplicates value on record with id: ?([A-Za-z0-9]{15,18})")


def _duplicate_of(result: Mapping[str, Any], field: str) -> str | None:
    """The existing record a DUPLICATE_VALUE on ``field`` names (a replayed insert)."""
    for error in result.get("errors") or []:
        message = str(error.get("message", ""))
        named = field in (error.get("fields") or []) or field in message
        if error.get("statusCode") == "DUPLICATE_VALUE" and named:
            found = _DUPLICATE_OF.search(message)
            if found:
                return found[1]
    return None


def endpoint_of(url: str) -> str:
    """A URL as an endpoint template: ``sobjects/Event/{id}``, ``query``, ``oauth2/token``."""
    path = urlsplit(url).path
    path = _DATA_PREFIX.sub("", path).removeprefix("/services/").strip("/")
    return "/".join("{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/"))


class _TimeoutAdapter(HTTPAdapter):
    """Puts a timeout on every request (simple-salesforce does not pass one everywhere)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _event(sf: Salesforce) -> SFType:
    """The SDK's Event handle (``sf.Event``, typed)."""
    return cast(SFType, sf.Event)


def _floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


_API_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_RECORD_ID: Final = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class SalesforceConnector:
    """Meetings as Salesforce Events (see ``crm_meetings.connectors.salesforce``)."""

    crm = CrmKind.SALESFORCE
    batch_limit = BATCH_LIMIT

    def __init__(
        self,
        *,
        instance_url: str,
        access_token: str | None,
        api_version: str = DEFAULT_API_VERSION,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str | None = None,
        username: str | None = None,
        private_key: str | bytes | None = None,
        audience: str | None = None,
        ca_path: str | Path | None = None,
        timeout: float = 30.0,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        calls: CallCounter | None = None,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self.api_version = api_version
        self.token_url = token_url or f"{self.instance_url}/services/oauth2/token"
        self._refresh_token = refresh_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._private_key = private_key
        parts = urlsplit(self.token_url)
        self.audience = (audience or f"{parts.scheme}://{parts.netloc}").rstrip("/")
        self.retry_policy = retry_policy
        self._sleep = sleep
        self._clock = clock
        self.calls = calls or CallCounter()
        self._budget = Budget()
        self._users: dict[str, str] = {}  # organizer e-mail -> User id, learned from reads
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(ca_path) if ca_path else True
        adapter = _TimeoutAdapter(timeout)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.hooks["response"].append(self._observe)
        weakref.finalize(self, self.session.close)  # no socket left for the GC to warn about
        self._sf: Salesforce | None = None
        if access_token:
            self._connect(access_token, self.instance_url)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SalesforceConnector:
        """From ``Settings.salesforce``; the first call gets a token.

        JWT bearer when ``username`` and ``private_key_file`` are set (the assertion's
        audience is ``login_url``), the refresh-token grant otherwise.
        """

        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        login_url = str(settings.login_url).rstrip("/")
        jwt_flow: dict[str, Any] = {}
        if settings.username and settings.private_key_file is not None:
            jwt_flow = {
                "username": settings.username,
                "private_key": Path(settings.private_key_file).read_bytes(),
                "audience": login_url,
            }
        values: dict[str, Any] = {
            "instance_url": str(settings.instance_url or settings.login_url),
            "access_token": None,
            "api_version": settings.api_version,
            "refresh_token": secret(settings.refresh_token),
            "client_id": settings.client_id,
            "client_secret": secret(settings.client_secret),
            "token_url": f"{login_url}/services/oauth2/token",
            "ca_path": settings.ca_bundle,
            **jwt_flow,
        }
        return cls(**{**values, **overrides})

    # --- transport --------------------------------------------------------------------

    def _connect(self, token: str, instance_url: str) -> None:
        self.instance_url = instance_url.rstrip("/")
        self._sf = Salesforce(
            instance_url=self.instance_url,
            session_id=token,
            version=self.api_version,
            session=self.session,
        )

    def close(self) -> None:
        """Close the pooled HTTPS connections."""
        self.session.close()

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self._refresh()
        assert self._sf is not None
        return self._sf

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.calls.record(
            VENDOR,
            endpoint_of(response.url),
            response.request.method or "GET",
            response.status_code,
        )
        found = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if found:
            self._budget = Budget(int(found[1]), int(found[2]), self._clock())

    @property
    def uses_jwt(self) -> bool:
        """Whether tokens come from the JWT bearer grant (``username`` + private key)."""
        return bool(self._username and self._private_key)

    def _assertion(self) -> str:
        """An RS256 JWT: iss = client id, sub = username, aud = login URL, exp ≤ 3 min."""
        if not self._client_id:
            raise RefreshFailedError(
                "the JWT bearer flow needs the connected app's client_id",
                vendor=VENDOR,
                hint="Set [salesforce].client_id to the connected app's consumer key.",
            )
        claims = {
            "iss": self._client_id,
            "sub": self._username,
            "aud": self.audience,
            "exp": int((self._clock() + JWT_LIFETIME).timestamp()),
        }
        assert self._private_key is not None
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as error:
            raise RefreshFailedError(
                f"cannot sign the JWT assertion with the configured private key: {error}",
                vendor=VENDOR,
                hint="[salesforce].private_key_file must be the PEM RSA private key whose "
                "certificate is uploaded to the connected app.",
            ) from error

    def _grant(self) -> dict[str, str]:
        if self.uses_jwt:
            return {"grant_type": JWT_BEARER, "assertion": self._assertion()}
        if not self._refresh_token:
            raise RefreshFailedError(
                "the access token expired and no refresh token is configured", vendor=VENDOR
            )
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        if self._client_id:
            form["client_id"] = self._client_id
        if self._client_secret:
            form["client_secret"] = self._client_secret
        return form

    def _refresh(self) -> None:
        """Get a new access token (refresh-token or JWT bearer grant; one call, no retry)."""
        form = self._grant()
        try:
            response = self.session.post(
                self.token_url, data=form, headers={"Accept": "application/json"}
            )
        except requests.RequestException as error:
            raise RefreshFailedError(
                f"cannot reach the token endpoint {self.token_url}: {error}", vendor=VENDOR
            ) from error
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):  # e.g. a 5xx's error list: no token in it
            payload = {}
        if response.status_code != 200 or "access_token" not in payload:
            reason = payload.get("error_description") or response.reason
            if self.uses_jwt:
                raise RefreshFailedError(
                    f"JWT sign-in as {self._username} refused: {reason}",
                    vendor=VENDOR,
                    status=response.status_code,
                    vendor_code=payload.get("error"),
                    hint="Check that the connected app's certificate matches "
                    "[salesforce].private_key_file, that client_id is its consumer key, that "
                    "login_url is the audience (login. or test.salesforce.com) and that the "
                    "user is pre-authorised for the app.",
                )
            raise RefreshFailedError(
                f"token refresh refused: {reason}",
                vendor=VENDOR,
                status=response.status_code,
                vendor_code=payload.get("error"),
            )
        self._connect(payload["access_token"], payload.get("instance_url") or self.instance_url)

    def _call(self, operation: Callable[[Salesforce], T]) -> T:
        """Run one API call: translated errors, bounded retries, one refresh on 401."""
        refreshed = False
        while True:
            try:
                return self._retried(operation)
            except AuthExpiredError as error:
                if refreshed:
                    raise RefreshFailedError(
                        "the refreshed access token was refused too", vendor=VENDOR
                    ) from error
                self._refresh()
                refreshed = True

    def _retried(self, operation: Callable[[Salesforce], T]) -> T:
        try:
            for attempt in retrying(idempotent=True, policy=self.retry_policy, sleep=self._sleep):
                with attempt:
                    try:
                        return operation(self.sf)
                    except SalesforceError as error:
                        raise translate(error) from error
        except (requests.ConnectionError, requests.Timeout) as error:
            raise RemoteError(
                f"cannot reach {self.instance_url}: {type(error).__name__}",
                vendor=VENDOR,
                hint="Check [salesforce].instance_url and the network, then run "
                "`crm-meetings doctor`.",
            ) from error
        raise AssertionError("unreachable: retrying() re-raises the last error")

    def _rest(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        return self._call(lambda sf: sf.restful(path, method=method, **kwargs))

    def _query(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Every page of a SOQL query, following ``nextRecordsUrl`` (never twice)."""
        page = self._call(lambda sf: sf.query(soql))
        seen: set[str] = set()
        while True:
            yield list(page["records"])
            if page.get("done", True):
                return
            next_url: str = page["nextRecordsUrl"]
            if next_url in seen:
                raise RemoteError(f"repeated nextRecordsUrl {next_url}", vendor=VENDOR)
            seen.add(next_url)
            page = self._call(self._more(next_url))

    @staticmethod
    def _more(url: str) -> Callable[[Salesforce], Any]:
        return lambda sf: sf.query_more(url, identifier_is_url=True)

    def _meetings(self, rows: Sequence[Mapping[str, Any]]) -> list[Meeting]:
        for row in rows:
            owner = row.get("Owner") or {}
            if owner.get("Email") and row.get("OwnerId"):
                self._users.setdefault(owner["Email"].lower(), row["OwnerId"])
        return [m.meeting_from_event(row) for row in rows]

    def _events(self, where: str) -> Iterator[list[Meeting]]:
        for rows in self._query(f"SELECT {m.EVENT_SELECT} FROM Event {where}"):  # noqa: S608
            yield self._meetings(rows)

    def _save(self, path: str, records: list[dict[str, Any]], method: str) -> list[Any]:
        """One sObject Collections call; the per-record results, in order."""
        results = self._rest(path, method, json={"allOrNone": False, "records": records})
        if not isinstance(results, list) or len(results) != len(records):
            raise RemoteError(f"unexpected collection response: {results!r:.200}", vendor=VENDOR)
        return results

    @staticmethod
    def _batch_result(key: str, result: Mapping[str, Any]) -> BatchResult:
        if result.get("success"):
            return BatchResult(key, True, result.get("id"))
        return BatchResult(key, False, None, record_error(result.get("errors") or []))

    # --- meetings ---------------------------------------------------------------------

    def get(self, record_id: str) -> Meeting:
        for page in self._events(f"WHERE Id = {m.soql_literal(record_id)}"):
            if page:
                return page[0]
        raise NotFoundError(f"salesforce: Event {record_id} does not exist")

    def find_by_uid(self, uid: str) -> Meeting | None:
        """One SOQL query on ``Meeting_UID__c``: queries read committed data, so a record
        made a moment ago is found; a deleted Event (in the recycle bin) is not."""
        for page in self._events(f"WHERE {m.MEETING_UID} = {m.soql_literal(uid)} LIMIT 1"):
            if page:
                return page[0]
        return None

    def record_visible(self, ref: RecordRef) -> bool:
        """Whether the record exists and the connected user sees it (one GET, Id only)."""
        if not _API_NAME.fullmatch(ref.object_type) or not _RECORD_ID.fullmatch(ref.record_id):
            return False
        try:
            self._rest(f"sobjects/{ref.object_type}/{ref.record_id}", params={"fields": "Id"})
        except NotFoundError:
            return False
        return True

    def create(self, meeting: Meeting) -> Meeting:
        (result,) = self.create_many([meeting])
        if result.error is not None or result.record_id is None:
            raise result.error or RemoteError("create returned no id", vendor=VENDOR)
        return self.get(result.record_id)

    def create_many(self, meetings: Sequence[Meeting]) -> list[BatchResult]:
        """Upsert Events on ``Meeting_Id__c`` (≤ 200 per call), then their EventRelations."""
        results: list[BatchResult] = []
        path = f"composite/sobjects/{m.EVENT}/{m.MEETING_ID}"
        for chunk in m.chunked(meetings, BATCH_LIMIT):
            rows = [
                {
                    "attributes": {"type": m.EVENT},
                    **m.event_from_meeting(x, owner_id=self._owner(x)),
                }
                for x in chunk
            ]
            saved = self._save(path, rows, "PATCH")
            results += [self._batch_result(x.id, r) for x, r in zip(chunk, saved, strict=True)]
        relations = [
            (index, row)
            for index, (meeting, result) in enumerate(zip(meetings, results, strict=True))
            if result.ok and result.record_id
            for row in m.relation_rows(result.record_id, meeting)
        ]
        for index, error in self._create_relations(relations):
            results[index] = BatchResult(results[index].key, False, results[index].record_id, error)
        return results

    def _owner(self, meeting: Meeting) -> str | None:
        return self._users.get(meeting.organizer.email)

    def _create_relations(
        self, relations: Sequence[tuple[int, dict[str, Any]]], sobject: str = "EventRelation"
    ) -> Iterator[tuple[int, CrmMeetingsError]]:
        """Create relation rows; an existing one (DUPLICATE_VALUE after a retry) is fine."""
        for chunk in m.chunked(relations, BATCH_LIMIT):
            rows = [{"attributes": {"type": sobject}, **row} for _, row in chunk]
            for (index, _), result in zip(
                chunk, self._save("composite/sobjects", rows, "POST"), strict=True
            ):
                errors = result.get("errors") or []
                if not result.get("success") and errors[0].get("statusCode") != "DUPLICATE_VALUE":
                    yield index, record_error(errors)

    def update(self, meeting: Meeting, change: MeetingChange) -> Meeting:
        """Write the changed fields and invitees; the Event as Salesforce now holds it.

        The PATCH answers 204 without a body, so the new ``LastModifiedDate`` (what stale
        edits are checked against) is read back with one query, as :meth:`create` does.
        """
        record_id = meeting.crm_record_id
        if not record_id:
            raise ValidationError("crm_record_id", "the meeting has no Salesforce Event yet")
        fields = m.event_changes(meeting, change, owner_id=self._owner(meeting))
        if fields:
            self._call(lambda sf: _event(sf).update(record_id, fields))
        if "invitees" in change.changed:
            self._sync_relations(record_id, meeting)
        elif not fields:
            return meeting  # nothing written
        return self.get(record_id)

    def _sync_relations(self, record_id: str, meeting: Meeting) -> None:
        wanted = {row["RelationId"]: row for row in m.relation_rows(record_id, meeting)}
        soql = (
            "SELECT Id, RelationId FROM EventRelation WHERE EventId = "  # noqa: S608
            f"{m.soql_literal(record_id)} AND IsInvitee = true"
        )
        existing = {r["RelationId"]: r["Id"] for page in self._query(soql) for r in page}
        stale = [rid for relation, rid in existing.items() if relation not in wanted]
        for chunk in m.chunked(stale, BATCH_LIMIT):
            self._rest("composite/sobjects", "DELETE", params={"ids": ",".join(chunk)})
        added = [(0, row) for relation, row in wanted.items() if relation not in existing]
        for _, error in self._create_relations(added):
            raise error

    def delete(self, record_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            self._call(lambda sf: _event(sf).delete(record_id))

    def list_for_record(self, ref: RecordRef) -> Iterator[Meeting]:
        column = {"Account": "WhatId", "Opportunity": "WhatId", "Contact": "WhoId", "Lead": "WhoId"}
        if ref.object_type not in column:
            raise ValidationError(
                "object_type",
                f"Salesforce Events relate to {', '.join(column)}, not {ref.object_type}",
            )
        where = f"WHERE {column[ref.object_type]} = {m.soql_literal(ref.record_id)} ORDER BY StartDateTime, Id"  # noqa: E501
        for page in self._events(where):
            yield from page

    def changed_since(self, cursor: str | None) -> Iterator[ChangePage]:
        """Get Updated / Get Deleted windows from ``cursor``; too old (or none): a full scan.

        The cursor is the ``latestDateCovered`` Salesforce reported; windows overlap by up
        to a minute (Salesforce ignores seconds), so a page may repeat a change.
        """
        now = self._clock()
        since = m.parse_datetime(cursor) if cursor else None
        if since is None or since < now - DELETED_WINDOW + WINDOW_MARGIN:
            yield from self._full_scan(now)
            return
        end = _floor_minute(now) + timedelta(minutes=1)
        updated = self._call(lambda sf: _event(sf).updated(since, end))
        deleted = self._call(lambda sf: _event(sf).deleted(since, end))
        covered = min(
            m.parse_datetime(updated["latestDateCovered"]),
            m.parse_datetime(deleted["latestDateCovered"]),
        ).isoformat()
        gone = tuple(d["id"] for d in deleted.get("deletedRecords", []))
        ids = [i for i in updated.get("ids", []) if i not in set(gone)]
        chunks = list(m.chunked(ids, IDS_PER_QUERY)) or [[]]
        for number, chunk in enumerate(chunks):
            meetings: list[Meeting] = []
            if chunk:
                where = "WHERE Id IN (" + ", ".join(m.soql_literal(i) for i in chunk) + ")"
                meetings = [x for page in self._events(where) for x in page]
            last = number == len(chunks) - 1
            yield ChangePage(
                tuple(meetings), gone if number == 0 else (), covered if last else cursor
            )

    def _full_scan(self, now: datetime) -> Iterator[ChangePage]:
        mark = _floor_minute(now - timedelta(minutes=1)).isoformat()
        empty = True
        for meetings in self._events("ORDER BY SystemModstamp, Id"):
            empty = False
            yield ChangePage(tuple(meetings), (), mark, full_scan=True)
        if empty:
            yield ChangePage((), (), mark, full_scan=True)

    # --- history ----------------------------------------------------------------------

    def write_history_many(
        self, items: Sequence[HistoryItem], *, run: HistoryRun | None = None
    ) -> list[BatchResult]:
        """Upsert sessions on their external id, then participants on theirs (≤ 200 per call).

        No reads, so ``run`` has nothing to save here."""
        pairs = [(item.meeting, s) for item in items for s in item.sessions]
        results: dict[str, BatchResult] = {}
        writable = []
        for meeting, session in pairs:
            if meeting.crm_record_id:
                writable.append((meeting, session))
            else:
                results[session.provider_session_id] = BatchResult(
                    session.provider_session_id,
                    False,
                    error=ValidationError("crm_record_id", f"meeting {meeting.id} has no Event"),
                )
        session_path = f"composite/sobjects/{m.SESSION}/{m.SESSION_KEY}"
        for chunk in m.chunked(writable, BATCH_LIMIT):
            rows = [{"attributes": {"type": m.SESSION}, **m.session_row(mt, s)} for mt, s in chunk]
            for (_, session), saved in zip(
                chunk, self._save(session_path, rows, "PATCH"), strict=True
            ):
                key = session.provider_session_id
                results[key] = self._batch_result(key, saved)
        attendances = {
            m.attendance_key(session, p): (session, results[session.provider_session_id], p)
            for _, session in writable
            if results[session.provider_session_id].ok
            for p in session.participants
        }
        part_path = f"composite/sobjects/{m.PARTICIPANT}/{m.PARTICIPANT_KEY}"
        for group in m.chunked(list(attendances.values()), BATCH_LIMIT):
            rows = [
                {
                    "attributes": {"type": m.PARTICIPANT},
                    **m.participant_row(r.record_id or "", s, p),
                }
                for s, r, p in group
            ]
            for (owner, _, _), saved in zip(
                group, self._save(part_path, rows, "PATCH"), strict=True
            ):
                key = owner.provider_session_id
                if not saved.get("success") and results[key].ok:
                    results[key] = BatchResult(
                        key, False, results[key].record_id, record_error(saved.get("errors") or [])
                    )
        return [results[s.provider_session_id] for _, s in pairs]

    # --- logged e-mail ------------------------------------------------------------------

    def log_emails(self, emails: Sequence[SentEmail]) -> list[BatchResult]:
        """Insert EmailMessages (status Sent, ≤ 200 per call), then their relations.

        ``Mail_Key__c`` is a unique external id, so a replayed insert is refused with
        DUPLICATE_VALUE naming the existing record: that counts as logged, and its
        relations are completed (the first attempt may have stopped before them). An
        upsert is not used: Salesforce updates only custom fields of a sent EmailMessage.
        """
        results: list[BatchResult] = []
        replayed: set[str] = set()
        for chunk in m.chunked(emails, BATCH_LIMIT):
            rows = [
                {"attributes": {"type": m.EMAIL_MESSAGE}, **m.email_message_row(e)} for e in chunk
            ]
            saved = self._save("composite/sobjects", rows, "POST")
            for email, result in zip(chunk, saved, strict=True):
                existing = _duplicate_of(result, m.MAIL_KEY)
                if existing is not None:
                    replayed.add(existing)
                    results.append(BatchResult(email.key, True, existing))
                else:
                    results.append(self._batch_result(email.key, result))
        related = self._email_relations(emails, results, replayed)
        for index, error in self._create_relations(related, "EmailMessageRelation"):
            results[index] = BatchResult(results[index].key, False, results[index].record_id, error)
        return results

    def _email_relations(
        self, emails: Sequence[SentEmail], results: Sequence[BatchResult], replayed: set[str]
    ) -> list[tuple[int, dict[str, Any]]]:
        """The relation rows still missing: all for new messages; for replayed ones, those
        an earlier attempt did not create (one query per 200 messages)."""
        present: set[tuple[str, str]] = set()
        for chunk in m.chunked(sorted(replayed), IDS_PER_QUERY):
            ids = ", ".join(m.soql_literal(i) for i in chunk)
            soql = f"SELECT EmailMessageId, RelationId FROM EmailMessageRelation WHERE EmailMessageId IN ({ids})"  # noqa: E501, S608
            present |= {
                (r["EmailMessageId"], r["RelationId"]) for p in self._query(soql) for r in p
            }
        return [
            (index, row)
            for index, (email, result) in enumerate(zip(emails, results, strict=True))
            if result.ok and result.record_id
            for row in m.email_relation_rows(result.record_id, email)
            if (row["EmailMessageId"], row["RelationId"]) not in present
        ]

    # --- metadata and health ----------------------------------------------------------

    def _describe(self, sobject: str) -> dict[str, Any]:
        described = self._rest(f"sobjects/{sobject}/describe")
        assert isinstance(described, dict)
        return described

    def record_types(self) -> list[RecordType]:
        infos = self._describe(m.EVENT).get("recordTypeInfos", [])
        return [
            RecordType(
                i["recordTypeId"],
                i["name"],
                bool(i.get("active")),
                bool(i.get("defaultRecordTypeMapping")),
            )
            for i in infos
            if not i.get("master")
        ]

    def budget(self) -> Budget:
        return self._budget

    def check(self) -> list[CheckResult]:
        """Credentials (``limits``), API budget, Event fields, history objects."""
        try:
            limits = self._rest("limits")
        except AuthError as error:
            return [
                CheckResult(
                    "salesforce credentials",
                    False,
                    str(error.message),
                    error.hint
                    if self.uses_jwt
                    else "Re-authorise the connected app and update [salesforce].refresh_token, "
                    "client_id and client_secret.",
                )
            ]
        except RemoteError as error:
            return [
                CheckResult(
                    "salesforce connection",
                    False,
                    str(error.message),
                    "Check [salesforce].instance_url (https://MyDomain.my.salesforce.com) and "
                    "ca_bundle.",
                )
            ]
        checks = [CheckResult("salesforce credentials", True, f"connected to {self.instance_url}")]
        daily = (limits or {}).get("DailyApiRequests", {})
        remaining, most = int(daily.get("Remaining", 0)), int(daily.get("Max", 0))
        checks.append(
            CheckResult(
                "salesforce API budget",
                remaining > most // 20,
                f"{remaining} of {most} daily API requests left",
                "Wait for the rolling 24-hour window or raise the org's API limit.",
            )
        )
        for sobject, fields in m.CUSTOM_FIELDS.items():
            checks.append(self._check_object(sobject, fields))
        return checks

    def _check_object(self, sobject: str, fields: Sequence[str]) -> CheckResult:
        fix = (
            f"Deploy {sobject} and its fields with the crm-meetings setup step "
            "(README: Salesforce setup) and grant the integration user access."
        )
        try:
            described = self._describe(sobject)
        except NotFoundError:
            return CheckResult(f"salesforce {sobject}", False, f"{sobject} does not exist", fix)
        present = {f["name"] for f in described.get("fields", [])}
        missing = [f for f in fields if f not in present]
        detail = f"missing fields: {', '.join(missing)}" if missing else "all fields present"
        return CheckResult(f"salesforce {sobject}", not missing, detail, fix if missing else "")
