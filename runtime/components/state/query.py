"""Dapr's alpha state query language: parsed once into typed values, evaluated in Python.

A query (`POST /v1.0-alpha1/state/{store}/query`) is `{"filter", "sort", "page"}`, all
optional. Filter keys are dotted paths into the stored JSON value (`person.org`), as in
Dapr's docs and components-contrib's stores; `EQ`, `NEQ`, `GT`, `GTE`, `LT`, `LTE` and `IN`
compare one path, `AND` and `OR` combine a list of filters. The embedded stores (memory,
SQLite) hand their rows to `run_query`, so both answer a query the same way:

- only keys under the caller's prefix (`appid||`) count, returned without it; keys with a
  further `||` (actor state) are skipped, as Dapr's query API does not cover actor state;
- a value that is not a JSON object, or lacks the path, matches no comparison (NEQ
  included: "not equal" needs a value to compare), but an empty filter returns it;
- equality is JSON equality: `1 == 1.0`, but `true != 1` and `"1" != 1`; GT/GTE/LT/LTE only
  compare numbers with numbers and strings with strings;
- rows are taken in key order, then sorted stably by the `sort` keys (ASC unless "DESC");
  values of different JSON types order as null < numbers < strings < objects < arrays <
  booleans (MongoDB's order), and a row lacking a sort key comes last in either direction;
- the page token is the offset of the next row (as Dapr's stores make it), given only when
  rows remain. Like Dapr's, it does not pin a snapshot: writes between pages can shift rows.

Stricter than Dapr on purpose (Dapr ignores unknown fields, so a typo such as
`"pagination"` silently returns every row): unknown fields are errors, and every error
names the place in the query, e.g. `query filter.OR[1].AND[0]: EQ takes one ...`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeGuard, cast, runtime_checkable

from .base import Stored

SEPARATOR = "||"
"""Dapr's key scheme separator (`appid||key`); a key with one after the prefix is not app state."""

QUERY_FEATURE = "QUERY_API"

Scalar = str | int | float | bool | None
Path = tuple[str, ...]
CompareOp = Literal["EQ", "NEQ", "GT", "GTE", "LT", "LTE"]
_COMPARE_OPS: tuple[CompareOp, ...] = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE")
_ORDERED_OPS = frozenset({"GT", "GTE", "LT", "LTE"})


