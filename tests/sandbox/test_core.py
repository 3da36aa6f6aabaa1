"""The sandbox core over real HTTPS, against a tiny emulator defined here.

``TinyEmulator`` has two routes (``/items/{item_id}`` and ``/items``), checks bearer tokens
like the vendor emulators do and renders faults in its own format, so these tests do not
depend on any vendor's emulator.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from crm_meetings.errors import ConflictError, NotFoundError, ValidationError
from crm_meetings.sandbox import registry
from crm_meetings.sandbox.base import FaultKind, FaultPlan, Faults, SandboxEnv
from crm_meetings.sandbox.middleware import DROPPED, TIMED_OUT, route_template
from crm_meetings.sandbox.seed import SeedData, SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory

HERE = Path(__file__).parent
ITEM = "/items/{item_id}"


class TinyEmulator:
    """A two-route API with bearer tokens and its own fault bodies."""

    name = "tiny"

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.loaded: SeedData | None = None
        self.base_url_at_build: str | None = None

    def build_app(self, env: SandboxEnv) -> Starlette:
        self.base_url_at_build = env.base_urls.get(self.name)

        def authorized(request: Request) -> bool:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            return scheme.lower() == "bearer" and env.tokens.check(self.name, token)

        async def item(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            found = self.items.get(request.path_params["item_id"])
            return JSONResponse(found or {"error": "not_found"}, status_code=200 if found else 404)

        async def create(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            body = await request.json()
            item_id = str(len(self.items) + 1)
            self.items[item_id] = {"id": item_id, **body}
            location = f"{env.base_urls[self.name]}/items/{item_id}"
            return JSONResponse(
                self.items[item_id], status_code=201, headers={"Location": location}
            )

        return Starlette(
            routes=[Route(ITEM, item, methods=["GET"]), Route("/items", create, methods=["POST"])]
        )

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        status = {FaultKind.RATE_LIMITED: 429, FaultKind.UNAUTHORIZED: 401}.get(kind, 503)
        headers = {"Retry-After": f"{retry_after:g}"} if kind is FaultKind.RATE_LIMITED else {}
        return JSONResponse({"fault": kind.value}, status_code=status, headers=headers)

    def load(self, data: Any) -> None:
        self.loaded = data
        for meeting in data.meetings:
            self.items[meeting.key] = {"id": meeting.key, "subject": meeting.subject}

    def state(self) -> Mapping[str, Any]:
        return {"items": self.items}


@pytest.fixture
def tiny(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory([TinyEmulator()], seed=SeedSpec(seed=7, meetings=3))


@pytest.fixture
def client(tiny: Sandbox) -> Iterator[httpx.Client]:
    """An HTTPS client trusting the sandbox CA, with a live token."""
    headers = {"Authorization": f"Bearer {tiny.token('tiny')}"}
    with httpx.Client(
        base_url=tiny.url("tiny"), verify=tiny.ssl_context(), headers=headers, timeout=10
    ) as opened:
        yield opened


# TLS and listeners


def test_https_is_trusted_with_the_sandbox_ca_only(tiny: Sandbox, client: httpx.Client) -> None:
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", tiny.url("tiny"))
    assert client.get("/items/meeting-0").json()["id"] == "meeting-0"
    assert tiny.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with httpx.Client(verify=True, timeout=10) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get(f"{tiny.url('tiny')}/items/meeting-0")


def test_base_urls_are_set_before_the_apps_are_built(tiny: Sandbox) -> None:
    emulator = tiny.emulator("tiny")
    assert isinstance(emulator, TinyEmulator)
    assert tiny.env.base_urls == {"tiny": tiny.url("tiny")}
    assert emulator.base_url_at_build == tiny.url("tiny")


def test_the_seed_is_generated_and_loaded(tiny: Sandbox) -> None:
    emulator = tiny.emulator("tiny")
    assert isinstance(emulator, TinyEmulator)
    assert emulator.loaded is tiny.data
    assert tiny.data is not None
    assert [m.key for m in tiny.data.meetings] == ["meeting-0", "meeting-1", "meeting-2"]
    assert set(tiny.state("tiny")["items"]) == {"meeting-0", "meeting-1", "meeting-2"}


def test_a_plain_http_listener_serves_the_same_app(sandbox_factory: SandboxFactory) -> None:
    box = sandbox_factory([TinyEmulator()], seed=None, http=True)
    assert box.http_url("tiny").startswith("http://127.0.0.1:")
    assert box.http_url("tiny") != box.url("tiny").replace("https", "http")
    token = box.token("tiny")
    response = httpx.post(
        f"{box.http_url('tiny')}/items", json={"a": 1}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    assert response.headers["location"] == f"{box.url('tiny')}/items/1"
    assert box.calls.count("tiny", endpoint="/items", method="POST", status=201) == 1


# call accounting


def test_calls_are_counted_by_route_template_and_method(
    tiny: Sandbox, client: httpx.Client
) -> None:
    for path in ("/items/meeting-0", "/items/meeting-1", "/items/none"):
        client.get(path)
    client.post("/items", json={"subject": "new"})
    client.delete("/items/meeting-0")  # the route exists, the method does not: 405
    client.get("/unknown/path")  # no route: the raw path
    client.get("/__sandbox__/calls")  # admin: not counted

    assert tiny.call_counts("tiny") == {
        ("GET", ITEM): 3,
        ("POST", "/items"): 1,
        ("DELETE", ITEM): 1,
        ("GET", "/unknown/path"): 1,
    }
    assert tiny.calls.count("tiny", endpoint=ITEM, method="get", status=200) == 2
    assert tiny.calls.count("tiny", endpoint="/items*") == 5
    assert tiny.calls.count("tiny", status=405) == 1

    report = client.get("/__sandbox__/calls").json()
    assert report["vendor"] == "tiny"
    assert report["total"] == 6
    assert {"method": "GET", "endpoint": ITEM, "count": 3, "status": {"200": 2, "404": 1}} in (
        report["calls"]
    )
    assert client.delete("/__sandbox__/calls").status_code == 204
    assert tiny.calls.count() == 0


def test_route_templates_join_mounts_and_name_405s() -> None:
    async def ok(request: Request) -> Response:
        return Response()

    inner = Starlette(routes=[Route("/sobjects/{name}/{record_id}", ok, methods=["GET"])])
    routes = [Mount("/services/data/v62.0", app=inner), Route("/health", ok, methods=["GET"])]

    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": ""}

    assert (
        route_template(routes, scope("GET", "/services/data/v62.0/sobjects/Event/00U1"))
        == "/services/data/v62.0/sobjects/{name}/{record_id}"
    )
    assert route_template(routes, scope("POST", "/health")) == "/health"
    assert route_template(routes, scope("GET", "/nothing")) is None


# faults


def test_a_429_rate_is_seeded_and_announces_retry_after(
    sandbox_factory: SandboxFactory,
) -> None:
    plan = FaultPlan(rate_limited=0.3, retry_after=2.5)
    expected = Faults(seed=11)
    expected.set("tiny", plan)
    want = [expected.decide("tiny", ITEM, "GET").kind is FaultKind.RATE_LIMITED for _ in range(40)]

    statuses = []
    box = sandbox_factory([TinyEmulator()], env=SandboxEnv(faults=Faults(seed=11)))
    box.set_faults("tiny", plan)
    with httpx.Client(base_url=box.url("tiny"), verify=box.ssl_context()) as client:
        auth = {"Authorization": f"Bearer {box.token('tiny')}"}
        for _ in range(40):
            response = client.get("/items/meeting-0", headers=auth)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["retry-after"] == "2.5"
                assert response.json() == {"fault": "rate_limited"}
    assert [s == 429 for s in statuses] == want
    assert 0 < statuses.count(429) < 40
    assert box.calls.count("tiny", status=429) == statuses.count(429)


def test_latency_delays_the_response(tiny: Sandbox, client: httpx.Client) -> None:
    tiny.set_faults("tiny", FaultPlan(latency=0.3), endpoint=ITEM)
    started = time.perf_counter()
    assert client.get("/items/meeting-0").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_fail_next_fails_exactly_n_matching_requests(tiny: Sandbox, client: httpx.Client) -> None:
    tiny.set_faults("tiny", FaultPlan(fail_next=2), endpoint=ITEM, method="GET")
    assert client.post("/items", json={}).status_code == 201  # another endpoint
    statuses = [client.get("/items/meeting-0").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_a_dropped_connection_is_a_client_side_error(tiny: Sandbox, client: httpx.Client) -> None:
    tiny.set_faults("tiny", FaultPlan(fail_next=1, fail_kind=FaultKind.DROP))
    with pytest.raises(httpx.TransportError):
        client.get("/items/meeting-0")
    assert client.get("/items/meeting-0").status_code == 200
    assert [c.status for c in tiny.calls.calls("tiny")] == [DROPPED, 200]


def test_a_timed_out_request_was_carried_out(tiny: Sandbox, client: httpx.Client) -> None:
    """The client gives up before the held answer: it cannot tell, but the item exists."""
    tiny.set_faults("tiny", FaultPlan(fail_next=1, fail_kind=FaultKind.TIMEOUT, hold=1.0))
    before = len(tiny.state("tiny")["items"])
    with pytest.raises(httpx.ReadTimeout):
        client.post("/items", json={"subject": "held"}, timeout=0.2)
    assert len(tiny.state("tiny")["items"]) == before + 1
    assert client.get("/items/meeting-0").status_code == 200
    assert [c.status for c in tiny.calls.calls("tiny")] == [TIMED_OUT, 200]


def test_clearing_faults_restores_normal_answers(tiny: Sandbox, client: httpx.Client) -> None:
    tiny.set_faults("tiny", FaultPlan(server_error=1.0))
    assert client.get("/items/meeting-0").status_code == 503
    tiny.clear_faults("tiny")
    assert client.get("/items/meeting-0").status_code == 200


# tokens


def test_tokens_expire_through_the_python_api_and_refresh(
    tiny: Sandbox, client: httpx.Client
) -> None:
    refresh = tiny.refresh_token("tiny")
    assert client.get("/items/meeting-0").status_code == 200
    tiny.expire_tokens("tiny")
    assert client.get("/items/meeting-0").status_code == 401
    fresh = tiny.env.tokens.refresh("tiny", refresh)
    assert fresh is not None
    response = client.get("/items/meeting-0", headers={"Authorization": f"Bearer {fresh}"})
    assert response.status_code == 200


def test_tokens_expire_and_are_issued_through_the_admin_endpoints(
    client: httpx.Client,
) -> None:
    assert client.post("/__sandbox__/tokens/expire").status_code == 204
    assert client.get("/items/meeting-0").status_code == 401
    issued = client.post("/__sandbox__/tokens", json={"ttl": 60})
    assert issued.status_code == 201
    assert set(issued.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    auth = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert client.get("/items/meeting-0", headers=auth).status_code == 200


# admin endpoints


def test_admin_faults_are_set_and_cleared_over_http(tiny: Sandbox, client: httpx.Client) -> None:
    rule = {"endpoint": ITEM, "method": "get", "fail_next": 1, "fail_kind": "rate_limited"}
    created = client.post("/__sandbox__/faults", json=rule)
    assert created.status_code == 201
    assert created.json()["method"] == "GET"
    assert created.json()["plan"]["fail_kind"] == "rate_limited"
    assert client.get("/__sandbox__/state").status_code == 200  # never faulted
    assert client.get("/items/meeting-0").status_code == 429

    client.post("/__sandbox__/faults", json={"server_error": 1})
    assert client.get("/items/meeting-0").status_code == 503
    assert client.delete("/__sandbox__/faults").status_code == 204
    assert client.get("/items/meeting-0").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_limited": 2}, "rate_limited"),
        ({"latency": "slow"}, "latency"),
        ({"fail_kind": "meltdown"}, "fail_kind"),
        ({"fail_next": 1.5}, "fail_next"),
        ({"vendor": "nobody"}, "vendor"),
        ({"colour": "red"}, "colour"),
        ([1, 2], "body"),
    ],
)
def test_admin_rejects_bad_fault_rules(client: httpx.Client, body: Any, field: str) -> None:
    response = client.post("/__sandbox__/faults", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_admin_state_and_index(tiny: Sandbox, client: httpx.Client) -> None:
    client.post("/items", json={"subject": "made over HTTPS"})
    state = client.get("/__sandbox__/state").json()
    assert state["items"]["4"] == {"id": "4", "subject": "made over HTTPS"}
    index = client.get("/__sandbox__/").json()
    assert index["vendor"] == "tiny"
    assert "/__sandbox__/faults" in index["endpoints"]
    assert tiny.calls.count("tiny") == 1


# the Sandbox object and the registry


def test_sandbox_errors_say_what_to_do(tiny: Sandbox) -> None:
    with pytest.raises(ValidationError, match="served: tiny"):
        tiny.url("zoom")
    with pytest.raises(ConflictError, match="http=True"):
        tiny.http_url("tiny")
    with pytest.raises(ConflictError, match="already started"):
        tiny.start()
    with pytest.raises(ConflictError, match="not started"):
        Sandbox([TinyEmulator()]).url("tiny")


def test_stopping_closes_idle_client_connections_at_once() -> None:
    """An idle pooled TLS connection must not outlive the server's loop (ResourceWarning)."""
    box = Sandbox([TinyEmulator()]).start()
    with httpx.Client(base_url=box.url("tiny"), verify=box.ssl_context()) as client:
        assert client.get("/items/x").status_code == 401
        box.stop()
        assert not box.running
        gc.collect()  # an unclosed server transport would warn here
        with pytest.raises(httpx.TransportError):
            client.get("/items/x")


