"""Sandbox throughput: HTTPS requests per second each emulator answers on loopback.

The sandbox runs in its own process (``python -m crm_meetings.commands.sandbox serve
--json``, seeded with 1,000 meetings), pinned to CPU 0 when there are two CPUs. For each
vendor, its representative reads — the registry's example (a short list) and the read our
connector or provider makes most (the same query the product sends, at the list's page
size) — are driven for ``SECONDS`` seconds by ``CONNECTIONS`` keep-alive HTTPS connections
of Debian's ``wrk`` pinned to CPU 1 (``benchmarks/_load.py``; without ``wrk``, an httpx
load generator, and the table says so). The table gives requests/s, latency p50/p99, the
statuses (every non-2xx is an error) and the server process's CPU per request, the number
that does not depend on the neighbours of a shared machine; the target is 1,000 requests/s
per read.

A second table times the same reads inside the emulator apps alone, in-process (no TLS,
no HTTP parsing, no client), with the sandbox seeded with 1,000 and with 10,000 meetings: a
handler whose work follows the page, not the data set, costs the same in both columns.
Startup is timed in-process: ``Sandbox(...).start()`` of every emulator, with and without
the seed.

Reproduce: ``python -m benchmarks sandbox_throughput`` (5 s per read; ``BENCH_QUICK=1``:
2 s), or ``python benchmarks/sandbox_throughput.py`` for the tables alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from benchmarks._load import (
    COLUMNS,
    Measured,
    Read,
    generator,
    measure,
    pinning,
    server_prefix,
)
from benchmarks._rig import ORGANIZER, record, table
from crm_meetings.connectors.hubspot.mapping import MEETING_PROPERTIES
from crm_meetings.connectors.salesforce.mapping import EVENT_SELECT
from crm_meetings.connectors.zoho.connector import PAGE_SIZE as ZOHO_COQL_PAGE
from crm_meetings.sandbox import registry
from crm_meetings.sandbox.admin import Controls, admin_app
from crm_meetings.sandbox.base import SandboxEnv
from crm_meetings.sandbox.middleware import SandboxMiddleware
from crm_meetings.sandbox.seed import SeedSpec, generate
from crm_meetings.sandbox.server import Sandbox

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SECONDS = 2.0 if QUICK else 5.0
CONNECTIONS = 8
MEETINGS = 1000
ORGANIZERS = 5  # the defaults of ``sandbox serve``, so that the in-process apps match
RECORDS = 50
PAGE = 10  # page size of the list reads, as in the registry's examples
LARGE = 10 * MEETINGS  # the data set of the second in-process column
APP_REQUESTS = 300 if QUICK else 1000  # per read and size, in-process
SF = "/services/data/v62.0"
G2M = "/G2M/rest/v2"


@dataclass(frozen=True, slots=True)
class Call:
    """One representative read, relative to the vendor's base URL."""

    vendor: str
    what: str  # what the product uses it for
    method: str
    path: str
    body: str | None = None

    def read(self, base_url: str, authorization: str) -> Read:
        headers = {"Authorization": authorization}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        return Read(self.method, base_url + self.path, headers, self.body)


Get = Callable[[str, str], Awaitable[Any]]  # (vendor, path) -> the parsed JSON answer


