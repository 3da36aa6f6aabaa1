"""The load generators of the throughput benchmarks (not a benchmark itself: ``_`` prefix).

:func:`measure` drives one :class:`Read` for a number of seconds with ``connections``
keep-alive connections and returns what came back: requests, requests/s, latency p50/p99,
the statuses counted and the server process's CPU time. It runs Debian's ``wrk`` (a native
generator, so the generator's own cost does not eat the server's core) and falls back to
``httpx`` on asyncio when ``wrk`` is absent; :class:`Measured` says which one ran.

With two CPUs or more, the server is pinned to CPU 0 (:func:`server_prefix`) and ``wrk`` to
CPU 1 (``taskset``), so that generator and server do not take turns on one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WRK = "wrk"
SERVER_CPU = "0"
CLIENT_CPU = "1"
TARGET_RPS = 1000  # issue 4: 1,000 requests/s per read is enough

#: the table columns :func:`cells` fills, after the benchmark's own first columns
COLUMNS = (
    "load generator",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "socket errors",
    "server CPU ms/req",
    "req/s per core",
    "≥ 1,000/s, no errors",
)

# wrk's Lua hooks: the request (method, body), a status count per thread, and at the end
# one JSON line with the summary, the latency percentiles (µs) and the merged statuses.
_SCRIPT = """
wrk.method = "{method}"
{body}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {{}} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {{}}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {{"duration_us": %d, "requests": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "statuses": {{%s}}}}\\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
"""


@dataclass(frozen=True, slots=True)
class Read:
    """One request to repeat: method, absolute URL, headers and an optional JSON body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: str | None = None

    @property
    def shown(self) -> str:
        """``METHOD /path?query`` for the tables."""
        rest = self.url.split("://", 1)[-1]
        return f"{self.method} /{rest.partition('/')[2]}"


@dataclass
class Measured:
    read: Read
    generator: str  # "wrk" | "httpx"
    seconds: float = 0.0
    requests: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    socket_errors: int = 0  # connect, read, write errors and timeouts
    server_cpu: float = 0.0  # seconds the server process spent during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / self.requests * 1000 if self.requests else 0.0

    @property
    def met(self) -> bool:
        """The target reached with no error at all."""
        return self.rps >= TARGET_RPS and self.non_2xx == 0 and self.socket_errors == 0

    def cells(self) -> list[object]:
        """The row's :data:`COLUMNS`."""
        return [
            self.generator,
            self.requests,
            f"{self.rps:,.0f}",
            f"{self.p50_ms:.1f}",
            f"{self.p99_ms:.1f}",
            self.non_2xx,
            self.socket_errors,
            f"{self.cpu_ms:.2f}",
            f"{1000 / self.cpu_ms:,.0f}" if self.cpu_ms else "–",
            "met" if self.met else "missed",
        ]

    def fields(self, connections: int) -> dict[str, Any]:
        """The machine-readable row's measured fields (``_rig.record``)."""
        return {
            "wall_s": round(self.seconds, 3),
            "generator": self.generator,
            "connections": connections,
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "server_cpu_ms": round(self.cpu_ms, 3),
            "target_rps": TARGET_RPS,
        }


def generator() -> str:
    """``wrk`` when it is installed (``make bench`` installs it), else ``httpx``."""
    return WRK if shutil.which(WRK) else "httpx"


def _pinning() -> bool:
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def server_prefix() -> list[str]:
    """The command prefix that pins a server process to CPU 0 (nothing on one CPU)."""
    return ["taskset", "-c", SERVER_CPU] if _pinning() else []


def pinning() -> str:
    """How the processes were placed, for the tables."""
    if not _pinning():
        return f"server and load generator share {os.cpu_count()} CPU(s)"
    return f"server pinned to CPU {SERVER_CPU}, wrk to CPU {CLIENT_CPU} (taskset)"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    read: Read,
    *,
    seconds: float,
    connections: int,
    server_pid: int,
    cafile: str | None = None,
) -> Measured:
    """Drive ``read`` for ``seconds`` with ``connections`` connections (wrk, else httpx)."""
    if generator() == WRK:
        _wrk(read, 1.0, connections)  # warm up: TLS handshakes, first-request imports
        cpu = cpu_seconds(server_pid)
        result = _wrk(read, seconds, connections)
    else:
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        cpu = cpu_seconds(server_pid)
        result = asyncio.run(_httpx(read, seconds, connections, context))
    result.server_cpu = cpu_seconds(server_pid) - cpu
    return result


def _wrk(read: Read, seconds: float, connections: int) -> Measured:
    body = f"wrk.body = [==[{read.body}]==]" if read.body is not None else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT.format(method=read.method, body=body))
    try:
        headers = [arg for k, v in read.headers.items() for arg in ("-H", f"{k}: {v}")]
        prefix = ["taskset", "-c", CLIENT_CPU] if _pinning() else []
        command = [*prefix, WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s"]
        completed = subprocess.run(  # noqa: S603 — wrk with our own arguments
            [*command, "-s", script.name, *headers, read.url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    finally:
        os.unlink(script.name)
    line = next((x for x in completed.stdout.splitlines() if x.startswith("WRK-RESULT ")), None)
    if line is None:
        raise SystemExit(
            f"wrk gave no result for {read.shown} (exit status {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    data = json.loads(line.removeprefix("WRK-RESULT "))
    return Measured(
        read,
        WRK,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses=Counter({int(k): v for k, v in data["statuses"].items()}),
        socket_errors=sum(data[k] for k in ("connect", "read", "write", "timeout")),
    )


async def _httpx(
    read: Read, seconds: float, connections: int, context: ssl.SSLContext | None
) -> Measured:
    """The fallback: ``connections`` asyncio workers on one keep-alive client."""
    result = Measured(read, "httpx")
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    content = read.body.encode() if read.body is not None else None
    async with httpx.AsyncClient(
        verify=context or True, headers=dict(read.headers), limits=limits, timeout=10
    ) as client:
        await client.request(read.method, read.url, content=content)  # warm up
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while (started := time.perf_counter()) < deadline:
                try:
                    response = await client.request(read.method, read.url, content=content)
                except httpx.TransportError:
                    result.socket_errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                result.statuses[response.status_code] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        result.seconds = time.perf_counter() - began
    result.requests = len(latencies)
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100)
        result.p50_ms, result.p99_ms = cuts[49] * 1000, cuts[98] * 1000
    return result