def test_a_sandbox_is_a_context_manager() -> None:
    with Sandbox([TinyEmulator()]) as box:
        assert box.running
    assert not box.running
    box.stop()  # idempotent


def test_every_available_emulator_answers_its_example_request(sandbox: Sandbox) -> None:
    """The ``sandbox`` fixture serves every landed emulator; ``sandbox serve`` prints these."""
    assert sandbox.vendors == registry.available()
    with httpx.Client(verify=sandbox.ssl_context(), timeout=10) as client:
        for vendor in sandbox.vendors:
            example = registry.example(vendor)
            auth = {"Authorization": example.authorization(sandbox.token(vendor))}
            response = client.get(sandbox.url(vendor) + example.path, headers=auth)
            assert response.status_code == 200, (vendor, response.text)
            assert client.get(f"{sandbox.url(vendor)}/__sandbox__/state").status_code == 200
    assert sandbox.calls.count() == len(sandbox.vendors)


def test_the_registry_lists_valid_names_for_an_unknown_one() -> None:
    with pytest.raises(ValidationError, match="valid names: salesforce, hubspot, zoho, goto, zoom"):
        registry.create("sugarcrm")
    with pytest.raises(ValidationError, match="unknown emulator 'sugarcrm'"):
        Sandbox(["sugarcrm"])


