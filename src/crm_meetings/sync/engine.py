"""The history sync engine: what really happened at the provider, written into the CRM.

For one organizer (nightly, or "sync my meetings") or one meeting ("sync now"):

1. take a lease per (org, provider, organizer), so a manual and the nightly sync never
   work on the same organizer at once;
2. ask the provider which meetings ran since the checkpoint, less an overlap window (a
   long window part by part, ``SyncOptions.chunk`` at a time), and read their sessions
   (handing each listed meeting back, so that the provider reads only what its listing
   lacked);
3. match each to our meeting by provider meeting id (meetings scheduled elsewhere are
   counted as unmatched and reported); tombstoned (deleted) meetings are ignored;
4. keep only sessions that are new or changed compared with the store — a second run
   writes nothing and makes only the provider reads needed to see that;
5. write them to the CRM in batches of ``batch_sessions`` (the connector splits each to its
   CRM's limit; one :class:`HistoryRun` per run tells it the sessions were checked against
   the store and shares its lookups); after each batch, record the accepted sessions in
   the store in one transaction (so a crash between batches resumes where it stopped, and
   upserts keyed by session id never duplicate);
6. after each part, renew the lease and, while every batch so far was accepted, advance
   the checkpoint to the end of the last part whose sessions are all written (batches
   carry over from part to part, so parts cost no partly filled calls); stop cleanly,
   with a resumable checkpoint, when the CRM's API budget runs low.

Every run is a row in ``sync_runs`` with its counters, API calls and errors.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from crm_meetings.conferencing._values import windows
from crm_meetings.conferencing.base import ConferencingProvider, RanMeeting
from crm_meetings.connectors.base import Connector, HistoryItem, HistoryRun
from crm_meetings.errors import ConflictError, CrmMeetingsError, NoSessionExistsError
from crm_meetings.model import CrmKind, Meeting, MeetingStatus, Session
from crm_meetings.store import DEFAULT_ORG_ID, RunCounters, Store, SyncRunStatus, UnitOfWork
from crm_meetings.sync.claims import LeaseRepository

__all__ = [
    "HistorySync",
    "SyncOptions",
    "SyncReport",
]


@dataclass(frozen=True, slots=True)
class SyncOptions:
    org_id: str = DEFAULT_ORG_ID
    overlap: timedelta = timedelta(minutes=30)
    first_window: timedelta = timedelta(days=30)
    lease_ttl: timedelta = timedelta(minutes=30)
    min_budget: int = 25  # stop when fewer API calls than this are left in the CRM's budget
    # sessions handed to a connector at once: a multiple of every CRM's batch limit (100,
    # 200), large enough that the last, partly filled call of each kind (contact reads,
    # meeting updates, links) costs little; one batch is what a sync holds in memory
    batch_sessions: int = 1_000
    dry_run: bool = False
    # a sync lists the provider's meetings this much at a time and writes each part before
    # listing the next: memory stays one part's worth however long the window (30 days:
    # Zoom's report window, so Zoom makes no extra reads), and the checkpoint follows
    chunk: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class SyncReport:
    run_id: int | None
    status: SyncRunStatus
    counters: RunCounters
    unmatched: tuple[str, ...] = ()
    planned: tuple[HistoryItem, ...] = ()  # with dry_run: what would be written


@dataclass
class _Tally:
    meetings_seen: int = 0
    sessions_written: int = 0
    participants_written: int = 0
    unmatched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# (done, total) meetings the provider says ran; a long sync reads its window in parts, so
# the total grows as each part is listed
Progress = Callable[[int, int], None]


@dataclass
class _Counted:
    """Meetings listed and handled so far in a run, reported to its progress callback."""

    progress: Progress | None
    listed: int = 0
    done: int = 0

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.listed)


# listed meetings matched to ours and compared with the store per transaction (two queries
# for the page instead of two transactions per meeting)
_PAGE = 100


def _checkpoint_object(organizer: str) -> str:
    return f"sessions:{organizer}"


class HistorySync:
    """One engine per (store, provider); connectors by CRM."""

    def __init__(
        self,
        store: Store,
        provider: ConferencingProvider,
        connectors: Mapping[CrmKind, Connector],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        options: SyncOptions = SyncOptions(),
    ) -> None:
        self.store = store
        self.provider = provider
        self.connectors = dict(connectors)
        self.clock = clock
        self.options = options

    # --- entry points -------------------------------------------------------------

    def sync_organizer(
        self,
        organizer: str,
        *,
        kind: str = "nightly",
        progress: Progress | None = None,
        since: datetime | None = None,
    ) -> SyncReport:
        """Every meeting of ``organizer`` that ran since the last checkpoint.

        An explicit ``since`` (a backfill) reads from there and leaves the checkpoint as it is.
        """
        now = self.clock()
        backfill = since is not None
        if since is None:
            with self.store.transaction() as uow:
                cursor = uow.checkpoints.get(
                    self.options.org_id, self.provider.name, _checkpoint_object(organizer)
                )
            since = (
                datetime.fromisoformat(cursor) - self.options.overlap
                if cursor
                else now - self.options.first_window
            )
        with self._run(kind, organizer=organizer) as run:
            once: set[str] = set()  # meetings listed without instances: read once per run
            counted = _Counted(progress)
            writer = _Writer(self, run)
            parts = windows(since, now, self.options.chunk)
            for index, (start, end) in enumerate(parts):
                ran = self._listed(organizer, start, end, once)
                counted.listed += len(ran)
                writer.add(self._collect(ran, run.tally, counted), part=index)
                if index == len(parts) - 1:
                    writer.flush()
                if run.stopped:
                    break
                # a crash or a budget stop after this resumes from the last written part
                written = writer.written_through(index)
                self._advance(
                    run,
                    organizer,
                    None if written is None else parts[written][1],
                    checkpoint=writer.complete and not backfill,
                )
        return run.report

    def _listed(
        self, organizer: str, start: datetime, end: datetime, once: set[str]
    ) -> list[RanMeeting]:
        """The meetings that ran in ``[start, end)``, each once, as first listed. One listed
        without its instances (GoTo: its sessions are read whole) and already read in an
        earlier window of this run is left out; one listed with instances (Zoom) comes
        again with the window's own."""
        ran: dict[str, RanMeeting] = {}
        for listed in self.provider.meetings_ran(organizer, start, end):
            if listed.id not in once:
                ran.setdefault(listed.id, listed)
        once.update(listed.id for listed in ran.values() if not listed.instances)
        return list(ran.values())

    def _advance(
        self, run: _Run, organizer: str, end: datetime | None, *, checkpoint: bool
    ) -> None:
        """After a part: renew the run's lease (a first sync may outlast its TTL) and, when
        every session so far was accepted, move the checkpoint to the end of the last part
        whose sessions are all written (``end``; a part's last batch may wait for the next
        part's sessions to fill it)."""
        with self.store.transaction() as uow:
            run.renew(uow)
            if checkpoint and end is not None and not self.options.dry_run:
                uow.checkpoints.set(
                    self.options.org_id,
                    self.provider.name,
                    _checkpoint_object(organizer),
                    end.isoformat(),
                )

    def sync_meeting(self, meeting_id: str, *, progress: Progress | None = None) -> SyncReport:
        """ "Sync now" for one meeting; a meeting never started answers "No session exists"."""
        with self.store.transaction() as uow:
            meeting = uow.meetings.get(meeting_id)
        if meeting.status is MeetingStatus.DELETED:
            raise ConflictError(
                f"Meeting {meeting_id} was deleted; its history is no longer synced.",
                hint="Nothing to do: deleted meetings keep no history in the CRM.",
            )
        if not meeting.provider_meeting_id or meeting.provider != self.provider.name:
            raise NoSessionExistsError(meeting_id)
        with self._run("manual", organizer=meeting.organizer.email, meeting_id=meeting_id) as run:
            try:
                sessions = self.provider.sessions(meeting.provider_meeting_id)
            except NoSessionExistsError:  # the provider's error names its own meeting id
                sessions = []
            if not sessions:
                raise NoSessionExistsError(meeting_id)
            run.tally.meetings_seen += 1
            with self.store.transaction() as uow:
                stored = uow.sessions.list_for_meeting(meeting.id)
            writer = _Writer(self, run)
            writer.add(_changed(meeting, sessions, stored), part=0)
            writer.flush()
            if progress is not None:
                progress(1, 1)
        return run.report

    # --- steps ----------------------------------------------------------------------

    def _collect(
        self, ran: Sequence[RanMeeting], tally: _Tally, counted: _Counted
    ) -> Iterator[HistoryItem]:
        """What to write, meeting by meeting, produced lazily: a sync holds one window's
        listing, one batch and one page of lookups in memory, however many meetings ran."""
        for start in range(0, len(ran), _PAGE):
            page = ran[start : start + _PAGE]
            matches, stored = self._lookup(page)
            for listed in page:
                yield from self._collect_one(listed, matches.get(listed.id, []), stored, tally)
                counted.step()

    def _lookup(
        self, page: Sequence[RanMeeting]
    ) -> tuple[dict[str, list[Meeting]], dict[str, list[Session]]]:
        """Our meetings for a page of listed ones (by provider meeting id, only those in one of
        our CRMs with their record created) and their stored sessions: one transaction."""
        with self.store.transaction() as uow:
            found = uow.meetings.find_by_provider_meetings(
                self.provider.name, [listed.id for listed in page], org_id=self.options.org_id
            )
            matches = {
                provider_id: [m for m in meetings if m.crm in self.connectors and m.crm_record_id]
                for provider_id, meetings in found.items()
            }
            stored = uow.sessions.list_for_meetings(
                m.id for meetings in matches.values() for m in meetings
            )
        return matches, stored

    def _collect_one(
        self,
        listed: RanMeeting,
        matches: Sequence[Meeting],
        stored: Mapping[str, Sequence[Session]],
        tally: _Tally,
    ) -> Iterator[HistoryItem]:
        if not matches:
            tally.unmatched.append(listed.id)
            return
        live = [m for m in matches if m.status is not MeetingStatus.DELETED]
        if not live:
            return  # a tombstone: late data for a deleted meeting is ignored
        try:
            sessions = self.provider.sessions(listed.id, listed=listed)
        except NoSessionExistsError:
            return
        for meeting in live:
            tally.meetings_seen += 1
            yield from _changed(meeting, sessions, stored.get(meeting.id, ()))

    def _write_batch(self, crm: CrmKind, batch: Sequence[HistoryItem], run: _Run) -> bool:
        """Write one batch, then record what the CRM accepted in the store (one transaction);
        True when every session was accepted. A low API budget stops the run instead."""
        connector = self.connectors[crm]
        budget = connector.budget().remaining
        if budget is not None and budget < self.options.min_budget:
            run.tally.errors.append(
                f"{crm.value}: API budget nearly spent ({budget} calls left); "
                "stopped — the next run resumes from the checkpoint."
            )
            run.stopped = True
            return False
        complete = True
        written = connector.write_history_many(batch, run=run.history)
        results = {r.key: r for r in written}
        accepted: list[tuple[Meeting, list[Session]]] = []
        for item in batch:
            ok = [s for s in item.sessions if _ok(results.get(s.provider_session_id))]
            for session in item.sessions:
                result = results.get(session.provider_session_id)
                if not _ok(result):
                    complete = False
                    error = result.error if result is not None else None
                    run.tally.errors.append(
                        f"session {session.provider_session_id}: "
                        + (str(error) if error else "no result from the CRM")
                    )
            if ok:
                accepted.append((item.meeting, ok))
        with self.store.transaction() as uow:
            uow.sessions.upsert_attached((m.id, sessions) for m, sessions in accepted)
            for _, sessions in accepted:
                run.tally.sessions_written += len(sessions)
                run.tally.participants_written += sum(len(s.participants) for s in sessions)
            if run.run_id is not None:
                uow.runs.progress(run.run_id, run.counters())
        return complete

    # --- run bookkeeping ------------------------------------------------------------

    def _run(self, kind: str, *, organizer: str, meeting_id: str | None = None) -> _Run:
        return _Run(self, kind, organizer, meeting_id)


