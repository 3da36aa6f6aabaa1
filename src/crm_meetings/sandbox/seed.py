"""Deterministic, vendor-neutral seed data that every emulator loads in its own shape.

``generate(SeedSpec(seed=42, meetings=1000))`` always yields the same organizers, CRM
records, meetings and — for the started share — sessions with participants who join and
leave. CRM emulators load the meetings as their own records (assigning vendor-format
ids); conferencing emulators load the meetings with their sessions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "SeedData",
    "SeedMeeting",
    "SeedParticipant",
    "SeedRecord",
    "SeedSession",
    "SeedSpec",
    "SeedUser",
    "generate",
]

_FIRST = ("Ada", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kofi")
_LAST = ("Lovelace", "Okafor", "Müller", "Ng", "Ortiz", "Petrov", "Quinn", "Rossi", "Sato")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne")
_TOPICS = ("Discovery call", "Demo", "Pricing review", "QBR", "Kick-off", "Renewal", "Check-in")
_ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney")


@dataclass(frozen=True, slots=True)
class SeedSpec:
    seed: int = 42
    meetings: int = 20
    organizers: int = 3
    records: int = 10  # companies; each has one contact
    started_share: float = 0.5
    max_sessions: int = 3
    min_participants: int = 2
    max_participants: int = 8
    provider: str | None = None  # "zoom" | "goto"; None alternates
    start: datetime = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # first meeting day (a Monday)


@dataclass(frozen=True, slots=True)
class SeedUser:
    key: str  # "user-0"
    email: str
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class SeedRecord:
    """A company with one contact: Account+Contact (Salesforce, Zoho), Company+Contact (HubSpot)."""

    key: str  # "record-0"
    company: str
    domain: str
    contact_name: str
    contact_email: str


@dataclass(frozen=True, slots=True)
class SeedParticipant:
    name: str
    email: str | None
    join: datetime
    leave: datetime


@dataclass(frozen=True, slots=True)
class SeedSession:
    session_id: str
    start: datetime
    end: datetime
    participants: tuple[SeedParticipant, ...]


@dataclass(frozen=True, slots=True)
class SeedMeeting:
    key: str  # "meeting-0"
    organizer: str  # SeedUser.key
    record: str  # SeedRecord.key
    subject: str
    start: datetime
    end: datetime
    timezone: str
    invitees: tuple[tuple[str, str], ...]  # (name, email)
    provider: str  # "zoom" | "goto"
    provider_meeting_id: str
    join_url: str
    sessions: tuple[SeedSession, ...]  # empty: never started

    @property
    def started(self) -> bool:
        return bool(self.sessions)


@dataclass(frozen=True, slots=True)
class SeedData:
    spec: SeedSpec
    users: tuple[SeedUser, ...]
    records: tuple[SeedRecord, ...]
    meetings: tuple[SeedMeeting, ...]

    def user(self, key: str) -> SeedUser:
        return next(u for u in self.users if u.key == key)

    def record(self, key: str) -> SeedRecord:
        return next(r for r in self.records if r.key == key)


def generate(spec: SeedSpec) -> SeedData:
    """The dataset ``spec`` describes; the same spec always gives the same data."""
    rng = random.Random(spec.seed)
    users = tuple(
        SeedUser(
            key=f"user-{i}",
            email=f"rep{i}@sales.example.com",
            name=f"{_FIRST[i % len(_FIRST)]} {_LAST[i % len(_LAST)]}",
            timezone=_ZONES[i % len(_ZONES)],
        )
        for i in range(spec.organizers)
    )
    records = tuple(
        SeedRecord(
            key=f"record-{i}",
            company=f"{_COMPANIES[i % len(_COMPANIES)]} {i}",
            domain=f"{_COMPANIES[i % len(_COMPANIES)].lower()}{i}.example.net",
            contact_name=f"{_FIRST[(i + 3) % len(_FIRST)]} {_LAST[(i + 5) % len(_LAST)]}",
            contact_email=f"contact{i}@{_COMPANIES[i % len(_COMPANIES)].lower()}{i}.example.net",
        )
        for i in range(spec.records)
    )
    return SeedData(spec, users, records, tuple(_meetings(spec, rng, users, records)))


def _meetings(
    spec: SeedSpec, rng: random.Random, users: tuple[SeedUser, ...], records: tuple[SeedRecord, ...]
) -> Iterator[SeedMeeting]:
    for i in range(spec.meetings):
        organizer = users[i % len(users)]
        record = records[rng.randrange(len(records))]
        provider = spec.provider or ("zoom" if i % 2 == 0 else "goto")
        start = spec.start + timedelta(hours=i // 2, minutes=30 * (i % 2))
        end = start + timedelta(minutes=rng.choice((15, 30, 45, 60)))
        base_id = 80_000_000_000 if provider == "zoom" else 500_000_000
        provider_meeting_id = str(base_id + i)
        join_url = (
            f"https://zoom.example.com/j/{provider_meeting_id}"
            if provider == "zoom"
            else f"https://meet.goto.example.com/{provider_meeting_id}"
        )
        started = rng.random() < spec.started_share
        sessions = (
            tuple(
                _session(spec, rng, provider, provider_meeting_id, start, end, n, record)
                for n in range(rng.randint(1, spec.max_sessions))
            )
            if started
            else ()
        )
        yield SeedMeeting(
            key=f"meeting-{i}",
            organizer=organizer.key,
            record=record.key,
            subject=f"{_TOPICS[i % len(_TOPICS)]} with {record.company}",
            start=start,
            end=end,
            timezone=organizer.timezone,
            invitees=((record.contact_name, record.contact_email),),
            provider=provider,
            provider_meeting_id=provider_meeting_id,
            join_url=join_url,
            sessions=sessions,
        )


def _session(
    spec: SeedSpec,
    rng: random.Random,
    provider: str,
    meeting_id: str,
    start: datetime,
    end: datetime,
    n: int,
    record: SeedRecord,
) -> SeedSession:
    session_start = start + timedelta(days=n, minutes=rng.randint(0, 5))
    session_end = session_start + (end - start) + timedelta(minutes=rng.randint(-5, 10))
    people = rng.randint(spec.min_participants, spec.max_participants)
    participants = []
    for p in range(people):
        join = session_start + timedelta(minutes=rng.randint(0, 5))
        leave = max(join, session_end - timedelta(minutes=rng.randint(0, 5)))
        first, last = _FIRST[(p + n) % len(_FIRST)], _LAST[(p * 3) % len(_LAST)]
        email = record.contact_email if p == 0 else f"guest{p}@{record.domain}"
        participants.append(
            SeedParticipant(f"{first} {last}", None if p == people - 1 else email, join, leave)
        )
    session_id = (
        f"{meeting_id}-{n}" if provider == "goto" else f"uuid{meeting_id}x{n}=="
    )  # Zoom instance UUIDs are base64; see sandbox/zoom.py for ones needing double encoding
    return SeedSession(session_id, session_start, session_end, tuple(participants))
