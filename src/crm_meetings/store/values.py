"""Small frozen values the store returns where :mod:`crm_meetings.model` has none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["Checkpoint", "RunCounters", "SyncRun", "SyncRunStatus", "UpsertResult"]


class SyncRunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"  # finished, but some meetings or organizers failed


@dataclass(frozen=True, slots=True)
class RunCounters:
    """What a sync run did. ``api_calls`` counts calls by vendor, then endpoint.

    ``errors`` holds one redacted, human-readable line per failure (use
    ``str(CrmMeetingsError)``, which carries the hint).
    """

    meetings_seen: int = 0
    sessions_written: int = 0
    participants_written: int = 0
    unmatched: int = 0
    api_calls: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def api_calls_total(self) -> int:
        return sum(n for endpoints in self.api_calls.values() for n in endpoints.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "meetings_seen": self.meetings_seen,
            "sessions_written": self.sessions_written,
            "participants_written": self.participants_written,
            "unmatched": self.unmatched,
            "api_calls": {vendor: dict(calls) for vendor, calls in self.api_calls.items()},
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunCounters:
        """Read counters back; keys a newer version added are ignored, missing ones are 0."""
        return cls(
            meetings_seen=int(data.get("meetings_seen", 0)),
            sessions_written=int(data.get("sessions_written", 0)),
            participants_written=int(data.get("participants_written", 0)),
            unmatched=int(data.get("unmatched", 0)),
            api_calls={
                str(vendor): {str(endpoint): int(n) for endpoint, n in calls.items()}
                for vendor, calls in dict(data.get("api_calls", {})).items()
            },
            errors=tuple(str(e) for e in data.get("errors", ())),
        )


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One run of the history sync, nightly or manual, as the status page shows it."""

    id: int
    org_id: str
    kind: str
    status: SyncRunStatus
    started_at: datetime
    finished_at: datetime | None = None
    organizer: str | None = None
    meeting_id: str | None = None
    counters: RunCounters = field(default_factory=RunCounters)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far the sync of one object from one source has got, for one org."""

    org_id: str
    source: str
    object_name: str
    cursor: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What :meth:`SessionRepository.upsert_many` changed; a replay gives all ``unchanged``."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    participants_written: int = 0

    @property
    def written(self) -> int:
        """Sessions that were new or different: what a sync reports as written."""
        return self.inserted + self.updated
