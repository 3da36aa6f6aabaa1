"""Rotations through the store, on SQLite and PostgreSQL, and booked concurrently."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_meetings.errors import ConflictError, NotFoundError
from crm_meetings.model import MeetingStatus
from crm_meetings.routing import rotation as rules
from crm_meetings.routing.rotation import Member, NewMemberPolicy, Rotation
from crm_meetings.routing.rotations import BookingState, RotationRepository
from crm_meetings.routing.tables import RotationBookingRow
from crm_meetings.store import DEFAULT_ORG_ID, Store, upgrade

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
A, B, C, D = "ann@acme.example", "bob@acme.example", "cat@acme.example", "dan@acme.example"


def create(store: Store, *users: str, **options: Any) -> Rotation:
    with store.transaction() as uow:
        return uow.repository(RotationRepository).create(
            DEFAULT_ORG_ID, "Inbound", users=users, **options
        )


def book(store: Store, rotation_id: str, meeting_id: str, at: datetime, **kw: Any) -> str:
    with store.transaction() as uow:
        return uow.repository(RotationRepository).book(rotation_id, meeting_id, at, **kw).member


def counts(store: Store, rotation_id: str) -> dict[str, int]:
    with store.transaction() as uow:
        return {
            m.email: m.count for m in uow.repository(RotationRepository).get(rotation_id).members
        }


def test_round_robin_fewest_first_then_least_recent_and_explained(store: Store, clock: Any) -> None:
    r = create(store, A, B, C)
    order = [book(store, r.id, f"m{i}", clock.advance(minutes=1)) for i in range(6)]
    assert order == [A, B, C, A, B, C]
    assert counts(store, r.id) == {A: 2, B: 2, C: 2}
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        booking = repo.booking_for("m3")
        assert booking is not None
        assert not booking.overridden
        assert booking.explanation.chosen == A
        assert [c.email for c in booking.explanation.candidates] == [A, B, C]
        assert [c.count for c in booking.explanation.candidates] == [1, 1, 1]
        assert "Suggested: ann@acme.example" in booking.explanation.as_text()
        assert repo.get("Inbound", org_id=DEFAULT_ORG_ID).id == r.id


def test_override_counts_for_whoever_was_booked(store: Store, clock: Any) -> None:
    r = create(store, A, B)
    assert book(store, r.id, "m1", clock.now, member=B) == B
    with store.transaction() as uow:
        booking = uow.repository(RotationRepository).booking_for("m1")
    assert booking is not None
    assert booking.overridden
    assert booking.suggested == A
    assert counts(store, r.id) == {A: 0, B: 1}
    with pytest.raises(NotFoundError):
        book(store, r.id, "m2", clock.now, member=D)


def test_unavailable_member_is_skipped_until_toggled_back(store: Store, clock: Any) -> None:
    r = create(store, A, B)
    with store.transaction() as uow:
        toggled = uow.repository(RotationRepository).set_available(r.id, A, False)
    assert not toggled.member(A).available
    assert [book(store, r.id, f"m{i}", clock.advance(minutes=1)) for i in range(2)] == [B, B]
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        assert repo.suggest(r.id, clock.now).skipped == ((A, "marked unavailable"),)
        repo.set_available(r.id, A, True)
    assert book(store, r.id, "m3", clock.advance(minutes=1)) == A


def test_nobody_available_is_a_conflict_saying_what_to_do(store: Store, clock: Any) -> None:
    r = create(store, A)
    with store.transaction() as uow:
        uow.repository(RotationRepository).set_available(r.id, A, False)
    with pytest.raises(ConflictError) as raised:
        book(store, r.id, "m1", clock.now)
    assert "available" in raised.value.hint


@pytest.mark.parametrize("state", [BookingState.CANCELLED, BookingState.DELETED])
def test_cancel_or_delete_gives_the_count_back_once(
    store: Store, clock: Any, state: BookingState
) -> None:
    r = create(store, A, B)
    book(store, r.id, "m1", clock.now)
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        ended = repo.end_booking("m1", state)
        assert ended is not None
        assert ended.state is state
        repo.end_booking("m1", state)  # a replay takes nothing more
        repo.end_booking("m1", MeetingStatus.DELETED)  # cancelled, then deleted: still once
        assert repo.end_booking("never-booked", state) is None
    assert counts(store, r.id) == {A: 0, B: 0}
    assert book(store, r.id, "m2", clock.advance(minutes=1)) == B  # A was scheduled last


def test_a_meeting_is_booked_once(store: Store, clock: Any) -> None:
    r = create(store, A, B)
    book(store, r.id, "m1", clock.now)
    with pytest.raises(ConflictError):
        book(store, r.id, "m1", clock.now)
    assert counts(store, r.id) == {A: 1, B: 0}


def test_adding_a_member_resets_every_count_and_old_bookings_stop_counting(
    store: Store, clock: Any
) -> None:
    r = create(store, A, B)
    for i in range(3):
        book(store, r.id, f"m{i}", clock.advance(minutes=1))
    with store.transaction() as uow:
        uow.repository(RotationRepository).add_member(r.id, C)
    assert counts(store, r.id) == {A: 0, B: 0, C: 0}
    book(store, r.id, "m9", clock.advance(minutes=1))  # C: never scheduled
    with store.transaction() as uow:
        uow.repository(RotationRepository).end_booking("m0", BookingState.DELETED)
    assert counts(store, r.id) == {A: 0, B: 0, C: 1}  # m0 was counted before the reset


def test_calibrate_starts_the_newcomer_at_the_average(store: Store, clock: Any) -> None:
    r = create(store, A, B, policy=NewMemberPolicy.CALIBRATE)
    for i in range(4):
        book(store, r.id, f"m{i}", clock.advance(minutes=1))
    with store.transaction() as uow:
        uow.repository(RotationRepository).add_member(r.id, C)
    assert counts(store, r.id) == {A: 2, B: 2, C: 2}


def test_teams_bring_members_in_and_take_them_out(store: Store, clock: Any) -> None:
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        repo.set_team(DEFAULT_ORG_ID, "emea", [A, B])
        r = repo.create(DEFAULT_ORG_ID, "EMEA", users=[D], teams=["emea"])
        assert {m.email for m in r.members} == {A, B, D}
        assert r.member(A).teams == {"emea"}
        assert not r.member(A).direct
    book(store, r.id, "m1", clock.now)
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        (after,) = repo.set_team(DEFAULT_ORG_ID, "emea", [B, C])  # A leaves, C joins
        assert [m.email for m in after.members] == [B, D, C]
        assert all(m.count == 0 for m in after.members)  # C joined: reset
        repo.remove_team(r.id, "emea")
        assert [m.email for m in repo.get(r.id).members] == [D]
        with pytest.raises(NotFoundError):
            repo.remove_member(r.id, A)
        repo.remove_member(r.id, D)
        assert repo.get(r.id).members == ()


def test_daily_cap_and_weights(store: Store, clock: Any) -> None:
    r = create(store, A, B)
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        repo.configure_member(r.id, A, daily_cap=1)
        assert repo.configure_member(r.id, B, weight=2.0).member(B).weight == 2.0
    picks = [book(store, r.id, f"m{i}", clock.advance(minutes=1)) for i in range(3)]
    assert picks == [A, B, B]  # A capped for the day after one
    clock.advance(days=1)
    with store.transaction() as uow:
        explanation = uow.repository(RotationRepository).suggest(r.id, clock.now)
    assert explanation.chosen == A
    assert explanation.skipped == ()
    with store.transaction() as uow:
        uow.repository(RotationRepository).configure_member(r.id, A, clear_cap=True)
        assert uow.repository(RotationRepository).get(r.id).member(A).daily_cap is None


def test_the_daily_cap_counts_the_day_in_the_given_zone(store: Store) -> None:
    r = create(store, A, B)
    monday = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    with store.transaction() as uow:
        repo = uow.repository(RotationRepository)
        repo.configure_member(r.id, A, daily_cap=1)
        paris = "Europe/Paris"
        assert repo.book(r.id, "m1", monday, zone=paris).member == A
        assert repo.book(r.id, "m2", monday + timedelta(minutes=15), zone=paris).member == B
        after_midnight_in_paris = monday + timedelta(hours=1)
        assert repo.suggest(r.id, after_midnight_in_paris, zone=paris).chosen == A
        assert repo.suggest(r.id, after_midnight_in_paris).chosen == B  # still Monday in UTC


def test_a_rotation_name_is_unique_per_org(store: Store) -> None:
    create(store, A)
    with pytest.raises(ConflictError):
        create(store, B)


# --- concurrency --------------------------------------------------------------------------


class CasOnly(RotationRepository):
    """No row lock: only the compare-and-swap stands between racing bookings."""

    lock_rows: ClassVar[bool] = False


def _replay(store: Store, rotation_id: str) -> None:
    """Every booking, in version order, is what the pure rules pick from the one before."""
    with store.transaction() as uow:
        rows = uow.session.scalars(
            sa.select(RotationBookingRow)
            .where(RotationBookingRow.rotation_id == rotation_id)
            .order_by(RotationBookingRow.rotation_version)
        ).all()
        final = uow.repository(RotationRepository).get(rotation_id)
    replayed = Rotation(rotation_id, "Inbound", tuple(Member(m.email) for m in final.members))
    versions = [row.rotation_version for row in rows]
    assert len(set(versions)) == len(versions)
    for row in rows:
        expected = rules.pick(replayed)
        assert row.explanation["chosen"] == expected.chosen == row.member
        counts_seen = {c["email"]: c["count"] for c in row.explanation["candidates"]}
        assert counts_seen == {m.email: m.count for m in replayed.members}
        replayed = rules.book(replayed, row.member, row.booked_at)


@pytest.mark.postgres
@pytest.mark.parametrize("repository", [RotationRepository, CasOnly], ids=["for-update", "cas"])
def test_concurrent_bookings_end_exactly_balanced(
    postgres_url: str, repository: type[RotationRepository]
) -> None:
    upgrade(postgres_url)
    threads, each = 8, 6
    with Store(postgres_url) as store:
        r = create(store, A, B, C, D)
        start = threading.Barrier(threads)
        errors: list[BaseException] = []

        def rep(n: int) -> None:
            try:
                start.wait()
                for i in range(each):
                    with store.transaction() as uow:
                        uow.repository(repository).book(r.id, f"t{n}-{i}", AT)
            except BaseException as error:  # reported below
                errors.append(error)

        workers = [threading.Thread(target=rep, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        total = threads * each
        assert counts(store, r.id) == dict.fromkeys((A, B, C, D), total // 4)
        with store.transaction() as uow:
            members = Counter(b.member for b in uow.repository(RotationRepository).bookings(r.id))
            assert uow.repository(RotationRepository).version(r.id) == total + 1  # +1: create
        assert members == dict.fromkeys((A, B, C, D), total // 4)
        _replay(store, r.id)


@pytest.mark.postgres
def test_a_lost_swap_is_computed_again_from_fresh_counts(postgres_url: str, clock: Any) -> None:
    upgrade(postgres_url)
    with Store(postgres_url, clock=clock) as store, Store(postgres_url, clock=clock) as other:
        r = create(store, A, B)

        class Interrupted(CasOnly):
            raced = False

            def _load(self, row: Any) -> Any:
                loaded = super()._load(row)
                if not Interrupted.raced:  # another rep books between our read and our swap
                    Interrupted.raced = True
                    book(other, r.id, "theirs", clock.now)
                return loaded

        with store.transaction() as uow:
            mine = uow.repository(Interrupted).book(r.id, "mine", clock.advance(minutes=1))
        assert Interrupted.raced
        assert mine.member == B
        assert mine.rotation_version == 2
        assert counts(store, r.id) == {A: 1, B: 1}


# --- the store follows the pure rules, under random histories ----------------------------

_EMAILS = (A, B, C, D)
_ops = st.one_of(
    st.tuples(st.just("book"), st.none()),
    st.tuples(st.just("override"), st.sampled_from(_EMAILS)),
    st.tuples(st.just("end"), st.sampled_from(list(BookingState)[1:])),
    st.tuples(st.just("toggle"), st.sampled_from(_EMAILS)),
    st.tuples(st.just("join"), st.sampled_from(_EMAILS)),
    st.tuples(st.just("team"), st.sets(st.sampled_from(_EMAILS), max_size=3)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_ops, max_size=25), policy=st.sampled_from(list(NewMemberPolicy)))
def test_random_histories_through_the_store_match_the_rules(
    ops: list[tuple[str, Any]], policy: NewMemberPolicy
) -> None:
    with Store("sqlite://") as store:  # a fresh in-memory database per example
        store.upgrade()
        r = create(store, A, teams=["t"], policy=policy)
        model, users, team, epoch = r, [A], set[str](), 0
        live: dict[str, tuple[str, int]] = {}  # meeting → (member, epoch it counted in)
        at = AT
        for i, (op, arg) in enumerate(ops):
            at += timedelta(hours=1)
            before = {m.email for m in model.members}
            with store.transaction() as uow:
                repo = uow.repository(RotationRepository)
                if op in ("book", "override"):
                    chosen = arg or rules.pick(model).chosen
                    if chosen is None or chosen not in before:
                        continue
                    assert repo.book(r.id, f"m{i}", at, member=arg).member == chosen
                    model = rules.book(model, chosen, at)
                    live[f"m{i}"] = (chosen, epoch)
                elif op == "end" and live:
                    meeting, (member, counted_in) = live.popitem()
                    repo.end_booking(meeting, arg)
                    model = rules.unbook(model, member) if counted_in == epoch else model
                elif op == "toggle" and arg in before:
                    flipped = not model.member(arg).available
                    repo.set_available(r.id, arg, flipped)
                    model = rules.set_available(model, arg, flipped)
                elif op in ("join", "team"):
                    if op == "join":
                        users = [*users, arg] if arg not in users else users
                        repo.add_member(r.id, arg)
                    else:
                        team = set(arg)
                        repo.set_team(DEFAULT_ORG_ID, "t", team)
                    model = rules.sync_members(model, users=users, teams={"t": sorted(team)})
                    joined = {m.email for m in model.members} - before
                    epoch += bool(joined) and policy is NewMemberPolicy.RESET
                stored = repo.get(r.id)
                assert {m.email: m for m in stored.members} == {m.email: m for m in model.members}
                assert all(m.count >= 0 for m in stored.members)
                assert repo.suggest(r.id, at).chosen == rules.pick(model).chosen


@pytest.mark.postgres
def test_the_same_meeting_booked_twice_at_once_counts_once(postgres_url: str) -> None:
    upgrade(postgres_url)
    with Store(postgres_url) as store:
        r = create(store, A, B)
        start = threading.Barrier(4)
        outcomes: list[str] = []

        def rep() -> None:
            start.wait()
            try:
                outcomes.append(book(store, r.id, "same", AT))
            except ConflictError:
                outcomes.append("conflict")

        workers = [threading.Thread(target=rep) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes) == [A, "conflict", "conflict", "conflict"]
        assert counts(store, r.id) == {A: 1, B: 0}
