"""HubSpot meetings through hubspot-api-client: the :class:`HubSpotConnector`.

Where history lands in HubSpot
------------------------------
HubSpot keeps meetings as ``meetings`` engagements; crm-meetings writes what really happened
in two places, both by upserts so a replay writes nothing new:

1. **On the meeting** (``POST /crm/v3/objects/meetings/batch/update``, by record id):
   ``hs_meeting_outcome`` = ``COMPLETED`` (HubSpot's own outcome property, shown on the
   timeline), ``crm_meetings_actual_start`` / ``crm_meetings_actual_end`` (first session's
   start, last session's end) and ``crm_meetings_session_count``.
2. **One record per session** in the custom object ``crm_meetings_session`` (HubSpot custom
   objects support unique-value properties and batch upsert by ``idProperty``), upserted with
   ``POST /crm/v3/objects/{sessionObjectTypeId}/batch/upsert`` and
   ``idProperty = crm_meetings_session_id`` (the provider's session id): start, end,
   duration, participant count and the participants (name, e-mail, join, leave, minutes) as
   JSON, plus ``crm_meetings_meeting_record_id``. Each session is associated with its
   meeting, and with every participant that is already a HubSpot contact (looked up by
   e-mail; crm-meetings does not create contacts for guests), through v4 default
   associations (``/crm/v4/associations/{from}/{to}/batch/associate/default``), which are
   idempotent.

The setup step (documented in the README, checked by ``doctor``) creates the meeting
properties ``crm_meetings_*`` (``crm_meetings_uid`` with unique values) and the
``crm_meetings_session`` custom object with its properties (``crm_meetings_session_id``
unique) and its associations to meetings and contacts.

Creates are idempotent too: every created meeting carries ``crm_meetings_uid`` (unique) and
an ``objectWriteTraceId``; a replayed batch create whose first attempt succeeded gets
per-record conflicts naming the existing ids, which count as created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from crm_meetings.connectors.base import (
    BatchResult,
    Budget,
    ChangePage,
    CheckResult,
    ContactMemo,
    HistoryItem,
    HistoryRun,
    RecordType,
    SentEmail,
)
from crm_meetings.connectors.hubspot.client import DEFAULT_BASE_URL, HubSpotHttp, OAuthCredentials
from crm_meetings.connectors.hubspot.mapping import (
    ASSOCIATION_TYPE_IDS,
    MAIL_KEY_PROPERTY,
    MEETING_PROPERTIES,
    RELATED_TYPES,
    REQUIRED_MEETING_PROPERTIES,
    REQUIRED_SESSION_PROPERTIES,
    SESSION_ID_PROPERTY,
    UID_PROPERTY,
    Associations,
    Contact,
    association_inputs,
    batch_errors,
    email_inputs,
    history_meeting_properties,
    hubspot_properties,
    invitee_contacts,
    meeting_from_hubspot,
    object_type_of,
    parse_datetime,
    record_ref,
    session_properties,
)
from crm_meetings.errors import (
    ConfigurationError,
    CrmMeetingsError,
    NotFoundError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import CrmKind, Invitee, Meeting, MeetingChange, RecordRef
from crm_meetings.transport import CallCounter, RetryPolicy

DEFAULT_POLICY: Final = RetryPolicy()

__all__ = ["HubSpotConnector"]

BATCH_LIMIT: Final = 100
SEARCH_PAGE: Final = 200
SEARCH_CAP: Final = 10_000
LIST_PAGE: Final = 100
SESSION_OBJECT_NAME: Final = "crm_meetings_session"
SETUP_HINT: Final = "Run the HubSpot setup step in the README (crm-meetings properties and object)."


@dataclass(frozen=True, slots=True)
class _Cursor:
    """``since`` (ms, inclusive) and, mid-scan, the last meeting id seen; ``high`` so far."""

    since: int
    after_id: str | None = None
    high: int = 0

    def encode(self) -> str:
        return f"{self.since}:{self.after_id or ''}:{self.high}"

    @classmethod
    def decode(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            since, after_id, high = text.split(":")
            return cls(int(since), after_id or None, int(high))
        except ValueError:
            raise ValidationError("cursor", f"{text!r} is not a HubSpot cursor") from None


def _ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value else 0


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class HubSpotConnector:
    """HubSpot's meetings as :class:`~crm_meetings.model.Meeting` values (a ``Connector``)."""

    crm = CrmKind.HUBSPOT
    batch_limit = BATCH_LIMIT
    search_cap = SEARCH_CAP  # HubSpot's results-per-query ceiling (lower it only in tests)

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        ca_path: str | Path | None = None,
        api_version: str = "v3",
        oauth: OAuthCredentials | None = None,
        owners: Mapping[str, str] | None = None,
        session_object: str | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] | None = None,
        timeout: float = 30.0,
        calls: CallCounter | None = None,
    ) -> None:
        """``owners`` maps organizer e-mails to owner ids (else read once from
        ``/crm/v3/owners``); ``session_object`` is the session custom object's
        objectTypeId (else found once in ``/crm/v3/schemas``)."""
        self.http = HubSpotHttp(
            access_token,
            base_url=base_url,
            ca_path=ca_path,
            api_version=api_version,
            oauth=oauth,
            retry_policy=retry_policy,
            sleep=sleep,
            timeout=timeout,
            calls=calls,
        )
        self.calls = self.http.calls
        self._owners = {k.lower(): v for k, v in owners.items()} if owners is not None else None
        self._session_object = session_object

    def close(self) -> None:
        """Close the HTTP connections (the connector stays usable: pools reopen)."""
        self.http.close()

    # --- SDK shortcuts --------------------------------------------------------------------

    @property
    def _meetings(self) -> Any:
        return self.http.sdk.crm.objects.meetings

    @property
    def _objects(self) -> Any:
        return self.http.sdk.crm.objects

    @property
    def _assoc(self) -> Any:
        return self.http.sdk.crm.associations.v4

    def _read(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call an SDK method (idempotently) and return the JSON HubSpot answered."""
        return self.http.call(
            lambda: method(*args, _preload_content=False, **kwargs), idempotent=True
        )

    # --- owners ---------------------------------------------------------------------------

    def load_owners(self) -> dict[str, str]:
        """Owner e-mail → owner id, read once (``GET /crm/v3/owners/``, all pages)."""
        if self._owners is None:
            owners: dict[str, str] = {}
            after: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": 500}
                if after:
                    kwargs["after"] = after
                page = self._read(self.http.sdk.crm.owners.owners_api.get_page, **kwargs)
                owners.update(
                    {
                        str(o["email"]).lower(): str(o["id"])
                        for o in page["results"]
                        if o.get("email")
                    }
                )
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
            self._owners = owners
        return dict(self._owners)

    def _owner_id(self, email: str) -> str | None:
        return self.load_owners().get(email.lower())

    def _owner_emails(self) -> dict[str, str]:
        return {owner_id: email for email, owner_id in self.load_owners().items()}

    # --- contacts and associations ----------------------------------------------------------

    def _contacts_by_id(self, ids: Iterable[str]) -> dict[str, Contact]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Contact] = {}
        for chunk in _chunks(wanted, BATCH_LIMIT):
            body = {
                "inputs": [{"id": i} for i in chunk],
                "properties": ["email", "firstname", "lastname"],
            }
            data = self._read(self._objects.batch_api.read, "contacts", body)
            found.update({str(o["id"]): Contact.from_hubspot(o) for o in data["results"]})
        return found

    def _contact_ids_by_email(self, emails: Iterable[str], *, create: bool) -> dict[str, str]:
        """E-mail → contact id; ``create`` upserts missing contacts (by ``email``)."""
        wanted = list(dict.fromkeys(e.lower() for e in emails))
        out: dict[str, str] = {}
        for chunk in _chunks(wanted, BATCH_LIMIT):
            if create:
                body: dict[str, Any] = {
                    "inputs": [{"idProperty": "email", "id": e, "properties": {}} for e in chunk]
                }
                data = self._read(self._objects.batch_api.upsert, "contacts", body)
            else:
                body = {
                    "idProperty": "email",
                    "inputs": [{"id": e} for e in chunk],
                    "properties": ["email"],
                }
                data = self._read(self._objects.batch_api.read, "contacts", body)
            for obj in data["results"]:
                email = (obj.get("properties") or {}).get("email")
                if email:
                    out[str(email).lower()] = str(obj["id"])
        return out

    def _contacts_of(
        self, objects: Sequence[Mapping[str, Any]], ids: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[Contact, ...]]:
        """Each meeting's associated contacts: from ``crm_meetings_invitees`` when it knows
        them, else read (one batch read for all the unknown ones)."""
        known = {str(o["id"]): invitee_contacts(o.get("properties") or {}) for o in objects}
        unknown = [c for mid, cids in ids.items() for c in cids if c not in known.get(mid, {})]
        fetched = self._contacts_by_id(unknown) if unknown else {}
        return {
            mid: tuple(
                found
                for c in cids
                if (found := known.get(mid, {}).get(c) or fetched.get(c)) is not None
            )
            for mid, cids in ids.items()
        }

    def _associations(self, objects: Sequence[Mapping[str, Any]]) -> dict[str, Associations]:
        """Each meeting's contacts and related records (v4 batch reads, ≤ 100 ids each)."""
        meeting_ids = [str(o["id"]) for o in objects]
        targets: dict[str, dict[str, list[str]]] = {mid: {} for mid in meeting_ids}
        for to_type in ("contacts", *RELATED_TYPES):
            for chunk in _chunks(meeting_ids, BATCH_LIMIT):
                body = {"inputs": [{"id": mid} for mid in chunk]}
                data = self._read(self._assoc.batch_api.get_page, "meetings", to_type, body)
                for row in data["results"]:
                    ids = [str(link["toObjectId"]) for link in row["to"]]
                    targets[str(row["from"]["id"])][to_type] = ids
        contacts = self._contacts_of(
            objects, {mid: by_type.get("contacts", []) for mid, by_type in targets.items()}
        )
        return {
            mid: Associations(
                contacts=contacts[mid],
                records=tuple(
                    record_ref(t, rid) for t in RELATED_TYPES for rid in by_type.get(t, [])
                ),
            )
            for mid, by_type in targets.items()
        }

    def _to_meetings(self, objects: Sequence[Mapping[str, Any]]) -> list[Meeting]:
        if not objects:
            return []
        associations = self._associations(objects)
        owners = self._owner_emails()
        return [meeting_from_hubspot(o, associations[str(o["id"])], owners=owners) for o in objects]

    # --- reads ----------------------------------------------------------------------------

    def get(self, record_id: str) -> Meeting:
        return self._get(record_id)

    def find_by_uid(self, uid: str) -> Meeting | None:
        """``GET /crm/v3/objects/meetings/{uid}?idProperty=crm_meetings_uid``: HubSpot reads
        an object by any unique property's value (objects API, "Read": "``{objectId}``
        refers to the internal object ID by default, or optionally any unique property value
        as specified by the ``idProperty`` query param", developers.hubspot.com/docs/
        api-reference/latest/crm/objects/...), and a read by id sees a create at once,
        unlike the search API, whose index lags behind writes. An archived (deleted)
        meeting answers 404: ``None``."""
        try:
            return self._get(uid, id_property=UID_PROPERTY)
        except NotFoundError:
            return None

    def _get(self, key: str, *, id_property: str | None = None) -> Meeting:
        kwargs: dict[str, Any] = {"id_property": id_property} if id_property else {}
        data = self._read(
            self._meetings.basic_api.get_by_id,
            key,
            properties=list(MEETING_PROPERTIES),
            associations=["contacts", *RELATED_TYPES],
            **kwargs,
        )
        linked = data.get("associations") or {}

        def ids(name: str) -> list[str]:
            return [str(r["id"]) for r in (linked.get(name) or {}).get("results", [])]

        associations = Associations(
            contacts=self._contacts_of([data], {str(data["id"]): ids("contacts")})[str(data["id"])],
            records=tuple(record_ref(t, rid) for t in RELATED_TYPES for rid in ids(t)),
        )
        return meeting_from_hubspot(data, associations, owners=self._owner_emails())

    def list_for_record(self, ref: RecordRef) -> Iterator[Meeting]:
        """Meetings associated with a contact, company, deal or ticket (v4, all pages)."""
        object_type = object_type_of(ref)
        ids: list[str] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500}
            if after:
                kwargs["after"] = after
            page = self._read(
                self._assoc.basic_api.get_page, object_type, ref.record_id, "meetings", **kwargs
            )
            ids += [str(r["toObjectId"]) for r in page["results"]]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        for chunk in _chunks(ids, BATCH_LIMIT):
            body = {"inputs": [{"id": i} for i in chunk], "properties": list(MEETING_PROPERTIES)}
            data = self._read(self._meetings.batch_api.read, body)
            yield from self._to_meetings(data["results"])

    def _search(self, since: int, after_id: str | None) -> Iterator[list[dict[str, Any]]]:
        """Meetings modified at or after ``since`` (ms), by id, in pages of 200.

        HubSpot's search stops at 10,000 results per query; before reaching it the query
        restarts with ``hs_object_id > last id`` (sorted by ``hs_object_id``).
        """
        last_id = after_id
        offset = 0
        while True:
            filters: list[dict[str, Any]] = [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since)}
            ]
            if last_id:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": last_id})
            body: dict[str, Any] = {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": list(MEETING_PROPERTIES),
                "limit": SEARCH_PAGE,
            }
            if offset:
                body["after"] = str(offset)
            data = self._read(self._meetings.search_api.do_search, body)
            results = data["results"]
            if results:
                yield results
            following = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not following or not results:
                return
            if int(following) + SEARCH_PAGE > self.search_cap:
                last_id, offset = str(results[-1]["id"]), 0  # restart above the last id
            else:
                offset = int(following)

    def _archived_since(self, since: int) -> tuple[list[str], int]:
        """Ids of meetings archived at or after ``since`` (``archived=true`` listing)."""
        deleted: list[str] = []
        high = since
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": LIST_PAGE,
                "archived": True,
            }
            if after:
                kwargs["after"] = after
            page = self._read(self._meetings.basic_api.get_page, **kwargs)
            for obj in page["results"]:
                when = _ms(parse_datetime(obj.get("archivedAt")))
                if when >= since:
                    deleted.append(str(obj["id"]))
                    high = max(high, when)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return deleted, high

    def changed_since(self, cursor: str | None) -> Iterator[ChangePage]:
        """Meetings modified since the cursor (search on ``hs_lastmodifieddate``), then the
        ones archived since (the last page). Every page carries a cursor to resume from."""
        start = _Cursor.decode(cursor)
        full = start is None
        state = start or _Cursor(0)
        high = state.high or state.since
        for results in self._search(state.since, state.after_id):
            meetings = self._to_meetings(results)
            high = max([high, *(_ms(m.crm_modified_at) for m in meetings)])
            resume = _Cursor(state.since, str(results[-1]["id"]), high)
            yield ChangePage(tuple(meetings), (), resume.encode(), full_scan=full)
        deleted, archived_high = ([], high) if full else self._archived_since(state.since)
        final = _Cursor(max(high, archived_high, state.since))
        yield ChangePage((), tuple(deleted), final.encode(), full_scan=full)

    # --- writes ---------------------------------------------------------------------------

    def create(self, meeting: Meeting) -> Meeting:
        result = self.create_many([meeting])[0]
        if not result.ok:
            assert result.error is not None
            raise result.error
        assert result.record_id is not None
        return self.get(result.record_id)

    def create_many(self, meetings: Sequence[Meeting]) -> list[BatchResult]:
        """Batch creates (≤ 100 per call) with associations inline; per-record results."""
        emails = [i.email for m in meetings for i in m.invitees]
        contact_ids = self._contact_ids_by_email(emails, create=True) if emails else {}
        results: list[BatchResult] = []
        for chunk in _chunks(list(meetings), BATCH_LIMIT):
            inputs = [
                {
                    "objectWriteTraceId": m.id,
                    "properties": hubspot_properties(
                        m, owner_id=self._owner_id(m.organizer.email), contact_ids=contact_ids
                    ),
                    "associations": association_inputs(
                        [contact_ids[i.email] for i in m.invitees if i.email in contact_ids],
                        m.related,
                    ),
                }
                for m in chunk
            ]
            # retried like a read: crm_meetings_uid is unique, so a replay cannot duplicate
            data = self._read(self._meetings.batch_api.create, {"inputs": inputs})
            results += self._per_record(chunk, data)
        return results

    def _per_record(self, chunk: Sequence[Meeting], data: Mapping[str, Any]) -> list[BatchResult]:
        return _per_key([m.id for m in chunk], data)

    def log_emails(self, emails: Sequence[SentEmail]) -> list[BatchResult]:
        """Emails engagements by batch create (≤ 100 per call), associated inline.

        ``crm_meetings_mail_key`` is unique: a replayed create gets a per-record conflict
        naming the engagement the first attempt made, which counts as logged."""
        results: list[BatchResult] = []
        for chunk in _chunks(list(emails), BATCH_LIMIT):
            body = {"inputs": [email_inputs(e) for e in chunk]}
            data = self._read(self._objects.emails.batch_api.create, body)
            results += _per_key([e.key for e in chunk], data)
        return results

    def update(self, meeting: Meeting, change: MeetingChange) -> Meeting:
        record_id = self._record_id(meeting)
        fields = set(change.changed) - {"related"}
        contact_ids: dict[str, str] = {}
        if "invitees" in change.changed:
            old, new = change.values["invitees"]
            contact_ids = _known_contact_ids([*old, *new])
            missing = [i.email for i in new if i.email not in contact_ids]
            if missing:
                contact_ids.update(self._contact_ids_by_email(missing, create=True))
            unknown = [e for e in change.removed if e not in contact_ids]
            if unknown:
                contact_ids.update(self._contact_ids_by_email(unknown, create=False))
        if fields:
            owner = self._owner_id(meeting.organizer.email) if "organizer" in fields else None
            props = hubspot_properties(meeting, fields, owner_id=owner, contact_ids=contact_ids)
            if props:
                self._read(self._meetings.basic_api.update, record_id, {"properties": props})
        if change.added or change.removed:
            self._link(record_id, _contacts(change.added, contact_ids), create=True)
            self._link(record_id, _contacts(change.removed, contact_ids), create=False)
        if "related" in change.changed:
            old_refs, new_refs = change.values["related"]
            gone = [(object_type_of(r), r.record_id) for r in old_refs if r not in new_refs]
            came = [(object_type_of(r), r.record_id) for r in new_refs if r not in old_refs]
            self._link(record_id, came, create=True)
            self._link(record_id, gone, create=False)
        return self.get(record_id)

    def _link(self, record_id: str, targets: Sequence[tuple[str, str]], *, create: bool) -> None:
        """Associate the meeting with (or detach it from) records: one batch call per type."""
        by_type: dict[str, list[str]] = {}
        for object_type, target_id in targets:
            by_type.setdefault(object_type, []).append(target_id)
        for object_type, ids in by_type.items():
            if create:
                inputs: list[dict[str, Any]] = [
                    {
                        "from": {"id": record_id},
                        "to": {"id": target},
                        "types": [
                            {
                                "associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": ASSOCIATION_TYPE_IDS[object_type],
                            }
                        ],
                    }
                    for target in ids
                ]
                body = {"inputs": inputs}
                self._read(self._assoc.batch_api.create, "meetings", object_type, body)
            else:
                body = {"inputs": [{"from": {"id": record_id}, "to": [{"id": t} for t in ids]}]}
                self._read(self._assoc.batch_api.archive, "meetings", object_type, body)

    def delete(self, record_id: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone
            self._read(self._meetings.basic_api.archive, record_id)

    @staticmethod
    def _record_id(meeting: Meeting) -> str:
        if not meeting.crm_record_id:
            raise ValidationError(
                "crm_record_id", "the meeting has no HubSpot record id", hint="Create it first."
            )
        return meeting.crm_record_id

    # --- history --------------------------------------------------------------------------

    def session_object(self) -> str:
        """The session custom object's objectTypeId (``GET /crm/v3/schemas``, once)."""
        if self._session_object is None:
            data = self._read(self.http.sdk.crm.schemas.core_api.get_all)
            found = next((s for s in data["results"] if s.get("name") == SESSION_OBJECT_NAME), None)
            if found is None:
                raise ConfigurationError(
                    f"HubSpot has no custom object named {SESSION_OBJECT_NAME}",
                    key="hubspot.session_object",
                    hint=SETUP_HINT,
                )
            self._session_object = str(found["objectTypeId"])
        return self._session_object

    def write_history_many(
        self, items: Sequence[HistoryItem], *, run: HistoryRun | None = None
    ) -> list[BatchResult]:
        """Meeting outcome and actual times, then one upserted record per session, linked to
        its meeting and to the participants who are contacts (each address read once per
        ``run``)."""
        session_type = self.session_object()
        results: dict[str, BatchResult] = {}
        meeting_failed: dict[str, CrmMeetingsError] = {}
        for chunk in _chunks([i for i in items if i.sessions], BATCH_LIMIT):
            inputs = [
                {
                    "id": self._record_id(item.meeting),
                    "objectWriteTraceId": self._record_id(item.meeting),
                    "properties": history_meeting_properties(item),
                }
                for item in chunk
            ]
            data = self._read(self._meetings.batch_api.update, {"inputs": inputs})
            meeting_failed.update(batch_errors(data))
        pending = [
            (item, session)
            for item in items
            for session in item.sessions
            if self._record_id(item.meeting) not in meeting_failed
        ]
        for item in items:
            record_id = self._record_id(item.meeting)
            for session in item.sessions:
                if record_id in meeting_failed:
                    results[session.provider_session_id] = BatchResult(
                        session.provider_session_id, False, error=meeting_failed[record_id]
                    )
        links: list[tuple[str, str, str]] = []  # (session record id, target type, target id)
        contacts = self._participant_contacts(
            [p.email for _, s in pending for p in s.participants if p.email],
            run.contacts if run is not None else ContactMemo(),
        )
        for chunk in _chunks(pending, BATCH_LIMIT):
            inputs = [
                {
                    "idProperty": SESSION_ID_PROPERTY,
                    "id": session.provider_session_id,
                    "objectWriteTraceId": session.provider_session_id,
                    "properties": session_properties(session, self._record_id(item.meeting)),
                }
                for item, session in chunk
            ]
            data = self._read(self._objects.batch_api.upsert, session_type, {"inputs": inputs})
            errors = batch_errors(data)
            saved = {
                str(r.get("objectWriteTraceId") or r["properties"].get(SESSION_ID_PROPERTY)): str(
                    r["id"]
                )
                for r in data.get("results", [])
            }
            for item, session in chunk:
                key = session.provider_session_id
                if key in saved:
                    results[key] = BatchResult(key, True, saved[key])
                    links.append((saved[key], "meetings", self._record_id(item.meeting)))
                    links += [
                        (saved[key], "contacts", contacts[p.email.lower()])
                        for p in session.participants
                        if p.email and p.email.lower() in contacts
                    ]
                else:
                    results[key] = BatchResult(key, False, error=errors.get(key) or _missing(key))
        self._link_sessions(session_type, links)
        return [results[s.provider_session_id] for item in items for s in item.sessions]

    def _participant_contacts(self, emails: Sequence[str], memo: ContactMemo) -> dict[str, str]:
        """E-mail (lower-cased) → contact id of the participants who are contacts; only
        addresses ``memo`` has not seen are read (batch read by ``email``, ≤ 100 each)."""
        unknown = memo.unknown(emails)
        found = self._contact_ids_by_email(unknown, create=False) if unknown else {}
        known = memo.ids(emails)
        memo.learn(unknown, found)
        return {**known, **found}

    def _link_sessions(self, session_type: str, links: Sequence[tuple[str, str, str]]) -> None:
        for to_type in ("meetings", "contacts"):
            pairs = list(dict.fromkeys((s, t) for s, kind, t in links if kind == to_type))
            for chunk in _chunks(pairs, BATCH_LIMIT):
                body = {"inputs": [{"from": {"id": s}, "to": {"id": t}} for s, t in chunk]}
                self._read(self._assoc.batch_api.create_default, session_type, to_type, body)

    # --- metadata -------------------------------------------------------------------------

    def record_types(self) -> list[RecordType]:
        """The options of ``hs_activity_type`` ("call and meeting type")."""
        prop = self._read(
            self.http.sdk.crm.properties.core_api.get_by_name, "meetings", "hs_activity_type"
        )
        return [
            RecordType(str(o["value"]), str(o["label"]), active=not o.get("hidden", False))
            for o in prop.get("options") or []
        ]

    def budget(self) -> Budget:
        return self.http.budget

    def check(self) -> list[CheckResult]:
        """Token, meeting properties, session object and its properties, API budget."""
        checks: list[CheckResult] = []
        try:
            self.http.ensure_token()
            info = self._read(self.http.sdk.oauth.access_tokens_api.get, self.http.access_token)
            checks.append(CheckResult("hubspot token", True, f"portal {info.get('hub_id')}"))
        except (RemoteError, NotFoundError) as error:
            checks.append(
                CheckResult(
                    "hubspot token",
                    False,
                    str(error),
                    fix="Re-authorise crm-meetings in HubSpot and update the token.",
                )
            )
            return checks
        checks.append(self._check_properties("meetings", REQUIRED_MEETING_PROPERTIES))
        checks.append(self._check_properties("emails", (MAIL_KEY_PROPERTY,)))
        try:
            session_type = self.session_object()
        except ConfigurationError as error:
            checks.append(
                CheckResult(
                    "hubspot session object",
                    False,
                    error.message,
                    fix=f"Create the custom object {SESSION_OBJECT_NAME} with a unique "
                    f"{SESSION_ID_PROPERTY} property ({SETUP_HINT})",
                )
            )
        else:
            checks.append(CheckResult("hubspot session object", True, session_type))
            checks.append(self._check_properties(session_type, REQUIRED_SESSION_PROPERTIES))
        budget = self.budget()
        checks.append(
            CheckResult(
                "hubspot API budget",
                budget.remaining is None or budget.remaining > 0,
                f"{budget.remaining} of {budget.limit} calls left"
                if budget.limit is not None
                else "no rate-limit headers seen",
                fix="Wait for the daily limit to reset, or raise the portal's API limit.",
            )
        )
        return checks

    def _check_properties(self, object_type: str, required: Sequence[str]) -> CheckResult:
        data = self._read(self.http.sdk.crm.properties.core_api.get_all, object_type)
        present = {p["name"]: p for p in data["results"]}
        missing = [name for name in required if name not in present]
        unique = {"meetings": UID_PROPERTY, "emails": MAIL_KEY_PROPERTY}.get(
            object_type, SESSION_ID_PROPERTY
        )
        not_unique = unique in present and not present[unique].get("hasUniqueValue")
        name = f"hubspot {object_type} properties"
        if missing:
            return CheckResult(
                name,
                False,
                f"missing: {', '.join(missing)}",
                fix=f"Create the {object_type} properties {', '.join(missing)} "
                f"(group crm_meetings; {unique} as a single-line text with unique values). "
                + SETUP_HINT,
            )
        if not_unique:
            return CheckResult(
                name,
                False,
                f"{unique} does not require unique values",
                fix=f"Recreate {unique} with 'Require unique values' on.",
            )
        return CheckResult(name, True, f"{len(required)} properties present")


def _known_contact_ids(invitees: Iterable[Invitee]) -> dict[str, str]:
    """E-mail → contact id for invitees read from HubSpot (their ``crm_relation``)."""
    return {
        i.email: i.crm_relation.record_id
        for i in invitees
        if i.crm_relation is not None and i.crm_relation.object_type == "Contact"
    }


def _contacts(emails: Iterable[str], contact_ids: Mapping[str, str]) -> list[tuple[str, str]]:
    return [("contacts", contact_ids[e]) for e in emails if e in contact_ids]


def _existing_id(data: Mapping[str, Any], trace: str) -> str | None:
    """The existing record a conflict names for this input (a replayed create)."""
    for error in data.get("errors") or []:
        context = error.get("context") or {}
        if (
            trace in (context.get("objectWriteTraceId") or [])
            and error.get("category") == "CONFLICT"
        ):
            existing = context.get("existingId") or []
            return str(existing[0]) if existing else None
    return None


def _per_key(keys: Sequence[str], data: Mapping[str, Any]) -> list[BatchResult]:
    """One result per ``objectWriteTraceId`` of a batch create; a conflict on the unique
    key (an earlier attempt created the record) counts as created."""
    created = {str(r.get("objectWriteTraceId")): str(r["id"]) for r in data.get("results", [])}
    errors = batch_errors(data)
    out = []
    for key in keys:
        existing = _existing_id(data, key)
        if key in created:
            out.append(BatchResult(key, True, created[key]))
        elif existing is not None:  # created by an earlier attempt of this batch
            out.append(BatchResult(key, True, existing))
        else:
            out.append(BatchResult(key, False, error=errors.get(key) or _missing(key)))
    return out


def _missing(key: str) -> RemoteError:
    return RemoteError(f"HubSpot returned no result for {key}", vendor="hubspot")
