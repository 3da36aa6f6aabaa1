"""The conferencing contract: every test runs against Zoom and GoTo Meeting over HTTPS."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from crm_meetings.conferencing import ConferencingProvider, ProviderMeeting
from crm_meetings.errors import (
    NoSessionExistsError,
    NotFoundError,
    RefreshFailedError,
    RemoteError,
)
from crm_meetings.model import CrmKind, Meeting, Person, new_meeting
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.middleware import DROPPED, TIMED_OUT

from .conftest import POLICY, SEED_ORGANIZER, Harness

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def a_meeting(**overrides: object) -> Meeting:
    fields: dict[str, object] = {
        "crm": CrmKind.HUBSPOT,
        "subject": "Pricing review <draft> with Acme",
        "start": T0,
        "end": T0 + timedelta(minutes=45),
        "timezone": "Europe/Paris",
        "organizer": Person(SEED_ORGANIZER, "Ada Lovelace"),
        "now": T0 - timedelta(days=3),
        "id_factory": lambda: "m-1",
        "description": "Agenda: numbers, next steps",
    }
    fields.update(overrides)
    return new_meeting(**fields)  # type: ignore[arg-type]


def test_is_a_conferencing_provider(harness: Harness) -> None:
    assert isinstance(harness.provider, ConferencingProvider)
    assert harness.provider.name == harness.vendor


# --- actions ----------------------------------------------------------------------------


def test_create_update_cancel_delete(harness: Harness) -> None:
    provider = harness.provider
    created = provider.create_meeting(a_meeting())
    assert isinstance(created, ProviderMeeting)
    assert created.provider == harness.vendor
    assert created.join_url.startswith("https://")
    assert created.dial_in  # both vendors give numbers to dial
    stored = harness.stored(created.id)
    assert stored["subject"] == "Pricing review <draft> with Acme"
    assert stored["start"] == "2026-11-20T15:00:00Z"
    assert stored["organizer"] == SEED_ORGANIZER
    assert not stored["deleted"]

    moved = a_meeting(subject="Pricing review (moved)", start=T0 + timedelta(days=1),
                      end=T0 + timedelta(days=1, minutes=30))  # fmt: skip
    provider.update_meeting(created.id, moved)
    assert harness.stored(created.id)["subject"] == "Pricing review (moved)"
    assert harness.stored(created.id)["start"] == "2026-11-21T15:00:00Z"

    provider.cancel_meeting(created.id)
    assert harness.stored(created.id)["deleted"]
    assert harness.stored(created.id)["notified"] is (harness.vendor == "zoom")
    provider.cancel_meeting(created.id)  # already gone: still fine

    other = provider.create_meeting(a_meeting())
    provider.delete_meeting(other.id)
    assert harness.stored(other.id)["deleted"]
    assert not harness.stored(other.id)["notified"]
    provider.delete_meeting(other.id)  # idempotent


def test_update_of_a_missing_meeting_is_not_found(harness: Harness) -> None:
    with pytest.raises(NotFoundError):
        harness.provider.update_meeting("999999999", a_meeting())


# --- history ----------------------------------------------------------------------------


def test_meetings_ran_in_a_window(harness: Harness) -> None:
    for user in harness.data.users:
        ran = list(harness.provider.meetings_ran(user.email, NOV, DEC))
        assert [r.id for r in ran] == harness.ran_between(user.email, NOV, DEC)
        assert all(r.provider == harness.vendor and r.topic for r in ran)
    assert harness.ran_between(harness.organizer, NOV, DEC)  # the seed has some


def test_meetings_ran_respects_the_window_bounds(harness: Harness) -> None:
    starts = sorted(
        s.start for m in harness.data.meetings for s in m.sessions
        if m.organizer == harness.data.users[0].key
    )  # fmt: skip
    since, until = starts[1], starts[-2]  # inclusive start, exclusive end
    ran = list(harness.provider.meetings_ran(harness.organizer, since, until))
    assert [r.id for r in ran] == harness.ran_between(harness.organizer, since, until)
    assert all(since <= r.first_start < until for r in ran)


def test_meetings_ran_over_a_long_window_with_exact_calls(harness: Harness) -> None:
    """Two months: Zoom cuts the report into ≤ 30-day windows; GoTo reads it at once."""
    until = NOV + timedelta(days=45)
    ran = list(harness.provider.meetings_ran(harness.organizer, NOV, until))
    assert [r.id for r in ran] == harness.ran_between(harness.organizer, NOV, until)
    calls = harness.sandbox.calls
    assert calls.count(harness.vendor, endpoint="/oauth/token") == 1
    windows = 2 if harness.vendor == "zoom" else 1
    assert calls.count(harness.vendor, endpoint=harness.history_endpoint) == windows
    if harness.vendor == "goto":
        assert calls.count("goto", endpoint="/G2M/rest/v2/organizers") == 1
    assert harness.provider.calls.total() == len(calls.calls(harness.vendor))


def test_sessions_and_participants_match_the_seed(harness: Harness) -> None:
    multi = harness.seeded(lambda m: len(m.sessions) >= 2)
    assert multi, "the seed must have a multi-session meeting"
    for seeded in multi:
        sessions = harness.provider.sessions(seeded.provider_meeting_id)
        assert [(s.start, s.end) for s in sessions] == [(s.start, s.end) for s in seeded.sessions]
        for got, want in zip(sessions, seeded.sessions, strict=True):
            assert got.provider == harness.vendor
            assert got.provider_meeting_id == seeded.provider_meeting_id
            assert sorted(
                (p.name, p.email, p.join_time, p.leave_time) for p in got.participants
            ) == sorted((p.name, p.email, p.join, p.leave) for p in want.participants)
        assert len({s.provider_session_id for s in sessions}) == len(sessions)


def test_sessions_calls_are_exact(harness: Harness) -> None:
    seeded = harness.seeded(lambda m: len(m.sessions) >= 2)[0]
    harness.provider.sessions(seeded.provider_meeting_id)
    per_endpoint = harness.sandbox.call_counts(harness.vendor)
    if harness.vendor == "zoom":
        n = len(seeded.sessions)
        assert per_endpoint[("GET", "/v2/past_meetings/{meetingId}/instances")] == 1
        assert per_endpoint[("GET", "/v2/past_meetings/{meetingId}")] == n
        assert per_endpoint[("GET", "/v2/report/meetings/{meetingId}/participants")] == n
    else:
        assert per_endpoint[("GET", "/G2M/rest/v2/meetings/{meetingId}/attendees")] == 1
    assert sum(per_endpoint.values()) == harness.provider.calls.total()


def test_sessions_of_a_listed_meeting_read_only_what_the_listing_lacks(harness: Harness) -> None:
    """Zoom's report rows carry each instance's UUID, start and end: a sync reads one
    participants page per instance in the window and nothing else. GoTo's one attendee
    read per meeting already has everything."""
    seeded = {m.provider_meeting_id: m for m in harness.data.meetings}
    ran = list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    assert any(len(r.instances) >= 2 for r in ran) is (harness.vendor == "zoom")
    for listed in ran:
        window = [s for s in seeded[listed.id].sessions if NOV <= s.start < DEC]
        harness.sandbox.calls.reset()
        sessions = harness.provider.sessions(listed.id, listed=listed)
        per_endpoint = harness.sandbox.call_counts(harness.vendor)
        if harness.vendor == "zoom":
            assert [(i.start, i.end) for i in listed.instances] == [
                (s.start, s.end) for s in window
            ]
            assert [(s.start, s.end) for s in sessions] == [(s.start, s.end) for s in window]
            assert [s.provider_session_id for s in sessions] == [i.id for i in listed.instances]
            assert [len(s.participants) for s in sessions] == [len(s.participants) for s in window]
            assert dict(per_endpoint) == {
                ("GET", "/v2/report/meetings/{meetingId}/participants"): len(window)
            }
        else:
            assert dict(per_endpoint) == {("GET", "/G2M/rest/v2/meetings/{meetingId}/attendees"): 1}
        assert sessions == [s for s in harness.provider.sessions(listed.id) if NOV <= s.start < DEC]


def test_a_meeting_never_started_has_no_session(harness: Harness) -> None:
    never = harness.seeded(lambda m: not m.started)
    assert never
    with pytest.raises(NoSessionExistsError) as caught:
        harness.provider.sessions(never[0].provider_meeting_id)
    assert "No session exists" in str(caught.value)


def test_a_meeting_created_but_not_held_has_no_session(harness: Harness) -> None:
    created = harness.provider.create_meeting(a_meeting())
    with pytest.raises(NoSessionExistsError):
        harness.provider.sessions(created.id)


def test_an_unknown_meeting_is_not_found(harness: Harness) -> None:
    with pytest.raises(NotFoundError):
        harness.provider.sessions("123")


# --- auth, rate limits, failures --------------------------------------------------------


def test_expired_token_is_refreshed_once(harness: Harness) -> None:
    list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    harness.sandbox.expire_tokens(harness.vendor)
    ran = list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    assert [r.id for r in ran] == harness.ran_between(harness.organizer, NOV, DEC)
    calls = harness.sandbox.calls
    assert calls.count(harness.vendor, endpoint="/oauth/token") == 2
    assert calls.count(harness.vendor, status=401) == 1


def test_refused_credentials_fail_clearly(harness: Harness) -> None:
    provider = harness.build("not-a-valid-secret")
    harness.providers.append(provider)
    with pytest.raises(RefreshFailedError) as caught:
        list(provider.meetings_ran(harness.organizer, NOV, DEC))
    assert caught.value.vendor == harness.vendor
    assert "re-authorise" in str(caught.value)
    checks = provider.check()
    assert [c.ok for c in checks] == [False]


def test_a_token_refused_after_refresh_fails_clearly(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor, FaultPlan(fail_next=2, fail_kind=FaultKind.UNAUTHORIZED),
        endpoint=harness.history_endpoint,
    )  # fmt: skip
    with pytest.raises(RefreshFailedError):
        list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))


def test_rate_limit_waits_for_retry_after(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor,
        FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=0.25),
        endpoint=harness.history_endpoint,
    )
    ran = list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    assert [r.id for r in ran] == harness.ran_between(harness.organizer, NOV, DEC)
    assert harness.sleeps == [0.25]
    assert harness.sandbox.calls.count(harness.vendor, status=429) == 1


def test_persistent_server_errors_give_up_after_bounded_retries(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor, FaultPlan(server_error=1.0), endpoint=harness.history_endpoint
    )
    with pytest.raises(RemoteError) as caught:
        list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    assert caught.value.vendor == harness.vendor
    assert caught.value.status is not None
    assert caught.value.status >= 500
    assert harness.sandbox.calls.count(harness.vendor, endpoint=harness.history_endpoint) == (
        POLICY.attempts
    )
    assert len(harness.sleeps) == POLICY.attempts - 1


def test_a_create_is_not_replayed_after_a_server_error(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor, FaultPlan(fail_next=1), endpoint=harness.create_endpoint, method="POST"
    )
    with pytest.raises(RemoteError):
        harness.provider.create_meeting(a_meeting())
    assert harness.sandbox.calls.count(harness.vendor, endpoint=harness.create_endpoint) == 1


def test_a_create_is_retried_after_a_rate_limit(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor,
        FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=0.5),
        endpoint=harness.create_endpoint,
        method="POST",
    )
    created = harness.provider.create_meeting(a_meeting())
    assert not harness.stored(created.id)["deleted"]
    assert harness.sleeps == [0.5]


def test_a_dropped_connection_is_retried_for_reads(harness: Harness) -> None:
    harness.sandbox.set_faults(
        harness.vendor, FaultPlan(fail_next=1, fail_kind=FaultKind.DROP),
        endpoint=harness.history_endpoint,
    )  # fmt: skip
    ran = list(harness.provider.meetings_ran(harness.organizer, NOV, DEC))
    assert [r.id for r in ran] == harness.ran_between(harness.organizer, NOV, DEC)
    assert harness.sandbox.calls.count(harness.vendor, status=DROPPED) == 1
    assert len(harness.sleeps) == 1
    assert math.isfinite(harness.sleeps[0])


def test_a_timed_out_create_is_not_replayed_and_is_found_again(harness: Harness) -> None:
    """The vendor made the meeting but the answer never came: ``find_created`` finds it
    (by subject and times, as GoTo lists upcoming meetings: in the sandbox's future)."""
    provider = harness.build(timeout=0.3)
    harness.providers.append(provider)
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
    meeting = a_meeting(start=start, end=start + timedelta(minutes=45))
    other = a_meeting(start=start + timedelta(hours=1), end=start + timedelta(hours=2))
    made_first = provider.create_meeting(other)
    harness.sandbox.set_faults(
        harness.vendor,
        FaultPlan(fail_next=1, fail_kind=FaultKind.TIMEOUT, hold=1.0),
        endpoint=harness.create_endpoint,
        method="POST",
    )
    with pytest.raises(RemoteError):
        provider.create_meeting(meeting)
    harness.sandbox.clear_faults(harness.vendor)
    assert harness.sandbox.calls.count(harness.vendor, status=TIMED_OUT) == 1
    found = provider.find_created(meeting)
    assert len(found) == 1
    assert found[0].id != made_first.id
    assert not harness.stored(found[0].id)["deleted"]
    assert found[0].join_url
    assert [m.id for m in provider.find_created(other)] == [made_first.id]


def test_check_reports_credentials_and_api(harness: Harness) -> None:
    checks = harness.provider.check()
    assert [c.ok for c in checks] == [True, True], checks
    assert all(c.name.startswith(harness.vendor) for c in checks)


def test_listings_page_with_exact_call_counts(harness: Harness) -> None:
    """Two rows per page: Zoom follows next_page_token; GoTo's lists are not paged."""
    provider = harness.build(page_size=2)
    harness.providers.append(provider)
    user = harness.data.users[0]
    instances = [
        s for m in harness.data.meetings if m.organizer == user.key for s in m.sessions
        if NOV <= s.start < DEC
    ]  # fmt: skip
    assert len(instances) > 4  # several pages
    ran = list(provider.meetings_ran(user.email, NOV, DEC))
    assert [r.id for r in ran] == harness.ran_between(user.email, NOV, DEC)
    calls = harness.sandbox.calls
    assert calls.count(harness.vendor, endpoint=harness.history_endpoint) == harness.pages(
        len(instances), 2
    )

    seeded = max(harness.data.meetings, key=lambda m: len(m.sessions))
    calls.reset()
    sessions = provider.sessions(seeded.provider_meeting_id)
    assert [len(s.participants) for s in sessions] == [len(s.participants) for s in seeded.sessions]
    if harness.vendor == "zoom":
        expected = 1 + sum(1 + harness.pages(len(s.participants), 2) for s in seeded.sessions)
    else:
        expected = 1
    assert len(calls.calls(harness.vendor)) == expected
