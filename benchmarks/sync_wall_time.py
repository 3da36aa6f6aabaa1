"""Wall time of a first history sync with 50 ms injected per call, against the physical limit.

Every request to the CRM and to the provider waits ``LATENCY`` in the emulator before it is
answered. The physical limit is ``calls × LATENCY / concurrency``: the engine issues its
calls one at a time (concurrency 1), so anything above the limit is local work — the
store, JSON, TLS, and the emulators' own handling, which share this machine's 2 cores.

Reproduce: ``python -m benchmarks sync_wall_time`` (``BENCH_QUICK=1``: N = 100 only).
"""

from __future__ import annotations

import time

from benchmarks._rig import CRMS, ORGANIZER, quick, record, sync_world, table

LATENCY = 0.05
CONCURRENCY = 1  # the engine calls the provider and the CRM sequentially


def cases() -> list[tuple[str, str, int]]:
    small = [(crm, "goto", 100) for crm in CRMS]
    return small if quick() else [*small, ("zoho", "goto", 1_000)]


def measure(crm: str, provider: str, n: int) -> tuple[int, float]:
    """(calls, seconds) of one first sync under the injected latency."""
    with sync_world(crm, provider, n) as world:
        world.latency(LATENCY)
        engine = world.engine()
        before = sum(world.counts().values())
        started = time.perf_counter()
        report = engine.sync_organizer(ORGANIZER)
        elapsed = time.perf_counter() - started
        if report.counters.errors:
            raise RuntimeError(f"{crm}/{provider}: {report.counters.errors[:3]}")
        return sum(world.counts().values()) - before, elapsed


def main() -> str:
    rows = []
    for crm, provider, n in cases():
        calls, wall = measure(crm, provider, n)
        limit = calls * LATENCY / CONCURRENCY
        local_ms = (wall - limit) / calls * 1000
        rows.append(
            [
                crm,
                provider,
                f"{n:,}",
                calls,
                f"{wall:.1f}",
                f"{limit:.1f}",
                f"{wall / limit:.2f}×",
                f"{local_ms:.1f}",
            ]
        )
        record(
            "sync_wall_time",
            crm=crm,
            n=n,
            calls=calls,
            wall_s=wall,
            limit_s=limit,
            provider=provider,
        )
    headers = [
        "CRM",
        "provider",
        "N",
        "calls",
        "wall s",
        "limit s",
        "wall ÷ limit",
        "local ms/call",
    ]
    notes = (
        f"\nSizes: {'quick' if quick() else 'full'}. Latency {LATENCY * 1000:.0f} ms on every "
        f"CRM and provider request; limit = calls × latency / {CONCURRENCY} (the engine's "
        "concurrency). local ms/call = (wall − limit) / calls: our code plus the emulators."
    )
    return table(headers, rows) + "\n" + notes
