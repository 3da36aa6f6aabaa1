"""Web throughput: requests per second of the record-page panel's reads, over loopback.

The web app runs as in production — ``crm-meetings web serve`` (uvicorn) in its own process,
pinned to CPU 0 when there are two CPUs — over a SQLite store seeded with ``MEETINGS``
meetings spread over ``RECORDS`` CRM records (Accounts), each with three invitees. Two
reads of one record are driven for ``SECONDS`` seconds by ``CONNECTIONS`` keep-alive
connections of Debian's ``wrk`` on CPU 1 (``benchmarks/_load.py``; without ``wrk``, an
httpx load generator, and the table says so):

- ``GET /api/v1/records/{type}/{id}/meetings``, the record's meetings as JSON, with a
  server-to-server API key (``Authorization: Bearer cmk_…``);
- ``GET /panel``, the record-page panel itself (HTML, the same meetings grouped), with the
  signed session cookie a CRM entry point issues.

The table gives requests/s, latency p50/p99, non-2xx responses (errors) and the server's
CPU per request. Logging is at WARNING (no access log), as the benchmark measures the app.

Reproduce: ``python -m benchmarks web_throughput`` (5 s per read; ``BENCH_QUICK=1``: 2 s).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

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
from benchmarks._rig import quick, record, table
from crm_meetings.model import CrmKind, Invitee, Person, RecordRef, new_meeting
from crm_meetings.sandbox.seed import SeedSpec, generate
from crm_meetings.store import DEFAULT_ORG_ID, Store, upgrade
from crm_meetings.store.repositories import utc_now
from crm_meetings.web.auth import CallerContext
from crm_meetings.web.data import create_api_key
from crm_meetings.web.security import SESSION_COOKIE, SessionCodec

SECONDS = 2.0 if quick() else 5.0
CONNECTIONS = 8
MEETINGS = 1000
RECORDS = 100
READY_TIMEOUT = 30.0


def account(index: int) -> RecordRef:
    return RecordRef("Account", f"001000000000{index:03d}AAA")


def seed(url: str) -> tuple[str, RecordRef]:
    """``MEETINGS`` meetings over ``RECORDS`` Accounts in the store at ``url``; an API key."""
    upgrade(url)
    data = generate(SeedSpec(seed=7, meetings=MEETINGS, organizers=5, records=RECORDS))
    records = {r.key: i for i, r in enumerate(data.records)}
    with Store(url) as store, store.transaction() as uow:
        for m in data.meetings:
            uow.meetings.add(
                new_meeting(
                    crm=CrmKind.SALESFORCE,
                    subject=m.subject,
                    start=m.start,
                    end=m.end,
                    timezone=m.timezone,
                    organizer=Person(data.user(m.organizer).email),
                    now=m.start - timedelta(days=7),
                    invitees=tuple(Invitee(email, name) for name, email in m.invitees),
                    related=(account(records[m.record]),),
                    crm_record_id=f"00U{m.key.removeprefix('meeting-'):0>12}AAA",
                )
            )
        _, key = create_api_key(
            uow,
            DEFAULT_ORG_ID,
            crm=CrmKind.SALESFORCE.value,
            name="web_throughput benchmark",
            actor_email="rep0@sales.example.com",
            by="benchmarks",
        )
    return key, account(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``crm-meetings web serve`` in a child process; returns once it answers."""
    command = [str(Path(sys.executable).with_name("crm-meetings")), "--config", str(config)]
    process = subprocess.Popen(  # noqa: S603 — our own interpreter and module
        [*server_prefix(), *command, "web", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web app did not start (exit status {process.returncode})")
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/app.js", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the web app did not answer on port {port} in {READY_TIMEOUT:g} s")


def main() -> str:
    session_secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="crm-bench-web-") as tmp:
        url = f"sqlite+pysqlite:///{Path(tmp) / 'web.db'}"
        key, ref = seed(url)
        config = Path(tmp) / "crm-meetings.toml"
        config.write_text(
            f'[store]\nurl = "{url}"\n\n[web]\nsession_secret = "{session_secret}"\n\n'
            '[log]\nlevel = "WARNING"\n',
            encoding="utf-8",
        )
        caller = CallerContext(
            CrmKind.SALESFORCE, DEFAULT_ORG_ID, "005000000000001AAA", "rep0@sales.example.com", ref
        )
        codec = SessionCodec(session_secret, ttl=timedelta(hours=1), clock=utc_now)
        cookie, _ = codec.issue(caller, admin=False)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        reads = [
            (
                "record meetings (JSON), API key",
                Read(
                    "GET",
                    f"{base}/api/v1/records/{ref.object_type}/{ref.record_id}/meetings",
                    {"Authorization": f"Bearer {key}"},
                ),
            ),
            (
                "record panel (HTML), session cookie",
                Read("GET", f"{base}/panel", {"Cookie": f"{SESSION_COOKIE}={cookie}"}),
            ),
        ]
        process = serve(config, port)
        try:
            shown = httpx.get(reads[0][1].url, headers=dict(reads[0][1].headers)).json()
            results: list[tuple[str, Measured]] = [
                (
                    what,
                    measure(read, seconds=SECONDS, connections=CONNECTIONS, server_pid=process.pid),
                )
                for what, read in reads
            ]
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    rows = [[what, f"`{m.read.shown}`", *m.cells()] for what, m in results]
    for what, m in results:
        record(
            "web_throughput",
            crm=CrmKind.SALESFORCE.value,
            n=MEETINGS,
            read=what,
            endpoint=m.read.shown.split(" ", 1)[1].replace(ref.record_id, "{id}"),
            records=RECORDS,
            meetings_in_answer=len(shown),
            **m.fields(CONNECTIONS),
        )
    setup = (
        f"Load generator: {generator()} ({CONNECTIONS} keep-alive HTTP connections on "
        f"loopback, one thread), {SECONDS:g} s per read after a 1 s warm-up; "
        f"`crm-meetings web serve` (uvicorn, log level WARNING) over SQLite seeded with "
        f"{MEETINGS:,} meetings on {RECORDS} Accounts ({len(shown)} on the record read); "
        f"{pinning()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end."
    )
    body = table(["read", "request", *COLUMNS], rows)
    return f"{setup}\n\n{body}\n"


if __name__ == "__main__":
    print(main())
