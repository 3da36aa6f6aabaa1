"""Seeded meetings made real: created in a CRM and stored, as ``schedule`` would leave them.

The demo, the sync tests and the benchmarks all start a history sync from this state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from crm_meetings.connectors.base import Connector
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.model import CrmKind, Invitee, Meeting, Person, new_meeting
from crm_meetings.sandbox.seed import SeedMeeting
from crm_meetings.store import DEFAULT_ORG_ID, Store

__all__ = ["schedule_seeded"]


def schedule_seeded(
    seeded: Sequence[SeedMeeting],
    *,
    crm: CrmKind,
    connector: Connector,
    store: Store,
    organizer: Person,
    provider: str | None = None,
    id_prefix: str | None = None,
    org_id: str = DEFAULT_ORG_ID,
) -> list[Meeting]:
    """Create ``seeded`` in the CRM (batched) and store our copies with their record ids,
    under ``org_id``.

    ``provider`` overrides each seed meeting's own; ``id_prefix`` gives stable local ids
    (``<prefix>-<seed key>``) instead of random ones. A meeting the CRM refuses is an error.
    """
    drafts = [
        new_meeting(
            crm=crm,
            subject=m.subject,
            start=m.start,
            end=m.end,
            timezone=m.timezone,
            organizer=organizer,
            now=m.start - timedelta(days=7),
            invitees=tuple(Invitee(email, name) for name, email in m.invitees),
            provider=provider or m.provider,
            provider_meeting_id=m.provider_meeting_id,
            join_url=m.join_url,
            **_stable_id(id_prefix, m),
        )
        for m in seeded
    ]
    results = connector.create_many(drafts)
    refused = [r for r in results if not r.ok]
    if refused:
        raise CrmMeetingsError(
            f"{crm.value} refused {len(refused)} of {len(drafts)} seeded meeting(s): "
            f"{refused[0].error}"
        )
    meetings = [
        dataclasses.replace(draft, crm_record_id=result.record_id)
        for draft, result in zip(drafts, results, strict=True)
    ]
    with store.transaction() as uow:
        for meeting in meetings:
            uow.meetings.add(meeting, org_id=org_id)
    return meetings


def _stable_id(prefix: str | None, seeded: SeedMeeting) -> dict[str, Any]:
    if prefix is None:
        return {}
    local_id = f"{prefix}-{seeded.key}"
    return {"id_factory": lambda: local_id}