async def representative(get: Get, spec: SeedSpec) -> list[Call]:
    """Each vendor's reads, with record ids found through the API itself (``get``)."""
    week = spec.start + timedelta(days=7)
    account = (await get("salesforce", f"{SF}/query?q=SELECT+Id+FROM+Account+LIMIT+1"))["records"][
        0
    ]["Id"]
    zoho_account = (await get("zoho", "/crm/v8/Accounts?fields=Account_Name&per_page=1"))["data"][
        0
    ]["id"]
    organizer = (await get("goto", f"{G2M}/organizers?{urlencode({'email': ORGANIZER})}"))[0][
        "organizerKey"
    ]
    window = urlencode(
        {"startDate": f"{spec.start:%Y-%m-%dT%H:%M:%SZ}", "endDate": f"{week:%Y-%m-%dT%H:%M:%SZ}"}
    )
    history = f"{G2M}/organizers/{organizer}/historicalMeetings?{window}"
    held = (await get("goto", history))[0]["meetingId"]
    where = f"WhatId = '{account}' ORDER BY StartDateTime, Id"  # the connector's list_for_record
    soql = f"SELECT {EVENT_SELECT} FROM Event WHERE {where}"  # noqa: S608 — an id the API gave
    search = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": list(MEETING_PROPERTIES),
        "limit": PAGE,
    }
    coql = (  # the connector's list_for_record, on an id the API gave
        f"select id from Events where What_Id = '{zoho_account}' "  # noqa: S608
        f"limit {ZOHO_COQL_PAGE} offset 0"
    )
    report = urlencode(
        {"from": f"{spec.start:%Y-%m-%d}", "to": f"{spec.start + timedelta(days=29):%Y-%m-%d}"}
    )
    examples = [Call(v, "example", "GET", registry.example(v).path) for v in registry.EXAMPLES]
    return [
        *examples,
        Call("salesforce", "meetings of a record", "GET", f"{SF}/query?{urlencode({'q': soql})}"),
        Call(
            "hubspot",
            "changed meetings",
            "POST",
            "/crm/v3/objects/meetings/search",
            json.dumps(search),
        ),
        Call(
            "zoho",
            "meetings of a record",
            "POST",
            "/crm/v8/coql",
            json.dumps({"select_query": coql}),
        ),
        Call("goto", "sessions in a week", "GET", history),
        Call("goto", "attendees of a meeting", "GET", f"{G2M}/meetings/{held}/attendees"),
        Call(
            "zoom",
            "meetings ran in a month",
            "GET",
            f"/v2/report/users/me/meetings?{report}&page_size={PAGE}",
        ),
    ]


def serve() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The sandbox CLI in a child process, and what it printed (URLs, tokens, CA)."""
    command = [sys.executable, "-m", "crm_meetings.commands.sandbox", "serve", "--json"]
    sizes = ["--meetings", str(MEETINGS), "--organizers", str(ORGANIZERS)]
    process = subprocess.Popen(  # noqa: S603 — our own interpreter and module
        [*server_prefix(), *command, *sizes, "--records", str(RECORDS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise SystemExit(f"the sandbox did not start (exit status {process.returncode})")
    return process, json.loads(line)


def served_calls(described: dict[str, Any]) -> list[Call]:
    """The representative reads, ids found over HTTPS from the served sandbox."""
    vendors: dict[str, dict[str, str]] = described["vendors"]
    context = ssl.create_default_context(cafile=described["ca_path"])

    async def get(vendor: str, path: str) -> Any:
        info = vendors[vendor]
        headers = {"Authorization": info["authorization"]}
        async with httpx.AsyncClient(verify=context, headers=headers, timeout=10) as client:
            response = await client.get(info["url"] + path)
        response.raise_for_status()
        return response.json()

    return asyncio.run(representative(get, spec(MEETINGS)))


def spec(meetings: int) -> SeedSpec:
    return SeedSpec(seed=42, meetings=meetings, organizers=ORGANIZERS, records=RECORDS)


# --- in-process ---------------------------------------------------------------------------


async def asgi(
    app: SandboxMiddleware, method: str, path: str, authorization: str, body: str | None
) -> tuple[int, bytes]:
    """One request through the wrapped app, in-process: (status, body)."""
    route, _, query = path.partition("?")
    headers = [(b"host", b"sandbox"), (b"authorization", authorization.encode())]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    payload = (body or "").encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": route,
        "raw_path": route.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
        "server": ("127.0.0.1", 443),
        "client": ("127.0.0.1", 50000),
    }
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def app_ms(apps: dict[str, tuple[SandboxMiddleware, str]], calls: list[Call]) -> list[float]:
    """Milliseconds of CPU per request of each call through its vendor's app, in-process."""
    costs = []
    for call in calls:
        app, authorization = apps[call.vendor]
        status, _ = await asgi(app, call.method, call.path, authorization, call.body)
        if status != 200:
            raise SystemExit(f"{call.method} {call.path}: {status}")
        began = time.process_time()
        for _ in range(APP_REQUESTS):
            await asgi(app, call.method, call.path, authorization, call.body)
        costs.append((time.process_time() - began) / APP_REQUESTS * 1000)
    return costs