class QueryError(ValueError):
    """A query that cannot be run as written; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    path: Path
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    path: Path
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class And:
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    filters: tuple[Filter, ...]


Filter = Compare | In | And | Or


@dataclass(frozen=True, slots=True)
class SortKey:
    path: Path
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    filter: Filter | None = None
    sort: tuple[SortKey, ...] = ()
    limit: int | None = None
    """Rows per page; None (or Dapr's 0) for all of them."""
    offset: int = 0
    """Where this page starts: the decoded page token."""


@dataclass(frozen=True, slots=True)
class QueryPage:
    items: list[Stored]
    """Keys without the caller's prefix."""
    token: str | None = None
    """The next page's token; None when this page is the last."""


@runtime_checkable
class Queryable(Protocol):
    """A store that answers `run_query` over its rows under a key prefix."""

    async def query(self, prefix: str, query: Query) -> QueryPage: ...


def supports_query(store: object) -> TypeGuard[Queryable]:
    """Whether a store says it can query (Dapr's `QUERY_API` feature) and has the method."""
    return QUERY_FEATURE in getattr(store, "features", ()) and isinstance(store, Queryable)


# --- parsing ----------------------------------------------------------------------------


def _fail(where: str, problem: str) -> QueryError:
    return QueryError(f"query {where}: {problem}" if where else f"query: {problem}")


def _kind(value: Any) -> str:
    if value == []:
        return "an empty array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fields(doc: Any, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _fail(where, f"expected an object, got {_kind(doc)}")
    unknown = [name for name in doc if name not in allowed]
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (expected {', '.join(allowed)})")
    return doc


def parse_query(doc: Any) -> Query:
    """Validate a decoded JSON query body into a `Query`, or raise `QueryError`."""
    fields = _fields(doc, "", ("filter", "sort", "page"))
    raw_filter = fields.get("filter")
    parsed = None if raw_filter is None or raw_filter == {} else _parse_filter(raw_filter, "filter")
    limit, offset = _parse_page(fields.get("page"))
    return Query(parsed, _parse_sort(fields.get("sort")), limit, offset)


def _parse_path(raw: Any, where: str) -> Path:
    if not isinstance(raw, str) or not raw:
        raise _fail(where, f"a key must be a non-empty dotted path such as 'person.org', got {raw!r}")
    path = tuple(raw.split("."))
    if "" in path:
        raise _fail(where, f"key {raw!r} has an empty segment")
    return path


def _scalar(value: Any, where: str, op: str) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _fail(where, f"{op} compares with a string, number, boolean or null, got {_kind(value)}")


def _parse_filter(raw: Any, where: str) -> Filter:
    if not isinstance(raw, dict):
        raise _fail(where, f'a filter is an object such as {{"EQ": {{"path": value}}}}, got {_kind(raw)}')
    if len(raw) != 1:
        names = ", ".join(raw) or "nothing"
        raise _fail(where, f"a filter has exactly one operator, got {len(raw)} ({names})")
    op, operand = next(iter(raw.items()))
    if op in ("AND", "OR"):
        if not isinstance(operand, list) or not operand:
            raise _fail(where, f"{op} takes a non-empty array of filters, got {_kind(operand)}")
        children = tuple(_parse_filter(child, f"{where}.{op}[{i}]") for i, child in enumerate(operand))
        return And(children) if op == "AND" else Or(children)
    if op not in (*_COMPARE_OPS, "IN"):
        raise _fail(where, f"unknown operator {op!r} (expected EQ, NEQ, GT, GTE, LT, LTE, IN, AND or OR)")
    if not isinstance(operand, dict) or len(operand) != 1:
        got = f"{len(operand)}" if isinstance(operand, dict) else _kind(operand)
        raise _fail(where, f'{op} takes one {{"path": value}} pair, got {got}')
    key, value = next(iter(operand.items()))
    path = _parse_path(key, f"{where}.{op}")
    if op == "IN":
        if not isinstance(value, list) or not value:
            raise _fail(
                f"{where}.{op}", f"IN takes a non-empty array of values for {key!r}, got {_kind(value)}"
            )
        return In(path, tuple(_scalar(v, f"{where}.{op}.{key}[{i}]", op) for i, v in enumerate(value)))
    scalar = _scalar(value, f"{where}.{op}.{key}", op)
    if op in _ORDERED_OPS and (scalar is None or isinstance(scalar, bool)):
        raise _fail(f"{where}.{op}.{key}", f"{op} compares with a string or a number, got {_kind(scalar)}")
    return Compare(cast(CompareOp, op), path, scalar)


def _parse_sort(raw: Any) -> tuple[SortKey, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("sort", f'expected an array of {{"key": ..., "order": "ASC"|"DESC"}}, got {_kind(raw)}')
    keys = []
    for i, item in enumerate(raw):
        where = f"sort[{i}]"
        fields = _fields(item, where, ("key", "order"))
        order = fields.get("order")
        if order not in (None, "ASC", "DESC"):
            raise _fail(f"{where}.order", f'expected "ASC" or "DESC", got {order!r}')
        keys.append(SortKey(_parse_path(fields.get("key"), f"{where}.key"), order == "DESC"))
    return tuple(keys)


def _parse_page(raw: Any) -> tuple[int | None, int]:
    if raw is None:
        return None, 0
    fields = _fields(raw, "page", ("limit", "token"))
    limit = fields.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise _fail("page.limit", f"expected a whole number >= 0 (0: no limit), got {limit!r}")
    token = fields.get("token")
    offset = 0
    if token not in (None, ""):
        if not isinstance(token, str) or not token.isascii() or not token.isdigit():
            raise _fail("page.token", f"expected the token of a previous response, got {token!r}")
        offset = int(token)
    return limit or None, offset


# --- evaluation -------------------------------------------------------------------------

_MISSING: Any = object()


def _lookup(doc: Any, path: Path) -> Any:
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            return _MISSING
        doc = doc[name]
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Scalar) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _compare(op: CompareOp, found: Any, wanted: Scalar) -> bool:
    if found is _MISSING:
        return False
    if op == "EQ":
        return _json_equal(found, wanted)
    if op == "NEQ":
        return not _json_equal(found, wanted)
    comparable = (_is_number(found) and _is_number(wanted)) or (
        isinstance(found, str) and isinstance(wanted, str)
    )
    if not comparable:
        return False
    if op == "GT":
        return bool(found > wanted)
    if op == "GTE":
        return bool(found >= wanted)
    if op == "LT":
        return bool(found < wanted)
    return bool(found <= wanted)


def matches(flt: Filter, doc: Any) -> bool:
    """Whether a decoded JSON value satisfies a filter."""
    if isinstance(flt, Compare):
        return _compare(flt.op, _lookup(doc, flt.path), flt.value)
    if isinstance(flt, In):
        found = _lookup(doc, flt.path)
        return found is not _MISSING and any(_json_equal(found, v) for v in flt.values)
    if isinstance(flt, And):
        return all(matches(child, doc) for child in flt.filters)
    return any(matches(child, doc) for child in flt.filters)


def _rank(value: Any) -> tuple[int, Any]:
    """A key that orders JSON values of any type against each other (MongoDB's type order)."""
    if value is None:
        return 0, 0
    if isinstance(value, bool):
        return 5, value
    if _is_number(value):
        return 1, value
    if isinstance(value, str):
        return 2, value
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return (3 if isinstance(value, dict) else 4), text


def _sort(rows: list[tuple[Stored, Any]], keys: Sequence[SortKey]) -> list[tuple[Stored, Any]]:
    def cmp(a: tuple[Stored, Any], b: tuple[Stored, Any]) -> int:
        for key in keys:
            x, y = _lookup(a[1], key.path), _lookup(b[1], key.path)
            if x is _MISSING or y is _MISSING:
                if x is _MISSING and y is _MISSING:
                    continue
                return 1 if x is _MISSING else -1  # missing last, in either direction
            rx, ry = _rank(x), _rank(y)
            if rx != ry:
                order = -1 if rx < ry else 1
                return -order if key.descending else order
        return 0

    return sorted(rows, key=functools.cmp_to_key(cmp))


def _decode(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return _MISSING  # not JSON: matches no path, sorts as missing


def run_query(query: Query, rows: Iterable[tuple[str, bytes, str]], prefix: str) -> QueryPage:
    """Filter, sort and page `(full key, value, etag)` rows under `prefix` (e.g. `app||`).

    Stores pass live rows only (TTL-expired ones excluded); this drops rows outside the
    prefix itself, so a store may pass more than it has to.
    """
    found: list[tuple[Stored, Any]] = []
    for key, value, etag in rows:
        if not key.startswith(prefix):
            continue
        short = key[len(prefix) :]
        if SEPARATOR in short:
            continue
        doc = _decode(value)
        if query.filter is None or matches(query.filter, doc):
            found.append((Stored(short, value, etag), doc))
    found.sort(key=lambda row: row[0].key)
    if query.sort:
        found = _sort(found, query.sort)
    end = len(found) if query.limit is None else query.offset + query.limit
    token = str(end) if end < len(found) else None
    return QueryPage([stored for stored, _ in found[query.offset : end]], token)