def _changed(
    meeting: Meeting, sessions: Sequence[Session], stored: Sequence[Session]
) -> Iterator[HistoryItem]:
    """The sessions the store does not hold (``stored``: the meeting's sessions there),
    identical and attached to ``meeting``."""
    by_id = {s.provider_session_id: s for s in stored}
    fresh = tuple(s for s in sessions if by_id.get(s.provider_session_id) != s)
    if fresh:
        yield HistoryItem(meeting, fresh, earlier=tuple(by_id.values()))


def _ok(result: object) -> bool:
    return result is not None and bool(getattr(result, "ok", False))


class _Batcher:
    """Per CRM, batches of at most ``limit`` sessions (a meeting's sessions stay together;
    one with more goes alone), each handed on as soon as it is full. Batches carry over
    from one part of a run to the next, so a part does not end in a partly filled call;
    a meeting listed again (Zoom lists each part's own instances) while its earlier item
    still waits joins that item, so a CRM sees each meeting once per batch (each CRM's own
    limit is honoured again inside its connector)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[CrmKind, dict[str, HistoryItem]] = {}  # by meeting id, in order
        self._sizes: dict[CrmKind, int] = {}
        self._parts: dict[CrmKind, int] = {}  # the oldest part with an item waiting

    def add(self, item: HistoryItem, part: int) -> Iterator[tuple[CrmKind, list[HistoryItem]]]:
        crm = item.meeting.crm
        waiting = self._items.setdefault(crm, {})
        joined = waiting.get(item.meeting.id)
        if joined is not None:
            sessions = (*joined.sessions, *item.sessions)
            waiting[item.meeting.id] = HistoryItem(item.meeting, sessions, joined.earlier)
            self._sizes[crm] += len(item.sessions)
            return
        if waiting and self._sizes[crm] + len(item.sessions) > self.limit:
            yield self._take(crm)
            waiting = self._items[crm]
        waiting[item.meeting.id] = item
        self._sizes[crm] = self._sizes.get(crm, 0) + len(item.sessions)
        self._parts.setdefault(crm, part)

    def drain(self) -> Iterator[tuple[CrmKind, list[HistoryItem]]]:
        for crm in [crm for crm, waiting in self._items.items() if waiting]:
            yield self._take(crm)

    def oldest_part(self) -> int | None:
        """The oldest part with sessions not yet handed on (``None``: nothing waits)."""
        return min(self._parts.values(), default=None)

    def _take(self, crm: CrmKind) -> tuple[CrmKind, list[HistoryItem]]:
        batch = list(self._items[crm].values())
        self._items[crm] = {}
        self._sizes[crm] = 0
        self._parts.pop(crm, None)
        return crm, batch


class _Writer:
    """A run's writes: items batched (:class:`_Batcher`) and written as batches fill."""

    def __init__(self, engine: HistorySync, run: _Run) -> None:
        self.engine = engine
        self.run = run
        self.batcher = _Batcher(engine.options.batch_sessions)
        self.complete = True  # every session handed to a CRM so far was accepted

    def add(self, pending: Iterable[HistoryItem], *, part: int) -> None:
        """Batch ``pending`` (items of one part), writing each batch that fills."""
        if self.engine.options.dry_run:
            self.run.planned += tuple(pending)
            return
        for item in pending:
            for crm, batch in self.batcher.add(item, part):
                self._write(crm, batch)
                if self.run.stopped:
                    return

    def flush(self) -> None:
        """Write what waits in partly filled batches (the end of the run)."""
        for crm, batch in self.batcher.drain():
            if self.run.stopped:
                return
            self._write(crm, batch)

    def written_through(self, part: int) -> int | None:
        """The last part, up to ``part``, whose sessions are all written (``None``: none)."""
        oldest = self.batcher.oldest_part()
        if oldest is None:
            return part
        return oldest - 1 if oldest > 0 else None

    def _write(self, crm: CrmKind, batch: list[HistoryItem]) -> None:
        self.complete &= self.engine._write_batch(crm, batch, self.run)


