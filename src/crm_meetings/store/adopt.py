"""Re-key rows stored under one org to another: what ``crm-meetings db adopt-org`` does.

An install that ran without org ids kept everything under
:data:`~crm_meetings.store.DEFAULT_ORG_ID`; once ``[salesforce] org_id`` (``[hubspot]
portal_id``, ``[zoho] org_id``) is set, every entry point reads that CRM's data under the
configured id instead, so the old rows must move or they vanish from view. Every table on
:class:`~crm_meetings.store.tables.Base` with an ``org_id`` column takes part (the caller
imports the modules that declare them): a table with a ``crm`` column moves each CRM's rows
to that CRM's org (``by_crm``), the others move to ``shared`` (skipped when it is ``None``:
CRMs of several orgs share them and someone must choose). A row whose key already exists
in the target org (e.g. the same CRM record, a rotation of the same name) stays where it
is and is counted as kept, never merged or overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from crm_meetings.model import CrmKind
from crm_meetings.store.tables import Base
from crm_meetings.store.unit_of_work import UnitOfWork

__all__ = ["AdoptReport", "adopt_org", "org_tables"]


@dataclass
class AdoptReport:
    """Per table: rows moved, and rows left under the source org (with why)."""

    moved: dict[str, int] = field(default_factory=dict)
    kept: dict[str, tuple[int, str]] = field(default_factory=dict)


def org_tables() -> list[sa.Table]:
    """The declared tables with an ``org_id`` column, in dependency order."""
    return [t for t in Base.metadata.sorted_tables if "org_id" in t.c]


def _no_clash(table: sa.Table, target: str) -> sa.ColumnElement[bool]:
    """True for rows whose other key columns are free in ``target``."""
    clauses: list[sa.ColumnElement[bool]] = []
    for constraint in table.constraints:
        if not isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint):
            continue
        names = [c.name for c in constraint.columns]
        if "org_id" not in names or len(names) == 1:
            continue
        other = table.alias()
        match = [other.c.org_id == target] + [
            other.c[n] == table.c[n] for n in names if n != "org_id"
        ]
        clauses.append(~sa.exists().where(*match))
    return sa.and_(sa.true(), *clauses)


def _move(
    uow: UnitOfWork, table: sa.Table, source: str, target: str, *where: sa.ColumnElement[bool]
) -> int:
    statement = (
        sa.update(table)
        .where(table.c.org_id == source, *where, _no_clash(table, target))
        .values(org_id=target)
    )
    return int(uow.session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def adopt_org(
    uow: UnitOfWork, source: str, by_crm: Mapping[CrmKind, str], shared: str | None
) -> AdoptReport:
    """Move ``source``'s rows: per CRM to ``by_crm[crm]``, the rest to ``shared``."""
    report = AdoptReport()
    for table in org_tables():
        moved = 0
        if "crm" in table.c:
            for crm, target in by_crm.items():
                if target != source:
                    moved += _move(uow, table, source, target, table.c.crm == crm.value)
        elif shared is not None and shared != source:
            moved += _move(uow, table, source, shared)
        left = int(
            uow.session.scalar(
                sa.select(sa.func.count()).select_from(table).where(table.c.org_id == source)
            )
            or 0
        )
        if moved:
            report.moved[table.name] = moved
        if left:
            if "crm" in table.c:
                why = "a CRM without an org id, or the same key already in the target org"
            elif shared is None or shared == source:
                why = "shared by CRMs of several orgs: choose one with --org"
            else:
                why = "the same key already in the target org"
            report.kept[table.name] = (left, why)
    return report
