"""A small SOQL: what crm-meetings sends, parsed and run over the emulator's rows.

Supported::

    SELECT Id, Subject, Owner.Email, (SELECT RelationId FROM EventRelations)
    FROM Event
    WHERE WhatId = '001…' AND (StartDateTime >= 2026-01-01T00:00:00Z OR IsDeleted = true)
          AND Id IN ('00U…', '00U…') AND Subject != null
    ORDER BY SystemModstamp ASC, Id
    LIMIT 500

Anything else (functions, GROUP BY, OFFSET, semi-joins…) is refused with
``MALFORMED_QUERY``, as Salesforce refuses what it cannot parse; unknown fields and
objects are ``INVALID_FIELD`` / ``INVALID_TYPE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from crm_meetings.sandbox.salesforce.schema import OBJECTS, SObject, parse_datetime

__all__ = ["Query", "SoqlError", "parse", "run"]

Row = dict[str, Any]

#: (object, relationship name) -> (reference field, target object or None = polymorphic)
PARENTS: Final[dict[tuple[str, str], tuple[str, str | None]]] = {
    ("Event", "Owner"): ("OwnerId", "User"),
    ("Event", "Who"): ("WhoId", None),
    ("Event", "What"): ("WhatId", None),
    ("Event", "RecordType"): ("RecordTypeId", "RecordType"),
    ("EventRelation", "Relation"): ("RelationId", None),
    ("EventRelation", "Event"): ("EventId", "Event"),
    ("Contact", "Account"): ("AccountId", "Account"),
    ("Opportunity", "Account"): ("AccountId", "Account"),
    ("CRM_Meeting_Participant__c", "Session__r"): ("Session__c", "CRM_Meeting_Session__c"),
}
#: (object, child relationship name) -> (child object, its reference field)
CHILDREN: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("Event", "EventRelations"): ("EventRelation", "EventId"),
    ("CRM_Meeting_Session__c", "Participants__r"): ("CRM_Meeting_Participant__c", "Session__c"),
}


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token at: {text[position:][:30]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


@dataclass
class Cond:
    """``op`` is and/or (``parts``) or a comparison of ``path`` with ``value``."""

    op: str
    path: str = ""
    value: Any = None
    parts: list[Cond] = field(default_factory=list)


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Cond | None = None
    order: list[tuple[str, bool]] = field(default_factory=list)  # (path, descending)
    limit: int | None = None
    children: dict[str, Query] = field(default_factory=dict)  # relationship -> subquery


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def keyword(self, *words: str) -> bool:
        kind, text = self.peek()
        if kind == "word" and text.upper() in words:
            self.at += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> str:
        got_kind, got = self.peek()
        if got_kind != kind or (text is not None and got.upper() != text):
            raise SoqlError("MALFORMED_QUERY", f"expected {text or kind}, found {got!r}")
        self.at += 1
        return got

    def query(self, parent: str | None = None) -> Query:
        self.expect("word", "SELECT")
        fields: list[str] = []
        subqueries: list[Query] = []
        while True:
            if self.peek() == ("punct", "("):
                self.at += 1
                subqueries.append(self.query(parent="?"))
                self.expect("punct", ")")
            else:
                fields.append(self.expect("word"))
            if self.peek() != ("punct", ","):
                break
            self.at += 1
        self.expect("word", "FROM")
        query = Query(fields, self.expect("word"))
        query.children = {sub.sobject: sub for sub in subqueries}
        if self.keyword("WHERE"):
            query.where = self.disjunction()
        if self.keyword("ORDER"):
            self.expect("word", "BY")
            while True:
                path = self.expect("word")
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                query.order.append((path, descending))
                if self.peek() != ("punct", ","):
                    break
                self.at += 1
        if self.keyword("LIMIT"):
            query.limit = int(self.expect("number"))
        if parent is None and self.peek()[0] != "end":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {self.peek()[1]!r}")
        return query

    def disjunction(self) -> Cond:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Cond("or", parts=parts)

    def conjunction(self) -> Cond:
        parts = [self.atom()]
        while self.keyword("AND"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else Cond("and", parts=parts)

    def atom(self) -> Cond:
        if self.peek() == ("punct", "("):
            self.at += 1
            inner = self.disjunction()
            self.expect("punct", ")")
            return inner
        path = self.expect("word")
        negate = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.literal()]
            while self.peek() == ("punct", ","):
                self.at += 1
                values.append(self.literal())
            self.expect("punct", ")")
            return Cond("not in" if negate else "in", path, values)
        if negate:
            raise SoqlError("MALFORMED_QUERY", "NOT is only supported before IN")
        op = self.expect("op")
        return Cond("!=" if op == "<>" else op, path, self.literal())

    def literal(self) -> Any:
        kind, text = self.peek()
        self.at += 1
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "datetime":
            return parse_datetime(text)
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.upper() in ("TRUE", "FALSE", "NULL"):
            return {"TRUE": True, "FALSE": False, "NULL": None}[text.upper()]
        raise SoqlError("MALFORMED_QUERY", f"expected a value, found {text!r}")


def parse(text: str) -> Query:
    """Parse and check one SOQL statement against the emulator's objects."""
    query = _Parser(_tokens(text)).query()
    _check(query, None)
    return query