class _Run:
    """A sync run row: started on enter, finished on exit with its counters and status."""

    def __init__(
        self, engine: HistorySync, kind: str, organizer: str, meeting_id: str | None
    ) -> None:
        self.engine = engine
        self.kind = kind
        self.organizer = organizer
        self.meeting_id = meeting_id
        self.tally = _Tally()
        self.history = HistoryRun(checked=True)  # _changed compared every session with the store
        self.planned: tuple[HistoryItem, ...] = ()
        self.stopped = False  # the CRM's API budget ran low: no further window is read
        self.run_id: int | None = None
        self.holder = uuid.uuid4().hex
        self.lease = f"sync:{engine.options.org_id}:{engine.provider.name}:{organizer}"
        self._calls_before: Counter[tuple[str, str]] = Counter()
        self.report = SyncReport(None, SyncRunStatus.RUNNING, RunCounters())

    def __enter__(self) -> _Run:
        engine = self.engine
        self._calls_before = self._calls()
        with engine.store.transaction() as uow:
            if not uow.repository(LeaseRepository).acquire(
                self.lease, self.holder, engine.options.lease_ttl
            ):
                raise ConflictError(
                    f"A history sync for {self.organizer} is already running.",
                    hint="Wait for it to finish; its result appears in `crm-meetings sync runs`.",
                )
            if not engine.options.dry_run:
                self.run_id = uow.runs.start(
                    self.kind,
                    org_id=engine.options.org_id,
                    organizer=self.organizer,
                    meeting_id=self.meeting_id,
                )
        return self

    def renew(self, uow: UnitOfWork) -> None:
        """Keep the lease while the run lasts; another holder took it only if it expired."""
        if not uow.repository(LeaseRepository).acquire(
            self.lease, self.holder, self.engine.options.lease_ttl
        ):
            raise ConflictError(
                f"The history sync for {self.organizer} lost its lease to another run "
                f"(one part took longer than {self.engine.options.lease_ttl}).",
                hint="Nothing is lost: the other run carries on from this one's checkpoint.",
            )

    def _calls(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        counters = [self.engine.provider.calls, *(c.calls for c in self.engine.connectors.values())]
        for counter in counters:
            for call, n in counter:
                counts[(call.vendor, f"{call.method} {call.endpoint}")] += n
        return counts

    def counters(self) -> RunCounters:
        calls = self._calls() - self._calls_before
        api_calls: dict[str, dict[str, int]] = {}
        for (vendor, endpoint), n in sorted(calls.items()):
            api_calls.setdefault(vendor, {})[endpoint] = n
        tally = self.tally
        return RunCounters(
            meetings_seen=tally.meetings_seen,
            sessions_written=tally.sessions_written,
            participants_written=tally.participants_written,
            unmatched=len(tally.unmatched),
            api_calls=api_calls,
            errors=tuple(tally.errors),
        )

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        engine = self.engine
        if isinstance(exc, CrmMeetingsError) and not isinstance(exc, NoSessionExistsError):
            self.tally.errors.append(str(exc))
        status = (
            SyncRunStatus.FAILED
            if exc is not None and not isinstance(exc, NoSessionExistsError)
            else SyncRunStatus.PARTIAL
            if self.tally.errors
            else SyncRunStatus.SUCCEEDED
        )
        counters = self.counters()
        with engine.store.transaction() as uow:
            if self.run_id is not None:
                uow.runs.finish(self.run_id, status, counters)
            uow.repository(LeaseRepository).release(self.lease, self.holder)
        self.report = SyncReport(
            self.run_id, status, counters, tuple(self.tally.unmatched), self.planned
        )
