"""Shared setup of the sync and action benchmarks (not a benchmark itself: ``_`` prefix).

A :class:`SyncWorld` is a started sandbox with one CRM and one conferencing provider,
seeded with ``n`` meetings of one organizer (half started, 1–3 sessions, 2–8
participants), every meeting already scheduled into the CRM (``create_many``) and the
store, so that a history sync has exactly the seeded sessions to write.

Connectors and providers are built by the test harnesses (``tests/contract/harness_*.py``,
``tests/conferencing/conftest.py``), loaded by path, so benchmarks and tests talk to the
sandbox the same way. ``BENCH_QUICK=1`` selects the quick sizes.
"""

from __future__ import annotations

import math
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.connectors.base import Connector
from crm_meetings.demo.seeded import schedule_seeded
from crm_meetings.model import CrmKind, Meeting, Person
from crm_meetings.sandbox.base import FaultPlan, Faults, SandboxEnv
from crm_meetings.sandbox.seed import SeedData, SeedSpec, generate
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store, upgrade
from crm_meetings.sync.engine import HistorySync, SyncOptions

REPO = Path(__file__).resolve().parent.parent
CRMS: dict[str, CrmKind] = {
    "salesforce": CrmKind.SALESFORCE,
    "hubspot": CrmKind.HUBSPOT,
    "zoho": CrmKind.ZOHO,
}
ORGANIZER = "rep0@sales.example.com"  # seed user-0; GoTo serves its token's organizer
SEED = 12


def quick() -> bool:
    """True under ``BENCH_QUICK=1`` (``make bench-quick``): smaller sizes, same tables."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sizes(full: Sequence[int], small: Sequence[int]) -> tuple[int, ...]:
    return tuple(small if quick() else full)


def harness_module(relative: str) -> ModuleType:
    """A test helper file (``relative`` to ``tests/``), loaded once."""
    return load_module(REPO / "tests" / relative)


def make_connector(crm: str, sandbox: Any) -> Connector:
    """The CRM's connector pointed at ``sandbox`` (a :class:`Sandbox` or :class:`Remote`)."""
    connector: Connector = harness_module(f"contract/harness_{crm}.py").make_connector(sandbox)
    return connector


def make_provider(provider: str, sandbox: Any) -> ConferencingProvider:
    """Zoom or GoTo pointed at ``sandbox``; retry waits are recorded, not slept."""
    builders = harness_module("conferencing/conftest.py")
    build = builders.build_zoom if provider == "zoom" else builders.build_goto
    built: ConferencingProvider = build(sandbox, [])
    return built


