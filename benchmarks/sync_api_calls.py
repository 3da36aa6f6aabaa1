"""API calls of a first history sync, against the lower bound and a naive integration.

For each (CRM, provider, N): seed N meetings of one organizer (half started, 1–3
sessions, 2–8 participants), schedule them into the CRM and the store, then run
``HistorySync.sync_organizer`` once and count the calls each vendor's emulator answered
(the vendor's view, ``sandbox.calls``). Then re-sync with nothing changed: once as the
next nightly run (checkpoint kept), and — for N ≤ 1,000 — over the whole window again
(overlap = the first window), which must re-read the provider and write nothing.

Reproduce: ``python -m benchmarks sync_api_calls`` (``BENCH_QUICK=1``: N ≤ 1,000).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks._rig import ORGANIZER, Workload, quick, ratio, record, sizes, sync_world, table

Bound = Callable[[Workload], int]


@dataclass(frozen=True, slots=True)
class Model:
    """What one vendor's data model needs: the lower bound and the naive call count."""

    lower: Bound
    naive: Bound
    formula: str


def _c(count: int, limit: int) -> int:
    return math.ceil(count / limit)


CRM_MODELS: dict[str, Model] = {
    "salesforce": Model(
        lambda w: _c(w.sessions, 200) + _c(w.participants, 200),
        lambda w: w.sessions + w.participants,
        "⌈S/200⌉ session upserts + ⌈P/200⌉ participant upserts (sObject Collections hold "
        "one object type per call)",
    ),
    "hubspot": Model(
        lambda w: (
            1
            + _c(w.emails, 100)
            + _c(w.started, 100)
            + 2 * _c(w.sessions, 100)
            + _c(w.contact_links, 100)
        ),
        lambda w: 1 + w.emails + w.started + 2 * w.sessions + w.contact_links,
        "1 schema read (session object id) + ⌈E/100⌉ contact reads by e-mail + ⌈M/100⌉ "
        "meeting outcome updates + ⌈S/100⌉ session upserts + ⌈S/100⌉ session→meeting "
        "links + ⌈L/100⌉ session→contact links (batch upsert takes no inline associations)",
    ),
    "zoho": Model(
        lambda w: _c(w.sessions, 100),
        lambda w: w.sessions,
        "⌈S/100⌉ session upserts (participants ride in the session record); no read is "
        "needed: upsert on Provider_Session_Id is idempotent",
    ),
}

PROVIDER_MODELS: dict[str, Model] = {
    "goto": Model(
        lambda w: 3 + w.started,
        lambda w: 3 + w.started,
        "1 token + 1 organizer lookup + 1 history listing (not paged) + M attendee reads "
        "(one per started meeting: the emulated API has no per-organizer attendee read); "
        "the sync lists a long window one 30-day part at a time to bound its memory, one "
        "listing more per part",
    ),
    "zoom": Model(
        lambda w: 1 + w.report_pages + w.sessions,
        lambda w: 1 + w.report_pages + w.sessions,
        "1 token + report pages (≤ 300 instances, ≤ 30 days each; they carry uuid, start and "
        "end) + S participant reads (≤ 300 per page)",
    ),
}


def cases() -> list[tuple[str, str, int]]:
    """Every CRM with GoTo at each N; Zoom (more reads per session) with Salesforce."""
    goto = [
        (crm, "goto", n) for n in sizes((100, 1_000, 10_000), (100, 1_000)) for crm in CRM_MODELS
    ]
    zoom = [("salesforce", "zoom", n) for n in sizes((100, 1_000), (100,))]
    return goto + zoom


@dataclass(frozen=True, slots=True)
class Measured:
    crm: int
    provider: int
    resync: tuple[int, int]  # (CRM, provider) calls of the next nightly run
    full_resync: tuple[int, int] | None  # the whole window again
    written: int  # sessions the sync reported written


