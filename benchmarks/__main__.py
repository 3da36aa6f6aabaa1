"""Run every benchmark module (``benchmarks/*.py`` with a ``main() -> str``) and keep the tables.

Each module's ``main`` returns a Markdown table; the tables are printed and appended to
``benchmarks/results/<date>-<host>.md`` (one file a day and host, each run under its own
heading) so anyone can re-run and compare.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent


def discover() -> list[str]:
    return sorted(
        p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "common"
    )


def machine() -> str:
    cpus = os.cpu_count() or 0
    return (
        f"{platform.node()} ({platform.machine()}, {cpus} CPUs, Python {platform.python_version()})"
    )


def run(names: list[str]) -> str:
    sections = [f"# Benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on {machine()}", ""]
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", file=sys.stderr)
        sections += [f"## {name}", "", module.main().rstrip(), ""]
    return "\n".join(sections)


def merged(path: Path, fresh: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows kept in ``path`` with every benchmark that ran now replaced by its fresh rows.

    Running a subset (``python -m benchmarks sync_api_calls``) keeps the other benchmarks'
    last results instead of wiping them.
    """
    ran = {row["benchmark"] for row in fresh}
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = []
    return [row for row in kept if row.get("benchmark") not in ran] + fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    args = parser.parse_args()
    report = run(args.names or discover())
    print(report)
    out = HERE / "results" / f"{datetime.now(UTC):%Y-%m-%d}-{platform.node() or 'host'}.md"
    with out.open("a", encoding="utf-8") as day:  # a day's runs of several subsets add up
        day.write(("\n" if day.tell() else "") + report + "\n")
    from benchmarks._rig import ROWS, quick

    rows = HERE / "results" / ("quick.json" if quick() else "latest.json")
    rows.write_text(json.dumps(merged(rows, ROWS), indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {out} and {rows}", file=sys.stderr)


if __name__ == "__main__":
    main()