def seed_spec(n: int, provider: str) -> SeedSpec:
    """``n`` meetings of one organizer, one company per ten meetings."""
    return SeedSpec(
        seed=SEED, meetings=n, organizers=1, records=max(10, n // 10), provider=provider
    )


def clock_for(data: SeedData) -> datetime:
    """A "now" just after the last seeded session: the first sync sees every session."""
    last = max((s.end for m in data.meetings for s in m.sessions), default=data.spec.start)
    return last + timedelta(hours=1)


def options_for(data: SeedData, **extra: Any) -> SyncOptions:
    """A first window reaching back before the first seeded meeting."""
    window = clock_for(data) - data.spec.start + timedelta(days=1)
    return SyncOptions(first_window=window, **extra)


@dataclass
class Remote:
    """What the harness builders read from a :class:`Sandbox`, for a child process that
    talks to a sandbox served by its parent (URLs, tokens issued there, the CA file)."""

    urls: dict[str, str]
    tokens: dict[str, str]
    refresh_tokens: dict[str, str]
    ca_file: str

    @classmethod
    def of(cls, sandbox: Sandbox) -> Remote:
        vendors = list(sandbox.vendors)
        return cls(
            urls={v: sandbox.url(v) for v in vendors},
            tokens={v: sandbox.token(v) for v in vendors},
            refresh_tokens={
                v: sandbox.refresh_token(v, subject=ORGANIZER if v == "goto" else "")
                for v in vendors
            },
            ca_file=str(sandbox.ca_path),
        )

    @property
    def ca_path(self) -> Path:
        return Path(self.ca_file)

    def url(self, vendor: str) -> str:
        return self.urls[vendor]

    def token(self, vendor: str) -> str:
        return self.tokens[vendor]

    def refresh_token(self, vendor: str, *, subject: str = "") -> str:
        return self.refresh_tokens[vendor]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def stop(self) -> None:
        """The harnesses wrap ``stop`` to close their clients first; nothing else to do."""


@dataclass
class SyncWorld:
    crm: str
    provider_name: str
    sandbox: Sandbox
    data: SeedData
    store_url: str
    store: Store
    connector: Connector
    provider: ConferencingProvider

    @property
    def now(self) -> datetime:
        return clock_for(self.data)

    def engine(self, **options: Any) -> HistorySync:
        return HistorySync(
            self.store,
            self.provider,
            {CRMS[self.crm]: self.connector},
            clock=lambda: self.now,
            options=options_for(self.data, **options),
        )

    def counts(self) -> Counter[str]:
        """Calls the sandbox answered so far, by vendor."""
        return Counter(call.vendor for call in self.sandbox.calls.calls())

    def endpoints(self) -> Counter[tuple[str, str, str]]:
        return self.sandbox.calls.table()

    def latency(self, seconds: float) -> None:
        """Inject ``seconds`` before every answer of both vendors."""
        for vendor in (self.crm, self.provider_name):
            self.sandbox.faults.set(vendor, FaultPlan(latency=seconds))


@contextmanager
def sync_world(crm: str, provider: str, n: int) -> Iterator[SyncWorld]:
    """A seeded, scheduled world; torn down (sandbox, clients, temp store) on exit."""
    spec = seed_spec(n, provider)
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        store_url = f"sqlite+pysqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(store_url)
        store = Store(store_url)
        # The emulators' clock is the sync's "now" (GoTo lists only sessions that have
        # ended by its clock): set once the seed, and so that "now", is known.
        at: list[datetime] = []
        env = SandboxEnv(faults=Faults(spec.seed), clock=lambda: at[0] if at else datetime.now(UTC))
        sandbox = Sandbox([crm, provider], seed=spec, env=env).start()
        assert sandbox.data is not None
        at.append(clock_for(sandbox.data))
        connector = make_connector(crm, sandbox)
        built = make_provider(provider, sandbox)
        try:
            assert sandbox.data is not None
            schedule(sandbox.data, crm, connector, store)
            yield SyncWorld(
                crm, provider, sandbox, sandbox.data, store_url, store, connector, built
            )
        finally:
            built.close()
            connector.close()
            store.dispose()
            sandbox.stop()


def schedule(data: SeedData, crm: str, connector: Connector, store: Store) -> list[Meeting]:
    """Our copy of every seeded meeting, created in the CRM: what ``schedule`` leaves."""
    return schedule_seeded(
        data.meetings,
        crm=CRMS[crm],
        connector=connector,
        store=store,
        organizer=Person(ORGANIZER, "Rep Zero"),
        id_prefix=crm,
    )


# --- what a sync has to write, from the seed --------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """The history a first sync must write, counted from the seed data."""

    meetings: int  # seeded meetings
    started: int  # meetings with at least one session
    sessions: int
    participants: int
    emails: int  # distinct participant e-mail addresses
    contact_links: int  # (session, participant who is a CRM contact) pairs
    report_pages: int  # Zoom report listing pages (≤ 300 rows, per ≤ 30-day window)

    @classmethod
    def of(cls, data: SeedData, now: datetime, since: datetime) -> Workload:
        started = [m for m in data.meetings if m.sessions]
        sessions = [s for m in started for s in m.sessions]
        contacts = {r.contact_email for r in data.records}
        return cls(
            meetings=len(data.meetings),
            started=len(started),
            sessions=len(sessions),
            participants=sum(len(s.participants) for s in sessions),
            emails=len({p.email for s in sessions for p in s.participants if p.email}),
            contact_links=sum(
                len({p.email for p in s.participants if p.email in contacts}) for s in sessions
            ),
            report_pages=_report_pages(sessions, now, since),
        )


def _report_pages(sessions: Sequence[Any], now: datetime, since: datetime) -> int:
    """Zoom answers at most one month per report query and 300 rows per page."""
    pages = 0
    start = since
    while start < now:
        end = min(start + timedelta(days=30), now)
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        rows = sum(1 for s in sessions if first <= s.start.astimezone(UTC).date() <= last)
        pages += max(1, math.ceil(rows / 300))
        start = end
    return pages


def workload(n: int, provider: str) -> Workload:
    """The workload of ``n`` meetings without starting a sandbox."""
    data = generate(seed_spec(n, provider))
    now = clock_for(data)
    return Workload.of(data, now, now - options_for(data).first_window)


# --- output -------------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = []  # the run's machine-readable rows (benchmarks/__main__.py)


def record(
    benchmark: str,
    *,
    crm: str | None = None,
    n: int | None = None,
    calls: int | None = None,
    lower_bound_calls: int | None = None,
    naive_calls: int | None = None,
    wall_s: float | None = None,
    limit_s: float | None = None,
    peak_rss_mb: float | None = None,
    **extra: Any,
) -> None:
    """One row of ``latest.json`` / ``quick.json`` (null where a field does not apply)."""
    ROWS.append(
        {
            "benchmark": benchmark,
            "crm": crm,
            "n": n,
            "calls": calls,
            "lower_bound_calls": lower_bound_calls,
            "naive_calls": naive_calls,
            "wall_s": wall_s,
            "limit_s": limit_s,
            "peak_rss_mb": peak_rss_mb,
            **extra,
        }
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(value: float, bound: float) -> str:
    return f"{value / bound:.2f}×" if bound else "–"