def measure(crm: str, provider: str, n: int) -> tuple[Workload, Measured]:
    with sync_world(crm, provider, n) as world:
        engine = world.engine()
        workload = Workload.of(world.data, world.now, world.now - engine.options.first_window)

        def run(**options: object) -> tuple[int, int, int]:
            before = world.counts()
            report = world.engine(**options).sync_organizer(ORGANIZER)
            if report.counters.errors:
                raise RuntimeError(f"{crm}/{provider}: {report.counters.errors[:3]}")
            delta = world.counts() - before
            return delta[crm], delta[provider], report.counters.sessions_written

        crm_calls, provider_calls, written = run()
        if written != workload.sessions:  # a count of a partial sync would prove nothing
            raise RuntimeError(f"{crm}/{provider}: wrote {written} of {workload.sessions}")
        again = run()
        full = run(overlap=engine.options.first_window) if n <= 1_000 else None
    return workload, Measured(
        crm_calls,
        provider_calls,
        again[:2],
        None if full is None else full[:2],
        written,
    )


def main() -> str:
    rows = []
    for crm, provider, n in cases():
        w, m = measure(crm, provider, n)
        crm_model, provider_model = CRM_MODELS[crm], PROVIDER_MODELS[provider]
        crm_lb, crm_naive = crm_model.lower(w), crm_model.naive(w)
        prov_lb = provider_model.lower(w)
        total, total_lb, total_naive = m.crm + m.provider, crm_lb + prov_lb, crm_naive + prov_lb
        full = "–" if m.full_resync is None else f"{m.full_resync[0]} + {m.full_resync[1]}"
        rows.append(
            [
                crm,
                provider,
                f"{n:,}",
                f"{w.sessions:,} / {w.participants:,}",
                f"{m.written:,}",
                f"{m.crm:,}",
                f"{crm_lb:,}",
                ratio(m.crm, crm_lb),
                f"{crm_naive:,} ({crm_naive / m.crm:.0f}× ours)",
                f"{m.provider:,} / {prov_lb:,} ({ratio(m.provider, prov_lb)})",
                f"{total:,} / {total_lb:,} ({ratio(total, total_lb)})",
                f"{total_naive / total:.1f}×",
                f"{m.resync[0]} + {m.resync[1]}",
                full,
            ]
        )
        record(
            "sync_api_calls",
            crm=crm,
            n=n,
            calls=total,
            lower_bound_calls=total_lb,
            naive_calls=total_naive,
            provider=provider,
            crm_calls=m.crm,
            crm_lower_bound_calls=crm_lb,
            crm_naive_calls=crm_naive,
            provider_calls=m.provider,
            provider_lower_bound_calls=prov_lb,
            resync_calls=sum(m.resync),
        )
    headers = [
        "CRM",
        "provider",
        "N",
        "sessions / participants",
        "written",
        "CRM calls",
        "CRM lower bound",
        "CRM ×LB",
        "CRM naive",
        "provider calls / LB",
        "total / LB",
        "naive total ÷ ours",
        "re-sync CRM + provider",
        "full-window re-sync",
    ]
    notes = [
        "",
        f"Sizes: {'quick (BENCH_QUICK=1)' if quick() else 'full'}. Counts are what the "
        "emulators answered (the vendor's view), setup (scheduling) excluded. "
        "S sessions, P participants, M started meetings, E distinct participant e-mails, "
        "L (session, participant who is a CRM contact) pairs.",
        "",
        "**Lower bound (LB)** = the CRM's writes for the records its model holds, each kind "
        "in full batches, + the provider's minimum reads:",
        "",
        *(f"- {name}: {model.formula}" for name, model in {**CRM_MODELS}.items()),
        *(f"- {name}: {model.formula}" for name, model in PROVIDER_MODELS.items()),
        "",
        "**Naive** = one CRM call per record written (the same record kinds, no batching), "
        "plus the provider's minimum reads (the provider side offers nothing to batch). "
        "**Re-sync**: the next nightly run with nothing changed (checkpoint kept, 30-minute "
        "overlap); **full-window re-sync**: the same, re-reading the whole first window "
        "(N ≤ 1,000 only, to bound the run time).",
    ]
    return table(headers, rows) + "\n" + "\n".join(notes)
