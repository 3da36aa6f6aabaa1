"""The list endpoints read sorted indexes and formatted rows kept between requests (so that a
request costs its page); they must follow every change: create, update, delete, archive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_meetings.sandbox.base import CallLog, RecordedCall, SandboxEnv
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory

SEED = SeedSpec(seed=11, meetings=12, organizers=2, records=3)


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory(["zoom", "goto", "zoho", "hubspot"], seed=SEED)


def client(box: Sandbox, vendor: str, scheme: str = "Bearer") -> httpx.Client:
    headers = {"Authorization": f"{scheme} {box.token(vendor)}"}
    return httpx.Client(
        base_url=box.url(vendor), verify=box.ssl_context(), headers=headers, timeout=10
    )


@pytest.fixture
def zoom(box: Sandbox) -> Iterator[httpx.Client]:
    with client(box, "zoom") as opened:
        yield opened


def zoom_list(zoom: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    token = ""
    while True:
        page = zoom.get(
            "/v2/users/me/meetings", params={"page_size": 5, "next_page_token": token, **params}
        ).json()
        rows += page["meetings"]
        token = page["next_page_token"]
        if not token:
            return rows


def test_zoom_meeting_list_follows_create_update_and_delete(zoom: httpx.Client) -> None:
    before = zoom_list(zoom)
    assert [(r["start_time"], r["id"]) for r in before] == sorted(
        (r["start_time"], r["id"]) for r in before
    )
    created = zoom.post(
        "/v2/users/me/meetings",
        json={"topic": "Early bird", "type": 2, "start_time": "2001-01-01T09:00:00Z"},
    ).json()
    listed = zoom_list(zoom)
    assert listed[0]["id"] == created["id"]
    assert listed[0]["topic"] == "Early bird"
    assert len(listed) == len(before) + 1
    patched = zoom.patch(
        f"/v2/meetings/{created['id']}",
        json={"start_time": "2099-01-01T09:00:00Z", "topic": "Night owl"},
    )
    assert patched.status_code == 204
    listed = zoom_list(zoom)
    assert (listed[-1]["id"], listed[-1]["topic"]) == (created["id"], "Night owl")
    assert listed[-1]["start_time"] == "2099-01-01T09:00:00Z"
    assert any(r["id"] == created["id"] for r in zoom_list(zoom, type="upcoming"))
    assert zoom.delete(f"/v2/meetings/{created['id']}").status_code == 204
    assert [r["id"] for r in zoom_list(zoom)] == [r["id"] for r in before]


def test_goto_upcoming_follows_create_update_and_delete(box: Sandbox) -> None:
    body = {
        "subject": "Planning",
        "starttime": "2099-02-01T10:00:00Z",
        "endtime": "2099-02-01T11:00:00Z",
        "passwordrequired": False,
        "conferencecallinfo": "Hybrid",
        "timezonekey": "",
        "meetingtype": "scheduled",
    }
    with client(box, "goto") as goto:
        created = goto.post("/G2M/rest/v2/meetings", json=body)
        assert created.status_code == 201
        meeting_id = str(created.json()[0]["meetingid"])

        def upcoming() -> dict[str, dict[str, Any]]:
            rows = goto.get("/G2M/rest/v2/upcomingMeetings").json()
            return {row["meetingId"]: row for row in rows}

        assert upcoming()[meeting_id]["subject"] == "Planning"
        renamed = {**body, "subject": "Planning, moved", "starttime": "2099-03-01T10:00:00Z"}
        renamed["endtime"] = "2099-03-01T11:00:00Z"
        assert goto.put(f"/G2M/rest/v2/meetings/{meeting_id}", json=renamed).status_code == 204
        row = upcoming()[meeting_id]
        assert (row["subject"], row["startTime"][:10]) == ("Planning, moved", "2099-03-01")
        assert goto.delete(f"/G2M/rest/v2/meetings/{meeting_id}").status_code == 204
        assert meeting_id not in upcoming()


def test_zoho_list_order_follows_updates_and_deletes(sandbox_factory: SandboxFactory) -> None:
    now = [datetime(2026, 11, 2, 9, 0, tzinfo=UTC)]
    box = sandbox_factory(["zoho"], seed=SEED, env=SandboxEnv(clock=lambda: now[0]))
    with client(box, "zoho", "Zoho-oauthtoken") as zoho:
        params = {"fields": "Event_Title", "sort_by": "Modified_Time", "sort_order": "desc"}

        def first_ids() -> list[str]:
            return [r["id"] for r in zoho.get("/crm/v8/Events", params=params).json()["data"]]

        before = first_ids()
        oldest = before[-1]
        now[0] += timedelta(minutes=5)  # the update's Modified_Time is the latest
        updated = zoho.put(f"/crm/v8/Events/{oldest}", json={"data": [{"Event_Title": "Touched"}]})
        assert updated.status_code == 200
        assert first_ids()[0] == oldest
        by_id = zoho.get("/crm/v8/Events", params={"fields": "Event_Title"}).json()["data"]
        assert next(r for r in by_id if r["id"] == oldest)["Event_Title"] == "Touched"
        assert zoho.delete("/crm/v8/Events", params={"ids": oldest}).status_code == 200
        assert oldest not in first_ids()
        assert len(first_ids()) == len(before) - 1


def test_hubspot_list_follows_create_and_archive(box: Sandbox) -> None:
    with client(box, "hubspot") as hubspot:

        def listed(**params: Any) -> list[str]:
            ids: list[str] = []
            after: str | None = None
            while True:
                query = {"limit": 4, **params, **({"after": after} if after else {})}
                page = hubspot.get("/crm/v3/objects/meetings", params=query).json()
                ids += [r["id"] for r in page["results"]]
                after = page.get("paging", {}).get("next", {}).get("after")
                if after is None:
                    return ids

        before = listed()
        assert before == sorted(before, key=int)
        properties = {"hs_meeting_title": "New", "hs_timestamp": "2026-12-01T10:00:00Z"}
        created = hubspot.post("/crm/v3/objects/meetings", json={"properties": properties})
        new_id = created.json()["id"]
        assert listed() == [*before, new_id]
        assert hubspot.delete(f"/crm/v3/objects/meetings/{before[1]}").status_code == 204
        assert listed() == [i for i in [*before, new_id] if i != before[1]]
        assert listed(archived="true") == [before[1]]


def test_call_counts_per_vendor_match_the_log() -> None:
    log = CallLog()
    for vendor, status in (("zoom", 200), ("zoho", 429), ("zoom", 500)):
        log.record(RecordedCall(vendor, "/x", "GET", status))
    assert (log.count("zoom"), log.count("zoho"), log.count()) == (2, 1, 3)
    assert log.count("zoom", status=500) == 1
    log.reset()
    assert (log.count("zoom"), log.count()) == (0, 0)
