"""The HubSpot emulator's records: objects, property validation, associations, search.

Pure in-memory state with no HTTP: the routes in :mod:`.app` translate requests into
calls here and :class:`HubSpotApiError` into HubSpot's error body
(``{status, message, correlationId, category, errors?, context?}``).
"""

from __future__ import annotations

import bisect
import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from crm_meetings.sandbox.base import Rejections
from crm_meetings.sandbox.hubspot.schema import (
    OBJECT_TYPES,
    PropertyDef,
    association_type,
    canonical,
    object_properties,
)

__all__ = ["HubSpotApiError", "Record", "Store", "format_datetime", "parse_datetime"]

MAX_TEXT: Final = 65_536  # HubSpot's limit for a string property value
FILTER_OPERATORS: Final = frozenset(
    {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
     "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
)  # fmt: skip
MAX_FILTER_GROUPS: Final = 5
MAX_FILTERS: Final = 25
DEFAULT_SEARCH_PROPERTIES: Final = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")


class HubSpotApiError(Exception):
    """An error answer in HubSpot's format."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        context: Mapping[str, Sequence[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = list(errors)
        self.context = dict(context or {})
        self.sub_category = sub_category

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.sub_category:
            out["subCategory"] = self.sub_category
        if self.errors:
            out["errors"] = self.errors
        if self.context:
            out["context"] = self.context
        return out


def validation_error(message: str, **kw: Any) -> HubSpotApiError:
    return HubSpotApiError(400, "VALIDATION_ERROR", message, **kw)


@functools.lru_cache(maxsize=65_536)  # every record's createdAt/updatedAt, on every read
def format_datetime(value: datetime) -> str:
    """HubSpot's datetime format: ISO 8601 UTC with milliseconds."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> datetime | None:
    """A datetime property value: epoch milliseconds or ISO 8601; ``None`` when invalid."""
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def _number(value: str) -> Decimal | None:
    try:
        return Decimal(value)
    except (InvalidOperation, ValueError):
        return None


def _property_error(name: str, error: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": error, "name": name}


def _invalid_properties(problems: list[dict[str, Any]]) -> HubSpotApiError:
    """HubSpot's 400 for bad property values: the message embeds the per-property list."""
    return validation_error(
        f"Property values were not valid: {json.dumps(problems, separators=(',', ':'))}",
        errors=[
            {
                "message": p["message"],
                "code": p["error"],
                "context": {"propertyName": [p["name"]]},
            }
            for p in problems
        ],
    )


@dataclass
class Record:
    id: str
    object_type: str
    properties: dict[str, str]
    created: datetime
    updated: datetime
    archived: bool = False
    archived_at: datetime | None = None

    def to_json(self, wanted: Iterable[str] | None = None) -> dict[str, Any]:
        props = (
            dict(self.properties)
            if wanted is None
            else {name: self.properties.get(name) for name in wanted}
        )
        out: dict[str, Any] = {
            "id": self.id,
            "properties": props,
            "createdAt": format_datetime(self.created),
            "updatedAt": format_datetime(self.updated),
            "archived": self.archived,
        }
        if self.archived_at is not None:
            out["archivedAt"] = format_datetime(self.archived_at)
        return out


@dataclass
class Store:
    """Every object and association the emulated portal holds."""

    clock: Callable[[], datetime]
    records: dict[str, dict[str, Record]] = field(
        default_factory=lambda: {t.name: {} for t in OBJECT_TYPES}
    )
    # {(from_type, from_id, to_type, to_id)} in both directions
    links: set[tuple[str, str, str, str]] = field(default_factory=set)
    missing_properties: set[tuple[str, str]] = field(default_factory=set)
    reject_title: str | None = None
    rejections: Rejections | None = None  # the sandbox's field validation rules
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_id: int = 10_000_000_001
    # per object type, every record id as an int, ascending (ids only grow: appended)
    _order: dict[str, list[int]] = field(default_factory=dict)

    # --- object types and properties -----------------------------------------------

    def object_type(self, name: str) -> str:
        found = canonical(name)
        if found is None:
            raise validation_error(f"Unable to infer object type from: {name}")
        return found

    def properties(self, object_type: str) -> dict[str, PropertyDef]:
        return {
            name: prop
            for name, prop in object_properties(object_type).items()
            if (object_type, name) not in self.missing_properties
        }

    def _validate(
        self, object_type: str, values: Mapping[str, Any], *, creating: bool
    ) -> dict[str, str]:
        """Checked, normalised string values; raises HubSpot's 400 naming each property."""
        known = self.properties(object_type)
        problems: list[dict[str, Any]] = []
        out: dict[str, str] = {}
        if not isinstance(values, Mapping):
            raise validation_error("Invalid input JSON: properties must be an object")
        for name, raw in values.items():
            prop = known.get(name)
            if prop is None:
                problems.append(
                    _property_error(
                        name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                    )
                )
                continue
            if prop.read_only:
                problems.append(
                    _property_error(name, "READ_ONLY_VALUE", f'Property "{name}" is read-only')
                )
                continue
            text = "" if raw is None else str(raw)
            problem = self._check_value(prop, text)
            if problem:
                problems.append(_property_error(name, *problem))
                continue
            out[name] = self._normalise(prop, text)
        if self.rejections is not None:
            for name, rule in self.rejections.check("hubspot", object_type, out):
                problems.append(
                    _property_error(
                        name,
                        "INVALID_STRING",
                        rule.message or f"{out[name]!r} was rejected by a validation rule",
                    )
                )
        if object_type == "meetings":
            title = out.get("hs_meeting_title")
            if title is not None and self.reject_title is not None and title == self.reject_title:
                problems.append(
                    _property_error(
                        "hs_meeting_title", "INVALID_STRING", f"{title!r} was rejected by a rule"
                    )
                )
        if creating and object_type in ("meetings", "emails") and not out.get("hs_timestamp"):
            if object_type == "meetings" and out.get("hs_meeting_start_time"):
                out["hs_timestamp"] = out["hs_meeting_start_time"]
            else:  # the meetings and emails guides: hs_timestamp is required
                problems.append(
                    _property_error(
                        "hs_timestamp", "REQUIRED", f"hs_timestamp is required for {object_type}"
                    )
                )
        if problems:
            raise _invalid_properties(problems)
        return out

    @staticmethod
    def _check_value(prop: PropertyDef, text: str) -> tuple[str, str] | None:
        if text == "":
            return None
        if prop.type == "datetime" and parse_datetime(text) is None:
            return "INVALID_DATETIME", f"{text} was not a valid datetime for {prop.name}"
        if prop.type == "number" and _number(text) is None:
            return "INVALID_DECIMAL", f"{text} was not a valid number for {prop.name}"
        if prop.type == "enumeration" and text not in {v for v, _ in prop.options}:
            allowed = ", ".join(v for v, _ in prop.options)
            return (
                "INVALID_OPTION",
                f"{text} was not one of the allowed options: [{allowed}] for {prop.name}",
            )
        if len(text) > MAX_TEXT:
            return "INVALID_STRING", f"{prop.name} is {len(text)} characters; at most {MAX_TEXT}"
        return None

    @staticmethod
    def _normalise(prop: PropertyDef, text: str) -> str:
        if prop.type == "datetime" and text:
            parsed = parse_datetime(text)
            assert parsed is not None
            return format_datetime(parsed)
        return text

    def _unique_conflict(
        self, object_type: str, values: Mapping[str, str], own_id: str | None
    ) -> HubSpotApiError | None:
        for name, prop in self.properties(object_type).items():
            value = values.get(name)
            if not prop.unique or not value:
                continue
            existing = self.find_by(object_type, name, value)
            if existing is not None and existing.id != own_id:
                return HubSpotApiError(
                    409,
                    "CONFLICT",
                    f"A {object_type} record with {name}={value} already exists. "
                    f"Existing ID: {existing.id}",
                    context={"existingId": [existing.id], "propertyName": [name]},
                )
        return None

    # --- records ---------------------------------------------------------------------

    def find_by(self, object_type: str, prop: str, value: str) -> Record | None:
        return next(
            (
                r
                for r in self.records[object_type].values()
                if not r.archived and r.properties.get(prop) == value
            ),
            None,
        )

    def _check_id_property(self, object_type: str, id_property: str) -> None:
        """``idProperty`` names a unique-value property (objects API: "Read", "Upsert")."""
        prop = self.properties(object_type).get(id_property)
        if prop is None or not prop.unique:
            raise validation_error(
                f"{id_property} is not a unique property of {object_type}",
                context={"idProperty": [id_property]},
            )

    def get(self, object_type: str, record_id: str, *, id_property: str | None = None) -> Record:
        """The live record whose id (or unique ``id_property``) is ``record_id``; 404 when
        there is none or it is archived."""
        with self.lock:
            if id_property and id_property != "hs_object_id":
                self._check_id_property(object_type, id_property)
                found = self.find_by(object_type, id_property, record_id)
            else:
                found = self.records[object_type].get(record_id)
            if found is None or found.archived:
                raise HubSpotApiError(
                    404,
                    "OBJECT_NOT_FOUND",
                    "Object not found.  objectId are usually numeric.",
                    context={"id": [record_id]},
                )
            return found

    def create(self, object_type: str, values: Mapping[str, Any]) -> Record:
        with self.lock:
            checked = self._validate(object_type, values, creating=True)
            conflict = self._unique_conflict(object_type, checked, None)
            if conflict is not None:
                raise conflict
            return self._insert(object_type, checked)

    def _insert(self, object_type: str, checked: dict[str, str]) -> Record:
        now = self.clock()
        record_id = str(self._next_id)
        self._next_id += 1
        stamp = format_datetime(now)
        props = {
            **checked,
            "hs_object_id": record_id,
            "hs_createdate": stamp,
            "hs_lastmodifieddate": stamp,
        }
        record = Record(record_id, object_type, props, now, now)
        self.records[object_type][record_id] = record
        self._order.setdefault(object_type, []).append(int(record_id))
        return record

    def update(
        self,
        object_type: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        id_property: str | None = None,
    ) -> Record:
        with self.lock:
            record = self.get(object_type, record_id, id_property=id_property)
            checked = self._validate(object_type, values, creating=False)
            conflict = self._unique_conflict(object_type, checked, record.id)
            if conflict is not None:
                raise conflict
            self._apply(record, checked)
            return record

    def _apply(self, record: Record, checked: Mapping[str, str]) -> None:
        if all(record.properties.get(k) == v for k, v in checked.items()):
            return  # no change: HubSpot keeps the modification date
        now = self.clock()
        record.properties.update(checked)
        record.updated = now
        record.properties["hs_lastmodifieddate"] = format_datetime(now)

    def upsert(
        self, object_type: str, id_property: str, key: str, values: Mapping[str, Any]
    ) -> tuple[Record, bool]:
        """Update the record whose ``id_property`` is ``key``, or create it; ``(record, new)``."""
        with self.lock:
            self._check_id_property(object_type, id_property)
            existing = self.find_by(object_type, id_property, key)
            if existing is not None:
                return self.update(object_type, existing.id, values), False
            return self.create(object_type, {**values, id_property: key}), True

    def archive(self, object_type: str, record_id: str) -> None:
        with self.lock:
            record = self.records[object_type].get(record_id)
            if record is None or record.archived:
                return
            record.archived = True
            record.archived_at = self.clock()
            self.links = {
                link
                for link in self.links
                if (link[0], link[1]) != (object_type, record_id)
                and (link[2], link[3]) != (object_type, record_id)
            }

    def page(
        self, object_type: str, *, archived: bool, after: str | None, limit: int
    ) -> tuple[list[Record], str | None]:
        """The list endpoint: records by id, ``after`` is the last id seen.

        Walks the ids from ``after`` on (a bisection), so the work is the page's, not the
        portal's: ``limit`` + 1 matching records (plus the other-archived ones skipped).
        """
        with self.lock:
            ids = self._order.get(object_type, [])
            records = self.records[object_type]
            start = bisect.bisect_right(ids, int(after)) if after else 0
            chunk: list[Record] = []
            more = False
            for record_id in ids[start:] if start else ids:
                record = records[str(record_id)]
                if record.archived != archived:
                    continue
                if len(chunk) == limit:
                    more = True
                    break
                chunk.append(record)
        return chunk, (chunk[-1].id if more and chunk else None)

    # --- associations ----------------------------------------------------------------

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        with self.lock:
            self.get(from_type, from_id)
            self.get(to_type, to_id)
            if association_type(from_type, to_type) is None:
                raise validation_error(
                    f"{from_type} cannot be associated with {to_type}",
                    sub_category="crm.associations.INVALID_OBJECT_TYPE_COMBINATION",
                )
            self.links.add((from_type, from_id, to_type, to_id))
            self.links.add((to_type, to_id, from_type, from_id))

    def dissociate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        with self.lock:
            self.links.discard((from_type, from_id, to_type, to_id))
            self.links.discard((to_type, to_id, from_type, from_id))

    def associated(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        with self.lock:
            return sorted(
                (link[3] for link in self.links if link[:3] == (from_type, from_id, to_type)),
                key=int,
            )

    # --- search ----------------------------------------------------------------------

    def search(self, object_type: str, request: Mapping[str, Any]) -> list[Record]:
        """Every live record matching ``filterGroups`` (OR of ANDs), sorted by ``sorts``."""
        groups = request.get("filterGroups") or []
        if not isinstance(groups, list):
            raise validation_error("filterGroups must be a list")
        if len(groups) > MAX_FILTER_GROUPS:
            raise validation_error(
                f"Too many filter groups ({len(groups)}); at most {MAX_FILTER_GROUPS}"
            )
        if sum(len(g.get("filters") or []) for g in groups) > MAX_FILTERS:
            raise validation_error(f"Too many filters; at most {MAX_FILTERS} in total")
        known = self.properties(object_type)
        compiled = [
            [self._predicate(f, known) for f in g.get("filters") or []] for g in groups
        ]  # validated and parsed once per request, not once per record
        test = _any_of(compiled)
        sorts = request.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        keys = []
        for sort in sorts:
            name = sort.get("propertyName", "hs_object_id")
            prop = known.get(name)
            if prop is None:
                raise validation_error(f"Unknown sort property {name}")
            keys.append((prop, sort.get("direction", "ASCENDING") == "DESCENDING"))
        by_id = [(p.name, down) for p, down in keys] == [("hs_object_id", False)]
        with self.lock:
            records = self.records[object_type]
            ordered = (
                [records[str(i)] for i in self._order.get(object_type, [])]
                if by_id  # the ids are kept in order: no sort for the usual case
                else records.values()
            )
            rows = [r for r in ordered if not r.archived and test(r)]
        if not by_id:
            for prop, descending in reversed(keys):
                rows.sort(
                    key=lambda r, p=prop: _sort_key(p, r.properties.get(p.name)),  # type: ignore[misc]
                    reverse=descending,
                )
        return rows

    def _predicate(
        self, flt: Mapping[str, Any], known: dict[str, PropertyDef]
    ) -> Callable[[Record], bool]:
        """The test one filter makes of a record (raises HubSpot's 400 for a bad filter)."""
        name = str(flt.get("propertyName", ""))
        operator = str(flt.get("operator", "EQ"))
        if operator not in FILTER_OPERATORS:
            raise validation_error(f"Unknown filter operator {operator}")
        if name.startswith("associations."):
            target = canonical(name.split(".", 1)[1])
            if target is None:
                raise validation_error(f"Unknown association filter {name}")
            linked, value = operator == "EQ", str(flt.get("value", ""))
            return lambda r: (value in self.associated(r.object_type, r.id, target)) == linked
        prop = known.get(name)
        if prop is None:
            raise validation_error(
                f"There was a problem with the request: property {name} does not exist",
                context={"propertyName": [name]},
            )
        if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            present = operator == "HAS_PROPERTY"
            return lambda r: bool(r.properties.get(name)) == present
        if operator in ("IN", "NOT_IN"):
            values = {_sort_key(prop, str(v)) for v in flt.get("values") or []}
            inside = operator == "IN"
            return lambda r: (
                (bool(r.properties.get(name)) and _sort_key(prop, r.properties[name]) in values)
                == inside
            )
        test = _value_test(prop, operator, flt)
        absent = operator == "NEQ"  # a record without the property only "differs"

        def matches(record: Record) -> bool:
            actual = record.properties.get(name) or None
            return absent if actual is None else test(actual)

        return matches

    # --- inspection --------------------------------------------------------------------

    def snapshot(self, object_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r.to_json()
                for r in sorted(self.records[object_type].values(), key=lambda r: int(r.id))
                if not r.archived
            ]


def _any_of(groups: list[list[Callable[[Record], bool]]]) -> Callable[[Record], bool]:
    """``filterGroups`` as one test: OR of groups, AND of the filters inside a group."""
    if not groups:
        return lambda r: True
    if len(groups) == 1:
        tests = groups[0]
        return tests[0] if len(tests) == 1 else lambda r: all(t(r) for t in tests)
    return lambda r: any(all(t(r) for t in group) for group in groups)


_COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}


def _value_test(prop: PropertyDef, operator: str, flt: Mapping[str, Any]) -> Callable[[str], bool]:
    """The test of a present value: BETWEEN, (NOT_)CONTAINS_TOKEN or a comparison."""
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token, wanted = str(flt.get("value", "")).strip("*").lower(), operator == "CONTAINS_TOKEN"
        return lambda actual: (token in actual.lower()) == wanted
    want = _sort_key(prop, str(flt.get("value", "")))
    if operator == "BETWEEN":
        high = _sort_key(prop, str(flt.get("highValue", "")))
        return lambda actual: bool(want <= _sort_key(prop, actual) <= high)
    compare = _COMPARISONS[operator]

    def compared(actual: str) -> bool:
        try:
            return compare(_sort_key(prop, actual), want)
        except TypeError:  # a number against text
            return False

    return compared


def _sort_key(prop: PropertyDef, value: str | None) -> Any:
    """A comparable form of a property value (numbers and datetimes by value)."""
    if value is None or value == "":
        return (0, "")
    return _comparable(prop.type, prop.name == "email", value)


@functools.lru_cache(maxsize=65_536)
def _comparable(kind: str, email: bool, value: str) -> Any:
    """``_sort_key`` of a non-empty value, parsed once per distinct value: a search filters
    and sorts every record of the portal, and parsing dates per record dominated it."""
    if kind == "datetime":
        parsed = parse_datetime(value)
        return (1, parsed.timestamp()) if parsed else (2, value)
    if kind == "number":
        number = _number(value)
        return (1, number) if number is not None else (2, value)
    return (1, value.lower() if email else value)
