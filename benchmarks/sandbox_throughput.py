"""Sandbox throughput: HTTPS requests per second each emulator answers on loopback.

The sandbox runs in its own process (``python -m crm_meetings.commands.sandbox serve
--json``, seeded with 1,000 meetings) so that the load generator does not share its GIL;
both share this machine's cores. For each vendor, ``CONCURRENCY`` asyncio workers on one
keep-alive ``httpx.AsyncClient`` repeat the vendor's example GET (``registry.EXAMPLES``)
for ``SECONDS`` seconds; the table gives requests/s, latency percentiles and the statuses
seen (the target is 1,000 requests/s per vendor). On a busy machine requests/s says more
about the neighbours than about the sandbox, so the table also gives the server process's
CPU time per request (from ``/proc``) and the requests/s one core would allow at that cost.
A second table times the emulator apps alone, in-process (no TLS, no HTTP parsing, no
client): the CPU one example request costs inside the vendor's app, with the sandbox seeded
with 1,000 and with 10,000 meetings — a handler whose work follows the page, not the data
set, costs the same in both columns. Startup is timed in-process: ``Sandbox(...).start()``
of every emulator, with and without the seed.

Reproduce: ``python -m benchmarks sandbox_throughput`` (5 s per vendor; ``BENCH_QUICK=1``:
2 s), or ``python benchmarks/sandbox_throughput.py`` for the table alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from crm_meetings.sandbox import registry
from crm_meetings.sandbox.admin import Controls, admin_app
from crm_meetings.sandbox.base import SandboxEnv
from crm_meetings.sandbox.middleware import SandboxMiddleware
from crm_meetings.sandbox.seed import SeedSpec, generate
from crm_meetings.sandbox.server import Sandbox

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SECONDS = 2.0 if QUICK else 5.0
CONCURRENCY = 8
MEETINGS = 1000
TARGET_RPS = 1000
LARGE = 10 * MEETINGS  # the data set of the second in-process column
APP_REQUESTS = 300 if QUICK else 1000  # per vendor and size, in-process


@dataclass
class Result:
    vendor: str
    path: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    server_cpu: float = 0.0  # seconds the server process spent on the measured requests

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / len(self.latencies) * 1000 if self.latencies else 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: int) -> float:
        if len(self.latencies) < 2:
            return 0.0
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The sandbox CLI in a child process, and what it printed (URLs, tokens, CA)."""
    command = [sys.executable, "-m", "crm_meetings.commands.sandbox", "serve", "--json"]
    process = subprocess.Popen(  # noqa: S603 — our own interpreter and module
        [*command, "--meetings", str(MEETINGS)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise SystemExit(f"the sandbox did not start (exit status {process.returncode})")
    return process, json.loads(line)


async def load(
    vendor: str, url: str, token: str, context: ssl.SSLContext, server_pid: int
) -> Result:
    """``CONCURRENCY`` workers repeating one GET for ``SECONDS``."""
    example = registry.example(vendor)
    result = Result(vendor, example.path)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": example.authorization(token)}
    async with httpx.AsyncClient(
        base_url=url, verify=context, headers=headers, limits=limits, timeout=10
    ) as client:
        await client.get(result.path)  # warm up: TLS handshakes, first-request imports
        deadline = time.perf_counter() + SECONDS

        async def worker() -> None:
            while (started := time.perf_counter()) < deadline:
                response = await client.get(result.path)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[response.status_code] += 1

        began, cpu = time.perf_counter(), cpu_seconds(server_pid)
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        result.seconds = time.perf_counter() - began
        result.server_cpu = cpu_seconds(server_pid) - cpu
    return result


async def app_ms(app: SandboxMiddleware, path: str, authorization: str, n: int) -> float:
    """Milliseconds of CPU per request of ``GET path`` through the wrapped app, in-process."""
    route, _, query = path.partition("?")
    headers = [(b"host", b"sandbox"), (b"authorization", authorization.encode())]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": route,
            "raw_path": route.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "server": ("127.0.0.1", 443),
            "client": ("127.0.0.1", 50000),
        }
        statuses: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise SystemExit(f"GET {path}: {statuses}")

    await one()
    began = time.process_time()
    for _ in range(n):
        await one()
    return (time.process_time() - began) / n * 1000


def app_costs(meetings: int) -> dict[str, float]:
    """Per vendor: ms of CPU per example request inside its app, seeded with ``meetings``."""
    data = generate(SeedSpec(seed=42, meetings=meetings))
    costs: dict[str, float] = {}
    for emulator in registry.create_all():
        env = SandboxEnv()
        admin = admin_app(Controls(env, {emulator.name: emulator}), emulator.name)
        app = SandboxMiddleware(emulator, emulator.build_app(env), env, admin=admin)
        emulator.load(data)
        example = registry.example(emulator.name)
        authorization = example.authorization(env.tokens.issue(emulator.name))
        costs[emulator.name] = asyncio.run(app_ms(app, example.path, authorization, APP_REQUESTS))
    return costs


def startup_seconds(seed: SeedSpec | None) -> float:
    began = time.perf_counter()
    box = Sandbox(seed=seed).start()
    elapsed = time.perf_counter() - began
    box.stop()
    return elapsed


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> str:
    process, described = serve()
    try:
        context = ssl.create_default_context(cafile=described["ca_path"])
        results = [
            asyncio.run(load(vendor, info["url"], info["access_token"], context, process.pid))
            for vendor, info in described["vendors"].items()
        ]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    rows: list[list[object]] = [
        [
            r.vendor,
            f"`GET {r.path}`",
            len(r.latencies),
            f"{r.rps:,.0f}",
            f"{r.percentile(50):.1f}",
            f"{r.percentile(99):.1f}",
            f"{r.cpu_ms:.2f}",
            f"{1000 / r.cpu_ms:,.0f}" if r.cpu_ms else "–",
            ", ".join(f"{code}×{n}" for code, n in sorted(r.statuses.items())),
            "met" if r.rps >= TARGET_RPS else "missed",
        ]
        for r in results
    ]
    throughput = table(
        [
            "vendor",
            "request",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "req/s per core",
            "statuses",
            "≥ 1,000/s",
        ],
        rows,
    )
    started = [
        [label, f"{startup_seconds(seed) * 1000:.0f}"]
        for label, seed in (
            ("every emulator, no seed, first in the process (imports)", None),
            ("every emulator, no seed", None),
            (f"every emulator, {MEETINGS} meetings", SeedSpec(seed=42, meetings=MEETINGS)),
        )
    ]
    startup = table(["Sandbox(...).start()", "ms"], started)
    small, large = app_costs(MEETINGS), app_costs(LARGE)
    in_app = table(
        [
            "vendor",
            "request",
            f"app CPU ms/req, {MEETINGS:,} meetings",
            f"app CPU ms/req, {LARGE:,} meetings",
        ],
        [
            [vendor, f"`GET {registry.example(vendor).path}`", f"{ms:.3f}", f"{large[vendor]:.3f}"]
            for vendor, ms in small.items()
        ],
    )
    setup = (
        f"{CONCURRENCY} concurrent keep-alive HTTPS clients, {SECONDS:g} s per vendor, "
        f"sandbox seeded with {MEETINGS} meetings, server and client processes on "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end)."
    )
    return f"{setup}\n\n{throughput}\n\n{in_app}\n\n{startup}\n"


if __name__ == "__main__":
    print(main())
