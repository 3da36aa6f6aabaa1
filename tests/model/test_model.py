"""The shared meeting model: validation at construction, changes and SEQUENCE rules."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_meetings.errors import ValidationError
from crm_meetings.model import (
    FIELD_CLASSES,
    CrmKind,
    FieldClass,
    Invitee,
    Meeting,
    MeetingStatus,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
    apply_change,
    diff,
    new_meeting,
    parse_address,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def make(**fields: object) -> Meeting:
    ids = count()
    base: dict[str, object] = {
        "crm": CrmKind.HUBSPOT,
        "subject": "Pricing review",
        "start": START,
        "end": START + timedelta(minutes=30),
        "timezone": "Europe/Paris",
        "organizer": Person("rep@sales.example.com", "Rita Rep"),
        "now": NOW,
        "id_factory": lambda: f"m{next(ids)}",
        "invitees": (Invitee("ann@client.example", "Ann"),),
    }
    base.update(fields)
    return new_meeting(**base)  # type: ignore[arg-type]


# --- construction ---------------------------------------------------------------------


def test_new_meeting_has_a_stable_uid_derived_from_its_id() -> None:
    meeting = make()
    assert meeting.id == "m0"
    assert meeting.uid == "m0@crm-meetings"
    assert meeting.sequence == 0
    assert meeting.status is MeetingStatus.SCHEDULED
    assert meeting.created_at == NOW


def test_times_are_stored_in_utc_and_shown_in_the_organizers_zone() -> None:
    paris = timezone(timedelta(hours=1))
    meeting = make(start=datetime(2026, 12, 1, 16, 0, tzinfo=paris), end=START + timedelta(hours=1))
    assert meeting.start == START
    assert meeting.start.tzinfo is UTC
    assert meeting.local_start.hour == 16
    assert meeting.duration == timedelta(hours=1)


def test_a_naive_datetime_is_a_clear_error() -> None:
    with pytest.raises(ValidationError) as info:
        make(start=datetime(2026, 12, 1, 15, 0))
    assert info.value.field == "start"
    assert "has no timezone" in str(info.value)
    assert "aware datetime" in info.value.hint


@pytest.mark.parametrize("minutes", [0, -30])
def test_end_must_be_after_start(minutes: int) -> None:
    with pytest.raises(ValidationError, match="not after its start") as info:
        make(end=START + timedelta(minutes=minutes))
    assert info.value.field == "end"


def test_unknown_timezone_is_rejected_with_an_example() -> None:
    with pytest.raises(ValidationError) as info:
        make(timezone="Europe/Atlantis")
    assert info.value.field == "timezone"
    assert "Europe/Paris" in info.value.hint


@pytest.mark.parametrize("subject", ["", "   ", "line\nbreak", "x" * 256, "bell\x07"], ids=repr)
def test_bad_subjects_are_rejected(subject: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(subject=subject)
    assert info.value.field == "subject"


def test_duplicate_invitees_are_rejected() -> None:
    with pytest.raises(ValidationError, match="invited twice"):
        make(invitees=(Invitee("a@x.com"), Invitee("A@X.com", "Also A")))


def test_join_url_must_be_http() -> None:
    with pytest.raises(ValidationError) as info:
        make(join_url="javascript:alert(1)")
    assert info.value.field == "join_url"


# --- addresses ------------------------------------------------------------------------


def test_display_name_forms_are_parsed_not_stored_as_the_address() -> None:
    assert parse_address("Bob Smith <Bob@X.com>") == ("Bob Smith", "bob@x.com")
    assert parse_address('"Smith, Bob" <bob@x.com>') == ("Smith, Bob", "bob@x.com")
    assert parse_address("<bob@x.com>") == ("", "bob@x.com")
    invitee = Invitee.parse("Bob <b@x.com>", optional=True)
    assert (invitee.email, invitee.name, invitee.optional) == ("b@x.com", "Bob", True)


@pytest.mark.parametrize(
    "value",
    ["Bob <b@x.com>", "b@x.com>", "not-an-address", "a@b", "a@x.com\r\nBcc: z@y.com", ""],
    ids=repr,
)
def test_constructors_reject_anything_but_a_bare_address(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        Invitee(value)
    assert info.value.field == "email"


@pytest.mark.parametrize("value", ["a@x.com, b@y.com", "Bob", "a@x.com\nb@y.com"], ids=repr)
def test_parse_address_rejects_lists_and_names_without_address(value: str) -> None:
    with pytest.raises(ValidationError):
        parse_address(value)


def test_record_refs_reject_blank_ids() -> None:
    with pytest.raises(ValidationError) as info:
        RecordRef("Account", " 001 ")
    assert info.value.field == "record_id"
    assert str(RecordRef("Deal", "42")) == "Deal/42"


# --- changes --------------------------------------------------------------------------


def test_every_meeting_field_is_classified() -> None:
    names = {f.name for f in dataclasses.fields(Meeting)}
    assert names == set(FIELD_CLASSES)


def test_a_time_change_is_sent_and_bumps_sequence() -> None:
    meeting = make()
    moved, change = meeting.revise(start=START + timedelta(hours=1), end=START + timedelta(hours=2))
    assert change.rescheduled
    assert change.notify_invitees
    assert moved.sequence == 1
    assert moved.version == 2
    assert {"start", "end", "sequence", "version"} <= change.changed
    assert change.kept == ("ann@client.example",)


def test_internal_notes_are_not_sent_and_keep_sequence() -> None:
    meeting = make()
    edited, change = meeting.revise(notes="call back in Q3", at=NOW + timedelta(minutes=1))
    assert not change.notify_invitees
    assert edited.sequence == 0
    assert edited.version == 2
    assert edited.updated_at == NOW + timedelta(minutes=1)


def test_a_reply_alone_is_not_announced() -> None:
    meeting = make()
    accepted = (dataclasses.replace(meeting.invitees[0], response=ResponseStatus.ACCEPTED),)
    edited, change = meeting.revise(invitees=accepted)
    assert "invitees" in change.changed
    assert not change.notify_invitees
    assert edited.sequence == 0


def test_adding_and_removing_invitees_is_announced() -> None:
    meeting = make()
    edited, change = meeting.revise(invitees=(Invitee("bob@client.example", "Bob"),))
    assert change.added == ("bob@client.example",)
    assert change.removed == ("ann@client.example",)
    assert change.kept == ()
    assert change.notify_invitees
    assert edited.sequence == 1


def test_cancel_is_a_rescheduling_change() -> None:
    cancelled, change = make().revise(status=MeetingStatus.CANCELLED)
    assert change.rescheduled
    assert cancelled.sequence == 1


def test_no_op_revision_returns_the_same_value() -> None:
    meeting = make()
    same, change = meeting.revise(subject=meeting.subject)
    assert same is meeting
    assert not change


@pytest.mark.parametrize("field", ["id", "uid", "crm", "created_at"])
def test_identity_fields_cannot_change(field: str) -> None:
    meeting = make()
    replacement = {"id": "other", "uid": "other@x", "crm": CrmKind.ZOHO, "created_at": START}
    with pytest.raises(ValidationError) as info:
        meeting.revise(**{field: replacement[field]})
    assert info.value.field == field


def test_sequence_is_managed_by_revise() -> None:
    with pytest.raises(ValidationError, match="managed"):
        make().revise(sequence=7)


def test_diff_refuses_a_decreasing_sequence() -> None:
    meeting = dataclasses.replace(make(), sequence=3)
    with pytest.raises(ValidationError, match="go down"):
        diff(meeting, dataclasses.replace(meeting, sequence=2))


def test_apply_refuses_a_change_from_another_starting_point() -> None:
    meeting = make()
    _, change = meeting.revise(subject="New title")
    other = dataclasses.replace(meeting, subject="Something else")
    with pytest.raises(ValidationError, match="does not hold"):
        apply_change(other, change)


# --- properties -----------------------------------------------------------------------

_emails = st.sampled_from([f"p{i}@example.com" for i in range(6)])
_edits = st.fixed_dictionaries(
    {},
    optional={
        "subject": st.sampled_from(["Demo", "QBR", "Kick-off"]),
        "description": st.text(
            st.characters(blacklist_categories=("Cc", "Cs"), whitelist_characters="\n\t"),
            max_size=20,
        ),
        "notes": st.sampled_from(["", "n1", "n2"]),
        "location": st.sampled_from(["", "Room 1", "Online"]),
        "shift": st.integers(min_value=-3, max_value=3),
        "status": st.sampled_from(list(MeetingStatus)),
        "invitees": st.lists(_emails, unique=True, max_size=4),
    },
)


def _apply_edit(meeting: Meeting, edit: dict[str, object]) -> tuple[Meeting, object]:
    changes = dict(edit)
    shift = changes.pop("shift", None)
    if isinstance(shift, int):
        changes["start"] = meeting.start + timedelta(hours=shift)
        changes["end"] = meeting.end + timedelta(hours=shift)
    if "invitees" in changes:
        changes["invitees"] = tuple(Invitee(e) for e in changes["invitees"])  # type: ignore[attr-defined]
    return meeting.revise(**changes)


@settings(max_examples=60, deadline=None)
@given(st.lists(_edits, max_size=6))
def test_sequence_never_decreases_and_diff_apply_round_trips(
    edits: list[dict[str, object]],
) -> None:
    meeting = make()
    for edit in edits:
        previous = meeting
        meeting, _ = _apply_edit(meeting, edit)
        change = diff(previous, meeting)
        assert meeting.sequence >= previous.sequence
        assert meeting.sequence - previous.sequence == (1 if change.bumps_sequence else 0)
        assert apply_change(previous, change) == meeting


@settings(max_examples=60, deadline=None)
@given(_edits, _edits)
def test_diff_then_apply_gives_the_second_meeting(
    a: dict[str, object], b: dict[str, object]
) -> None:
    first, _ = _apply_edit(make(), a)
    second, _ = _apply_edit(first, b)
    assert apply_change(first, diff(first, second)) == second
    assert not diff(second, second)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(FIELD_CLASSES)))
def test_only_announced_or_rescheduling_fields_notify(name: str) -> None:
    cls = FIELD_CLASSES[name]
    assert cls in set(FieldClass)
    if cls is FieldClass.INTERNAL:
        meeting = make()
        change = dataclasses.replace(diff(meeting, meeting), values={name: (1, 2)})
        assert not change.notify_invitees


# --- sessions -------------------------------------------------------------------------


def test_session_and_participant_minutes() -> None:
    join = START
    participant = Participant("Ann", join, join + timedelta(minutes=12, seconds=40), "Ann@X.com")
    assert participant.email == "ann@x.com"
    assert participant.minutes_attended == 13
    end = START + timedelta(minutes=29, seconds=50)
    session = Session("zoom", "s1", "m1", START, end, (participant,))
    assert session.duration_minutes == 30
    assert list(session.attendee_emails()) == ["ann@x.com"]


def test_participant_leaving_before_joining_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Participant("Ann", START, START - timedelta(seconds=1))
    assert info.value.field == "leave_time"