def _object(name: str) -> SObject:
    found = next((o for o in OBJECTS.values() if o.name.lower() == name.lower()), None)
    if found is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{name}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name.",
        )
    return found


def _named(names: Iterable[str], wanted: str) -> str | None:
    return next((n for n in names if n.lower() == wanted.lower()), None)


def _canonical(obj: SObject, path: str) -> str:
    """``path`` spelled as Salesforce spells it (SOQL names are case-insensitive)."""
    head, _, tail = path.partition(".")
    if not tail:
        field = _named(obj.fields, head)
        if field is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{head}' on entity '{obj.name}'.")
        return field
    relation = _named((r for o, r in PARENTS if o == obj.name), head)
    if relation is None:
        raise SoqlError("INVALID_FIELD", f"Didn't understand relationship '{head}' in field path.")
    target = PARENTS[(obj.name, relation)][1]
    if target is None:
        return f"{relation}.{tail}"
    field = _named(OBJECTS[target].fields, tail)
    if field is None:
        raise SoqlError("INVALID_FIELD", f"No such column '{tail}' on entity '{target}'.")
    return f"{relation}.{field}"


def _conditions(cond: Cond | None) -> Iterable[Cond]:
    if cond is None:
        return
    if cond.op in ("and", "or"):
        for part in cond.parts:
            yield from _conditions(part)
    else:
        yield cond


def _check(query: Query, parent: SObject | None) -> None:
    """Resolve the object and every path to Salesforce's spelling (or raise)."""
    if parent is not None:
        relation = _named((r for o, r in CHILDREN if o == parent.name), query.sobject)
        if relation is None:
            raise SoqlError("INVALID_TYPE", f"Didn't understand relationship '{query.sobject}'")
        query.sobject = relation
        obj = OBJECTS[CHILDREN[(parent.name, relation)][0]]
    else:
        obj = _object(query.sobject)
        query.sobject = obj.name
    query.fields = [_canonical(obj, path) for path in query.fields]
    for cond in _conditions(query.where):
        cond.path = _canonical(obj, cond.path)
    query.order = [(_canonical(obj, path), desc) for path, desc in query.order]
    subqueries = list(query.children.values())
    for sub in subqueries:
        _check(sub, obj)
    query.children = {sub.sobject: sub for sub in subqueries}


# --- running ------------------------------------------------------------------------


Lookup = Callable[[str], tuple[str, Row] | None]  # id -> (object, row)
Children = Callable[[str, str, str], list[Row]]  # (child object, field, parent id) -> rows


@dataclass(frozen=True, slots=True)
class Context:
    lookup: Lookup
    children: Children
    attributes: Callable[[str, str], dict[str, str]]  # (object, id) -> attributes
    value: Callable[[Any], Any]  # stored value -> JSON


