"""Rotation rules, example by example and as hypothesis state machines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_meetings.errors import NotFoundError, ValidationError
from crm_meetings.routing.rotation import (
    Member,
    NewMemberPolicy,
    Rotation,
    book,
    pick,
    set_available,
    sync_members,
    unbook,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def rotation(*emails: str, policy: NewMemberPolicy = NewMemberPolicy.RESET) -> Rotation:
    return sync_members(Rotation("r1", "Inbound", policy=policy), users=emails, teams={})


def test_fewest_bookings_first_then_least_recently_scheduled() -> None:
    r = rotation("a@x.com", "b@x.com", "c@x.com")
    assert pick(r).chosen == "a@x.com"  # all zero and never scheduled: by address
    r = book(r, "a@x.com", T0)
    r = book(r, "b@x.com", T0 + timedelta(minutes=1))
    assert pick(r).chosen == "c@x.com"
    r = book(r, "c@x.com", T0 + timedelta(minutes=2))
    assert pick(r).chosen == "a@x.com"  # all at one: a was scheduled longest ago


def test_override_counts_for_whoever_was_booked() -> None:
    r = rotation("a@x.com", "b@x.com")
    assert pick(r).chosen == "a@x.com"
    r = book(r, "b@x.com", T0)  # the rep overrode the suggestion
    assert r.member("b@x.com").count == 1
    assert r.member("a@x.com").count == 0
    assert pick(r).chosen == "a@x.com"


def test_unavailable_members_are_never_suggested_until_toggled_back() -> None:
    r = set_available(rotation("a@x.com", "b@x.com"), "a@x.com", False)
    explanation = pick(r)
    assert explanation.chosen == "b@x.com"
    assert explanation.skipped == (("a@x.com", "marked unavailable"),)
    assert pick(set_available(r, "a@x.com", True)).chosen == "a@x.com"


def test_nobody_available_is_an_answer_not_a_crash() -> None:
    r = set_available(rotation("a@x.com"), "a@x.com", False)
    explanation = pick(r)
    assert explanation.chosen is None
    assert "Nobody is available" in explanation.as_text()


def test_deleting_or_cancelling_takes_the_count_back_never_below_zero() -> None:
    r = book(rotation("a@x.com", "b@x.com"), "a@x.com", T0)
    r = unbook(r, "a@x.com")
    assert r.member("a@x.com").count == 0
    assert unbook(r, "a@x.com").member("a@x.com").count == 0
    assert unbook(r, "gone@x.com") == r


def test_adding_a_member_resets_every_count_by_default() -> None:
    r = book(book(rotation("a@x.com", "b@x.com"), "a@x.com", T0), "a@x.com", T0)
    r = sync_members(r, users=["a@x.com", "b@x.com", "c@x.com"], teams={})
    assert [m.count for m in r.members] == [0, 0, 0]


def test_calibrate_starts_a_newcomer_at_the_average() -> None:
    r = rotation("a@x.com", "b@x.com", policy=NewMemberPolicy.CALIBRATE)
    for _ in range(4):
        r = book(r, "a@x.com", T0)
    r = book(book(r, "b@x.com", T0), "b@x.com", T0)
    r = sync_members(r, users=["a@x.com", "b@x.com", "c@x.com"], teams={})
    assert [m.count for m in r.members] == [4, 2, 3]


def test_teams_bring_their_members_in_and_take_them_out() -> None:
    r = sync_members(Rotation("r", "Team"), users=["lead@x.com"], teams={"emea": ["a@x.com"]})
    assert {m.email for m in r.members} == {"lead@x.com", "a@x.com"}
    assert r.member("a@x.com").teams == frozenset({"emea"})
    r = book(r, "lead@x.com", T0)
    r = sync_members(r, users=["lead@x.com"], teams={"emea": []})
    assert {m.email for m in r.members} == {"lead@x.com"}
    assert r.member("lead@x.com").count == 1  # leaving resets nothing
    with pytest.raises(NotFoundError):
        r.member("a@x.com")


def test_weights_share_bookings_in_proportion() -> None:
    r = sync_members(Rotation("r", "W"), users=["a@x.com", "b@x.com"], teams={})
    r = r.with_member(Member("a@x.com", weight=2.0))
    booked = {"a@x.com": 0, "b@x.com": 0}
    for i in range(30):
        chosen = pick(r).chosen
        assert chosen is not None
        booked[chosen] += 1
        r = book(r, chosen, T0 + timedelta(minutes=i))
    assert booked == {"a@x.com": 20, "b@x.com": 10}


def test_daily_cap_skips_with_a_reason() -> None:
    r = rotation("a@x.com", "b@x.com")
    r = r.with_member(Member("a@x.com", daily_cap=2))
    explanation = pick(r, {"a@x.com": 2})
    assert explanation.chosen == "b@x.com"
    assert explanation.skipped == (("a@x.com", "reached the daily cap of 2"),)


def test_explanation_lists_candidates_in_pick_order() -> None:
    r = book(rotation("a@x.com", "b@x.com"), "a@x.com", T0)
    explanation = pick(r)
    assert [c.email for c in explanation.candidates] == ["b@x.com", "a@x.com"]
    text = explanation.as_text()
    assert "b@x.com: 0 booked" in text
    assert f"last scheduled {T0.isoformat()}" in text


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"weight": 0}, "weight"), ({"daily_cap": 0}, "daily_cap")]
)
def test_bad_member_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Member("a@x.com", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


EMAILS = [f"m{i}@x.com" for i in range(5)]
_ops = st.one_of(
    st.tuples(st.just("book_pick"), st.none()),
    st.tuples(st.just("book_override"), st.sampled_from(EMAILS)),
    st.tuples(st.just("unbook"), st.sampled_from(EMAILS)),
    st.tuples(st.just("toggle"), st.sampled_from(EMAILS)),
    st.tuples(st.just("join"), st.sampled_from(EMAILS)),
    st.tuples(st.just("leave"), st.sampled_from(EMAILS)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ops, max_size=40), st.sampled_from(list(NewMemberPolicy)))
def test_random_histories_keep_the_rules(
    ops: list[tuple[str, str | None]], policy: NewMemberPolicy
) -> None:
    users = EMAILS[:2]
    r = sync_members(Rotation("r", "P", policy=policy), users=users, teams={})
    clock = T0
    for op, email in ops:
        clock += timedelta(minutes=1)
        present = {m.email for m in r.members}
        if op == "book_pick":
            chosen = pick(r).chosen
            if chosen is not None:
                r = book(r, chosen, clock)
        elif op == "book_override" and email in present:
            r = book(r, email, clock)
        elif op == "unbook" and email is not None:
            r = unbook(r, email)
        elif op == "toggle" and email in present:
            r = set_available(r, email, not r.member(email).available)
        elif op == "join" and email not in present and email is not None:
            before = r
            users = [*users, email]
            r = sync_members(r, users=users, teams={})
            if policy is NewMemberPolicy.RESET:
                assert all(m.count == 0 for m in r.members)
            else:
                assert all(r.member(m.email).count == m.count for m in before.members)
        elif op == "leave" and email in users and len(users) > 1:
            users = [u for u in users if u != email]
            r = sync_members(r, users=users, teams={})
        assert all(m.count >= 0 for m in r.members)
        _assert_pick_obeys_the_rule(r)


def _assert_pick_obeys_the_rule(r: Rotation) -> None:
    explanation = pick(r)
    available = [m for m in r.members if m.available]
    if not available:
        assert explanation.chosen is None
        return
    chosen = r.member(explanation.chosen or "")
    assert chosen.available
    fewest = min(m.count for m in available)
    assert chosen.count == fewest
    tied = [m for m in available if m.count == fewest]
    never = [m for m in tied if m.last_scheduled is None]
    if never:
        assert chosen.last_scheduled is None
    else:
        assert chosen.last_scheduled == min(m.last_scheduled for m in tied if m.last_scheduled)