def test_a_missing_emulator_module_is_reported_and_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = {
        "ghost": "crm_meetings.sandbox.ghost_vendor:GhostEmulator",
        "nameless": "crm_meetings.sandbox.base:NoSuchEmulator",
        "tiny": f"{__name__}:TinyEmulator",
    }
    monkeypatch.setattr(registry, "EMULATORS", known)
    assert registry.available() == ("nameless", "tiny")
    with pytest.raises(NotFoundError, match=r"module crm_meetings\.sandbox\.ghost_vendor does not"):
        registry.create("ghost")
    with pytest.raises(NotFoundError, match="defines no NoSuchEmulator"):
        registry.create("nameless")
    assert registry.create("tiny").name == "tiny"
    assert [e.name for e in registry.create_all(["tiny", "tiny"])] == ["tiny"]


def test_an_emulator_class_can_be_named_by_module_and_class() -> None:
    emulator = registry.create(f"{__name__}:TinyEmulator")
    assert isinstance(emulator, TinyEmulator)
    with pytest.raises(NotFoundError, match=r"no_such_package\.mod does not exist"):
        registry.create("no_such_package.mod:Emulator")


# the command line


def _serve(*args: str) -> subprocess.Popen[str]:
    """``python -m crm_meetings.commands.sandbox serve ARGS`` serving TinyEmulator."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "300",
        "NO_COLOR": "1",
    }
    command = [sys.executable, "-m", "crm_meetings.commands.sandbox", "serve"]
    return subprocess.Popen(
        [*command, "--vendors", "test_core:TinyEmulator", "--meetings", "5", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    process.wait(10)
    assert process.stderr is not None
    pytest.fail(f"no {marker!r} in output: {''.join(lines)}{process.stderr.read()}")


def _stop(process: subprocess.Popen[str], sig: signal.Signals) -> int:
    process.send_signal(sig)
    try:
        return process.wait(20)
    finally:
        process.kill()
        process.communicate()


def test_serve_prints_urls_tokens_and_the_ca_and_stops_on_ctrl_c() -> None:
    process = _serve("--seed", "42")
    try:
        output = _read_until(process, "Ctrl-C")
        url = re.search(r"^tiny\s+(https://127\.0\.0\.1:\d+)$", output, re.M)
        token = re.search(r"access token:\s+(\S+)", output)
        ca = re.search(r"CA certificate: (\S+)", output)
        assert url, output
        assert token, output
        assert ca, output
        assert "curl --cacert" in output
        assert "refresh token:" in output
        curl = subprocess.run(
            [
                "curl",
                "--silent",
                "--fail",
                "--cacert",
                ca[1],
                "-H",
                f"Authorization: Bearer {token[1]}",
                f"{url[1]}/items/meeting-4",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(curl.stdout)["id"] == "meeting-4"
    finally:
        status = _stop(process, signal.SIGINT)
    assert status == 0


def test_serve_json_stops_on_sigterm() -> None:
    process = _serve("--json", "--http")
    try:
        line = _read_until(process, "ca_path")
        described = json.loads(line)
        tiny = described["vendors"]["tiny"]
        assert tiny["http_url"].startswith("http://127.0.0.1:")
        response = httpx.get(
            f"{tiny['http_url']}/items/meeting-0",
            headers={"Authorization": f"Bearer {tiny['access_token']}"},
        )
        assert response.status_code == 200
    finally:
        status = _stop(process, signal.SIGTERM)
    assert status == 0


def test_serve_reports_an_unknown_vendor() -> None:
    process = _serve("--vendors", "sugarcrm")
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "valid names: salesforce" in errors
