"""Stand-ins for dependencies that have not landed yet (in-memory CRM and provider).

They implement the same protocols as the real connectors and providers and fail the way
those fail (``RemoteError`` with a status), so the action suite runs on them now and on
the real sandboxed connectors through their harnesses. They hold the "remote" state the
tests assert on.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crm_meetings.conferencing.base import ProviderMeeting
from crm_meetings.errors import NotFoundError, RemoteError
from crm_meetings.model import CrmKind, Meeting, MeetingChange, MeetingStatus, RecordRef
from crm_meetings.transport import CallCounter


@dataclass
class Faults:
    """Failures queued per operation: ``"refused"`` (a 400) or ``"unknown"`` (a 503 after
    the change was applied: the caller cannot know it happened)."""

    queued: dict[str, list[str]] = field(default_factory=dict)

    def add(self, operation: str, kind: str, times: int = 1) -> None:
        self.queued.setdefault(operation, []).extend([kind] * times)

    def clear(self) -> None:
        self.queued.clear()

    def before(self, vendor: str, operation: str) -> str | None:
        queue = self.queued.get(operation)
        kind = queue.pop(0) if queue else None
        if kind == "refused":
            raise RemoteError(f"{operation} refused", vendor=vendor, status=400)
        return kind

    @staticmethod
    def after(vendor: str, operation: str, kind: str | None) -> None:
        if kind == "unknown":
            raise RemoteError(f"{operation}: gateway timeout", vendor=vendor, status=503)


class MemoryCrm:
    """A CRM in a dict: records by id; ``modified`` ticks on every write."""

    crm = CrmKind.SALESFORCE
    batch_limit = 200

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.calls = CallCounter()
        self.records: dict[str, Meeting] = {}
        self.faults = Faults()
        self._clock = clock
        self._ids = itertools.count(1)
        self._tick = itertools.count(1)

    def _stamp(self) -> datetime:
        return self._clock() + timedelta(seconds=next(self._tick))

    def get(self, record_id: str) -> Meeting:
        if record_id not in self.records:
            raise NotFoundError(f"record {record_id} does not exist")
        return self.records[record_id]

    def create(self, meeting: Meeting) -> Meeting:
        kind = self.faults.before("memory", "create")
        created = dataclasses.replace(
            meeting, crm_record_id=f"rec-{next(self._ids)}", crm_modified_at=self._stamp()
        )
        assert created.crm_record_id is not None
        self.records[created.crm_record_id] = created
        self.faults.after("memory", "create", kind)
        return created

    def update(self, meeting: Meeting, change: MeetingChange) -> Meeting:
        kind = self.faults.before("memory", "update")
        assert meeting.crm_record_id is not None
        self.get(meeting.crm_record_id)
        updated = dataclasses.replace(meeting, crm_modified_at=self._stamp())
        self.records[meeting.crm_record_id] = updated
        self.faults.after("memory", "update", kind)
        return updated

    def delete(self, record_id: str) -> None:
        kind = self.faults.before("memory", "delete")
        self.records.pop(record_id, None)
        self.faults.after("memory", "delete", kind)

    def list_for_record(self, ref: RecordRef) -> Iterator[Meeting]:
        return iter([m for m in self.records.values() if ref in m.related])

    def find_by_uid(self, uid: str) -> Meeting | None:
        return next((m for m in self.records.values() if m.uid == uid), None)

    def touch(self, record_id: str) -> None:
        """Someone edits the record in the CRM."""
        record = self.get(record_id)
        self.records[record_id] = dataclasses.replace(
            record, notes=record.notes + " (edited in CRM)", crm_modified_at=self._stamp()
        )

    def status(self, record_id: str) -> MeetingStatus | None:
        record = self.records.get(record_id)
        return None if record is None else record.status


class MemoryProvider:
    """A conferencing provider in a dict: meeting id -> (meeting, state)."""

    name = "memory"

    def __init__(self) -> None:
        self.meetings: dict[str, tuple[Meeting, str]] = {}
        self.faults = Faults()
        self._ids = itertools.count(1)

    def create_meeting(self, meeting: Meeting) -> ProviderMeeting:
        kind = self.faults.before("memory-provider", "create")
        pid = f"pm-{next(self._ids)}"
        self.meetings[pid] = (meeting, "live")
        self.faults.after("memory-provider", "create", kind)
        url = f"https://meet.example/j/{pid}"
        return ProviderMeeting("memory", pid, url, dial_in=("+1 555 0100", "PIN 1234#"))

    def find_created(self, meeting: Meeting) -> list[ProviderMeeting]:
        return [
            ProviderMeeting("memory", pid, f"https://meet.example/j/{pid}")
            for pid, (held, state) in self.meetings.items()
            if state == "live"
            and (held.subject, held.start, held.end)
            == (meeting.subject, meeting.start, meeting.end)
        ]

    def _set(self, pid: str, operation: str, meeting: Meeting | None, state: str) -> None:
        kind = self.faults.before("memory-provider", operation)
        if pid not in self.meetings:
            raise NotFoundError(f"provider meeting {pid} does not exist")
        self.meetings[pid] = (meeting or self.meetings[pid][0], state)
        self.faults.after("memory-provider", operation, kind)

    def update_meeting(self, provider_meeting_id: str, meeting: Meeting) -> None:
        self._set(provider_meeting_id, "update", meeting, "live")

    def cancel_meeting(self, provider_meeting_id: str) -> None:
        self._set(provider_meeting_id, "cancel", None, "cancelled")

    def delete_meeting(self, provider_meeting_id: str) -> None:
        kind = self.faults.before("memory-provider", "delete")
        self.meetings.pop(provider_meeting_id, None)
        self.faults.after("memory-provider", "delete", kind)

    def live(self) -> list[str]:
        return [pid for pid, (_, state) in self.meetings.items() if state == "live"]