def _getter(path: str, obj: str, ctx: Context) -> Callable[[Row], Any]:
    """Reads ``path`` (``Field`` or ``Parent.Field``) of a row; resolved once per query."""
    head, _, tail = path.partition(".")
    if not tail:
        return lambda row: row.get(head)
    ref_field, _ = PARENTS[(obj, head)]

    def parent_value(row: Row) -> Any:
        found = ctx.lookup(row.get(ref_field) or "")
        return found[1].get(tail) if found else None

    return parent_value


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    if isinstance(left, datetime) != isinstance(right, datetime):
        return False
    try:
        return bool(
            {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
        )
    except TypeError:
        return False


def _predicate(cond: Cond | None, obj: str, ctx: Context) -> Callable[[Row], bool]:
    """The WHERE clause as one test per row, built once per query (not once per row)."""
    if cond is None:
        return lambda row: True
    if cond.op in ("and", "or"):
        parts = [_predicate(part, obj, ctx) for part in cond.parts]
        if cond.op == "and":
            return lambda row: all(test(row) for test in parts)
        return lambda row: any(test(row) for test in parts)
    get, op, right = _getter(cond.path, obj, ctx), cond.op, cond.value
    if op in ("in", "not in"):
        inside = op == "in"
        return lambda row: any(_compare(get(row), "=", o) for o in right) == inside
    if op in ("=", "!=") and isinstance(right, str):  # text compares case-insensitively
        lowered, equal = right.lower(), op == "="
        return lambda row: (isinstance(v := get(row), str) and v.lower() == lowered) == equal
    return lambda row: _compare(get(row), op, right)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, datetime):
        return (1, value.timestamp())
    return (1, value)


def _select(query: Query, obj: str, rows: Iterable[Row], ctx: Context) -> list[Row]:
    test = _predicate(query.where, obj, ctx)
    chosen = [row for row in rows if test(row)]
    for path, descending in reversed(query.order):
        get = _getter(path, obj, ctx)
        chosen.sort(key=lambda row, get=get: _sort_key(get(row)), reverse=descending)  # type: ignore[misc]
    return chosen[: query.limit] if query.limit is not None else chosen


_Plan = list[tuple[str, str, str | None]]  # (output key, field, reference field or None)


def _plan(query: Query, obj: str) -> _Plan:
    """Where each selected field comes from: the row itself or the parent it references."""
    plan: _Plan = []
    for path in query.fields:
        head, _, tail = path.partition(".")
        plan.append((head, tail, PARENTS[(obj, head)][0]) if tail else (head, head, None))
    return plan


def _render(
    query: Query, obj: str, row: Row, ctx: Context, plans: dict[int, _Plan]
) -> dict[str, Any]:
    plan = plans.get(id(query))
    if plan is None:
        plan = plans[id(query)] = _plan(query, obj)
    out: dict[str, Any] = {"attributes": ctx.attributes(obj, row["Id"])}
    for key, name, ref_field in plan:
        if ref_field is None:
            out[key] = ctx.value(row.get(name))
            continue
        found = ctx.lookup(row.get(ref_field) or "")
        if found is None:
            out[key] = None
            continue
        parent = out.get(key) or {"attributes": ctx.attributes(found[0], found[1]["Id"])}
        parent[name] = ctx.value(found[1].get(name))
        out[key] = parent
    for relationship, sub in query.children.items():
        child_obj, ref_field = CHILDREN[(obj, relationship)]
        related = _select(sub, child_obj, ctx.children(child_obj, ref_field, row["Id"]), ctx)
        out[relationship] = (
            {
                "totalSize": len(related),
                "done": True,
                "records": [_render(sub, child_obj, r, ctx, plans) for r in related],
            }
            if related
            else None
        )
    return out


def run(query: Query, rows: Iterable[Row], ctx: Context) -> list[dict[str, Any]]:
    """The records ``query`` selects from ``rows`` (rows of ``query.sobject``), rendered."""
    plans: dict[int, _Plan] = {}  # the field plan of the query and of each subquery, once
    chosen = _select(query, query.sobject, rows, ctx)
    return [_render(query, query.sobject, row, ctx, plans) for row in chosen]
