"""Peak RSS of a first history sync at a small and a large N, each in its own process.

The parent serves the sandbox and schedules the meetings; a fresh child interpreter
(``python -m benchmarks.sync_memory --child SPEC``) builds the connector, the provider and
the engine, notes its peak RSS (``VmHWM``), runs the sync and notes it again. Only the
sync's process is measured: the emulators' data lives in the parent.

Reproduce: ``python -m benchmarks sync_memory`` (1,000 vs 100,000, about ten minutes on two
cores, most of it seeding and scheduling; ``BENCH_QUICK=1``: 100 vs 1,000;
``BENCH_MEMORY_LARGE=10000`` sets the large size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from benchmarks._rig import (
    CRMS,
    ORGANIZER,
    REPO,
    Remote,
    make_connector,
    make_provider,
    quick,
    record,
    sizes,
    sync_world,
    table,
)

CRM, PROVIDER = "zoho", "goto"
TARGET_MB = 50.0
ISSUE_SIZES = (1_000, 100_000)


def _peak_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux carries that over
    ``execve`` from the forking parent, which here holds the emulators' data."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one sync against the parent's sandbox; report peak RSS before and after."""
    from crm_meetings.store import Store
    from crm_meetings.sync.engine import HistorySync, SyncOptions

    remote = Remote(**spec["remote"])
    connector = make_connector(spec["crm"], remote)
    provider = make_provider(spec["provider"], remote)
    store = Store(spec["store_url"])
    now = datetime.fromisoformat(spec["now"])
    engine = HistorySync(
        store,
        provider,
        {CRMS[spec["crm"]]: connector},
        clock=lambda: now,
        options=SyncOptions(first_window=timedelta(seconds=spec["window_s"])),
    )
    before = _peak_mb()
    report = engine.sync_organizer(ORGANIZER)
    after = _peak_mb()
    provider.close()
    connector.close()
    store.dispose()
    return {
        "before_mb": before,
        "peak_mb": after,
        "written": report.counters.sessions_written,
        "errors": list(report.counters.errors[:3]),
    }


def measure(n: int) -> dict[str, Any]:
    with sync_world(CRM, PROVIDER, n) as world:
        expected = sum(len(m.sessions) for m in world.data.meetings)
        spec = {
            "crm": CRM,
            "provider": PROVIDER,
            "remote": asdict(Remote.of(world.sandbox)),
            "store_url": world.store_url,
            "now": world.now.isoformat(),
            "window_s": world.engine().options.first_window.total_seconds(),
        }
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "benchmarks.sync_memory", "--child", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the sync child failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"the sync reported errors: {result['errors']}")
    if result["written"] != expected:  # the memory of a partial sync would prove nothing
        raise RuntimeError(f"the sync wrote {result['written']} of {expected} sessions")
    return result


def main() -> str:
    small, large = sizes(ISSUE_SIZES, (100, 1_000))
    large = int(os.environ.get("BENCH_MEMORY_LARGE", large))  # e.g. 10000 for a shorter run
    results = {n: measure(n) for n in (small, large)}
    rows = []
    for n, r in results.items():
        rows.append(
            [
                CRM,
                PROVIDER,
                f"{n:,}",
                f"{r['written']:,}",
                f"{r['before_mb']:.1f}",
                f"{r['peak_mb']:.1f}",
                f"{r['peak_mb'] - r['before_mb']:.1f}",
            ]
        )
        record("sync_memory", crm=CRM, n=n, peak_rss_mb=r["peak_mb"], provider=PROVIDER)
    growth = results[large]["peak_mb"] - results[small]["peak_mb"]
    per_thousand = growth / ((large - small) / 1_000)
    projected = per_thousand * (ISSUE_SIZES[1] - ISSUE_SIZES[0]) / 1_000
    headers = [
        "CRM",
        "provider",
        "N",
        "sessions written",
        "RSS before sync MB",
        "peak RSS MB",
        "sync's own MB",
    ]
    measured = large >= ISSUE_SIZES[1]
    notes = (
        f"\n\nSizes: {small:,} vs {large:,} ({'quick' if quick() else 'full'}); the issue asks "
        f"{ISSUE_SIZES[0]:,} vs {ISSUE_SIZES[1]:,} (the full run's sizes).\n\n"
        f"Peak RSS grows {growth:.1f} MB from {small:,} to {large:,} meetings "
        f"({per_thousand:.2f} MB per 1,000 meetings)"
        + (
            f" (target < {TARGET_MB:.0f} MB)."
            if measured
            else f"; linear projection to {ISSUE_SIZES[0]:,} → {ISSUE_SIZES[1]:,}: "
            f"{projected:.0f} MB (target < {TARGET_MB:.0f} MB)."
        )
    )
    return table(headers, rows) + notes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the child side of the memory benchmark")
    parser.add_argument("--child", required=True, help="JSON spec from the parent")
    print(json.dumps(child(json.loads(parser.parse_args().child))))