def app_costs(meetings: int) -> tuple[list[Call], list[float]]:
    """The representative reads of a sandbox seeded with ``meetings``, and their CPU in-app."""
    data = generate(spec(meetings))
    apps: dict[str, tuple[SandboxMiddleware, str]] = {}
    for emulator in registry.create_all():
        env = SandboxEnv()
        admin = admin_app(Controls(env, {emulator.name: emulator}), emulator.name)
        app = SandboxMiddleware(emulator, emulator.build_app(env), env, admin=admin)
        emulator.load(data)
        token = env.tokens.issue(emulator.name)
        apps[emulator.name] = (app, registry.example(emulator.name).authorization(token))

    async def get(vendor: str, path: str) -> Any:
        app, authorization = apps[vendor]
        status, body = await asgi(app, "GET", path, authorization, None)
        if status != 200:
            raise SystemExit(f"GET {path}: {status}")
        return json.loads(body)

    async def run() -> tuple[list[Call], list[float]]:
        calls = await representative(get, spec(meetings))
        return calls, await app_ms(apps, calls)

    return asyncio.run(run())


def startup_seconds(seed: SeedSpec | None) -> float:
    began = time.perf_counter()
    box = Sandbox(seed=seed).start()
    elapsed = time.perf_counter() - began
    box.stop()
    return elapsed


# --- the run --------------------------------------------------------------------------------


def shown(call: Call) -> str:
    path = call.path if len(call.path) <= 70 else call.path[:67] + "…"
    return f"{call.what}: `{call.method} {path}`"


def load_all() -> list[tuple[Call, Measured]]:
    process, described = serve()
    try:
        vendors: dict[str, dict[str, str]] = described["vendors"]
        results = []
        for call in served_calls(described):
            info = vendors[call.vendor]
            read = call.read(info["url"], info["authorization"])
            results.append(
                (
                    call,
                    measure(
                        read,
                        seconds=SECONDS,
                        connections=CONNECTIONS,
                        server_pid=process.pid,
                        cafile=described["ca_path"],
                    ),
                )
            )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    return sorted(results, key=lambda r: list(registry.EMULATORS).index(r[0].vendor))


def main() -> str:
    results = load_all()
    rows = [[call.vendor, shown(call), *m.cells()] for call, m in results]
    for call, m in results:
        record(
            "sandbox_throughput",
            crm=call.vendor if call.vendor in ("salesforce", "hubspot", "zoho") else None,
            n=MEETINGS,
            vendor=call.vendor,
            read=call.what,
            method=call.method,
            endpoint=call.path.partition("?")[0],
            **m.fields(CONNECTIONS),
        )
    throughput = table(["vendor", "read", *COLUMNS], rows)
    started = [
        [label, f"{startup_seconds(seed) * 1000:.0f}"]
        for label, seed in (
            ("every emulator, no seed, first in the process (imports)", None),
            ("every emulator, no seed", None),
            (f"every emulator, {MEETINGS} meetings", spec(MEETINGS)),
        )
    ]
    startup = table(["Sandbox(...).start()", "ms"], started)
    calls, small = app_costs(MEETINGS)
    _, large = app_costs(LARGE)
    in_app = table(
        [
            "vendor",
            "read",
            f"app CPU ms/req, {MEETINGS:,} meetings",
            f"app CPU ms/req, {LARGE:,} meetings",
        ],
        [
            [call.vendor, shown(call), f"{ms:.3f}", f"{big:.3f}"]
            for call, ms, big in sorted(
                zip(calls, small, large, strict=True),
                key=lambda r: list(registry.EMULATORS).index(r[0].vendor),
            )
        ],
    )
    setup = (
        f"Load generator: {generator()} ({CONNECTIONS} keep-alive HTTPS connections, one "
        f"thread), {SECONDS:g} s per read after a 1 s warm-up; sandbox seeded with "
        f"{MEETINGS} meetings ({ORGANIZERS} organizers, {RECORDS} companies); {pinning()}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end."
    )
    return f"{setup}\n\n{throughput}\n\n{in_app}\n\n{startup}\n"


if __name__ == "__main__":
    print(main())
