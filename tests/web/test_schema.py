"""schemathesis over /openapi.json (ASGI, in-process): no input makes the API answer 500.

Every operation gets a bounded number of generated requests (``derandomize``: the
same ones each run). Requests carry an admin API key, so generated data reaches the
handlers instead of stopping at authentication; the actions reach the sandboxed
Salesforce and Zoom.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from crm_meetings.model import CrmKind
from crm_meetings.store import Store, upgrade
from crm_meetings.web.app import create_app
from crm_meetings.web.data import create_api_key

if TYPE_CHECKING:
    from conftest import Stack

ORG = "00Dxx0000001gEREAY"
EXAMPLES = 12  # per operation: bounded, so the suite stays fast


@pytest.fixture
def keyed_app(
    sqlite_url: str, make_meeting: Any, settings: Any, stack: Stack
) -> Iterator[tuple[Any, str]]:
    """The app on the real stack, with an API key acting as the seeded rep."""
    upgrade(sqlite_url)
    with Store(sqlite_url) as store:
        with store.transaction() as uow:
            uow.meetings.add(make_meeting(), org_id=ORG)
            _, key = create_api_key(
                uow,
                ORG,
                crm=CrmKind.SALESFORCE.value,
                name="fuzz",
                actor_email=stack.organizer,
                by="test",
            )
        services = replace(stack.services(store, store.clock), nightly_func="time:time")
        app = create_app(settings, store=store, services=services)
        yield app, key


def test_no_input_gives_a_server_error(keyed_app: tuple[Any, str]) -> None:
    app, key = keyed_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, (where, response.text)
            if response.status_code >= 400:
                assert {"code", "message", "hint"} <= set(response.json()), where

        call()
    assert len(statuses) > 3 * len(operations)
    assert any(200 <= status < 300 for status in statuses)
