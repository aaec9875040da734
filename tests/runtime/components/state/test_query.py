"""Dapr's alpha state query: parsing with precise errors, evaluation, and both embedded stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from outrig.runtime.components.state import MemoryStore, SqliteStore, Upsert
from outrig.runtime.components.state.query import (
    And,
    Compare,
    In,
    Or,
    Query,
    QueryError,
    QueryPage,
    SortKey,
    parse_query,
    run_query,
    supports_query,
)

# The employee records of Dapr's query how-to, keyed 1..10.
PEOPLE: dict[str, dict[str, Any]] = {
    "1": {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"},
    "2": {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"},
    "3": {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"},
    "4": {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"},
    "5": {"person": {"org": "Hardware", "id": 1007}, "city": "Los Angeles", "state": "CA"},
    "6": {"person": {"org": "Finance", "id": 1094}, "city": "Eugene", "state": "OR"},
    "7": {"person": {"org": "Dev Ops", "id": 1015}, "city": "San Francisco", "state": "CA"},
    "8": {"person": {"org": "Hardware", "id": 1077}, "city": "Redmond", "state": "WA"},
    "9": {"person": {"org": "Finance", "id": 1002}, "city": "San Diego", "state": "CA"},
    "10": {"person": {"org": "Dev Ops", "id": 1054}, "city": "New York", "state": "NY"},
}

DOCS_QUERY = {
    "filter": {
        "OR": [
            {"EQ": {"person.org": "Dev Ops"}},
            {"AND": [{"EQ": {"person.org": "Finance"}}, {"IN": {"state": ["CA", "WA"]}}]},
        ]
    },
    "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
    "page": {"limit": 3},
}


def rows(values: dict[str, Any], prefix: str = "app||") -> list[tuple[str, bytes, str]]:
    return [(prefix + key, json.dumps(value).encode(), f"etag-{key}") for key, value in values.items()]


def keys(page: QueryPage) -> list[str]:
    return [item.key for item in page.items]


def query(doc: Any, values: dict[str, Any] = PEOPLE) -> QueryPage:
    return run_query(parse_query(doc), rows(values), "app||")


# --- parsing ----------------------------------------------------------------------------


def test_the_docs_query_parses_into_typed_values() -> None:
    parsed = parse_query(DOCS_QUERY)
    assert parsed == Query(
        Or(
            (
                Compare("EQ", ("person", "org"), "Dev Ops"),
                And((Compare("EQ", ("person", "org"), "Finance"), In(("state",), ("CA", "WA")))),
            )
        ),
        (SortKey(("state",), descending=True), SortKey(("person", "id"))),
        limit=3,
        offset=0,
    )


@pytest.mark.parametrize("doc", [{}, {"filter": None}, {"filter": {}}, {"sort": None, "page": None}])
def test_an_empty_or_missing_filter_is_every_item(doc: Any) -> None:
    assert parse_query(doc) == Query()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([{"filter": {}}], "query: expected an object, got an array"),
        ({"pagination": {"limit": 3}}, "query: unknown field 'pagination' (expected filter, sort, page)"),
        ({"filter": []}, "query filter: a filter is an object"),
        (
            {"filter": {"EQ": {"a": 1}, "IN": {"b": [1]}}},
            "query filter: a filter has exactly one operator, got 2",
        ),
        (
            {"filter": {"OR": [{"EQ": {"a": 1}}, {"AND": [{"EQ": {"a": 1, "b": 2}}]}]}},
            'query filter.OR[1].AND[0]: EQ takes one {"path": value} pair, got 2',
        ),
        (
            {"filter": {"OR": [{"EQ": {"a": 1}}, {}]}},
            "query filter.OR[1]: a filter has exactly one operator, got 0",
        ),
        ({"filter": {"AND": []}}, "query filter: AND takes a non-empty array of filters, got an empty array"),
        (
            {"filter": {"OR": {"EQ": {"a": 1}}}},
            "query filter: OR takes a non-empty array of filters, got an object",
        ),
        ({"filter": {"LIKE": {"a": "x%"}}}, "query filter: unknown operator 'LIKE'"),
        ({"filter": {"EQ": "a"}}, 'query filter: EQ takes one {"path": value} pair, got a string'),
        ({"filter": {"EQ": {"": 1}}}, "query filter.EQ: a key must be a non-empty dotted path"),
        ({"filter": {"EQ": {"person..org": 1}}}, "query filter.EQ: key 'person..org' has an empty segment"),
        (
            {"filter": {"EQ": {"a": {"b": 1}}}},
            "query filter.EQ.a: EQ compares with a string, number, boolean or null",
        ),
        (
            {"filter": {"IN": {"state": "CA"}}},
            "query filter.IN: IN takes a non-empty array of values for 'state'",
        ),
        (
            {"filter": {"IN": {"state": []}}},
            "query filter.IN: IN takes a non-empty array of values for 'state'",
        ),
        (
            {"filter": {"IN": {"state": ["CA", ["WA"]]}}},
            "query filter.IN.state[1]: IN compares with a string",
        ),
        (
            {"filter": {"GT": {"age": None}}},
            "query filter.GT.age: GT compares with a string or a number, got null",
        ),
        ({"filter": {"LTE": {"age": True}}}, "query filter.LTE.age: LTE compares with a string or a number"),
        ({"sort": {"key": "a"}}, "query sort: expected an array of"),
        (
            {"sort": [{"key": "a"}, {"order": "DESC"}]},
            "query sort[1].key: a key must be a non-empty dotted path",
        ),
        (
            {"sort": [{"key": "a", "order": "desc"}]},
            'query sort[0].order: expected "ASC" or "DESC", got \'desc\'',
        ),
        ({"sort": [{"key": "a", "direction": "ASC"}]}, "query sort[0]: unknown field 'direction'"),
        ({"page": 3}, "query page: expected an object, got a number"),
        ({"page": {"limit": -1}}, "query page.limit: expected a whole number >= 0 (0: no limit), got -1"),
        ({"page": {"limit": "3"}}, "query page.limit: expected a whole number >= 0"),
        ({"page": {"limit": True}}, "query page.limit: expected a whole number >= 0"),
        (
            {"page": {"token": "abc"}},
            "query page.token: expected the token of a previous response, got 'abc'",
        ),
        ({"page": {"token": 3}}, "query page.token: expected the token of a previous response, got 3"),
    ],
)
def test_malformed_queries_say_what_is_wrong_and_where(doc: Any, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(doc)
    assert str(caught.value).startswith(message), str(caught.value)


# --- evaluation -------------------------------------------------------------------------


def test_the_docs_example_pages_through_in_order() -> None:
    first = query(DOCS_QUERY)
    assert (keys(first), first.token) == (["1", "4", "10"], "3")
    second = query({**DOCS_QUERY, "page": {"limit": 3, "token": first.token}})
    assert (keys(second), second.token) == (["9", "7", "3"], None)
    item = first.items[0]
    assert (item.etag, json.loads(item.value)) == ("etag-1", PEOPLE["1"])


def test_paging_walks_every_item_once_then_stops() -> None:
    seen: list[str] = []
    token: str | None = ""
    pages = 0
    while token is not None:
        page = query({"sort": [{"key": "person.id"}], "page": {"limit": 4, "token": token}})
        seen += keys(page)
        token = page.token
        pages += 1
    by_id = sorted(PEOPLE, key=lambda k: PEOPLE[k]["person"]["id"])
    assert (seen, pages) == (by_id, 3)
    assert keys(query({"page": {"limit": 5, "token": "5"}})) == sorted(PEOPLE)[5:]
    assert query({"page": {"limit": 5, "token": "5"}}).token is None, "no token when nothing is left"
    assert keys(query({"page": {"token": "99"}})) == []


def test_eq_in_and_or_nest() -> None:
    assert keys(query({"filter": {"EQ": {"state": "CA"}}})) == ["3", "5", "7", "9"]
    assert keys(query({"filter": {"IN": {"person.org": ["Hardware", "Finance"]}}})) == [
        "2",
        "3",
        "5",
        "6",
        "8",
        "9",
    ]
    both = {
        "AND": [{"EQ": {"state": "WA"}}, {"OR": [{"EQ": {"person.id": 1036}}, {"EQ": {"city": "Redmond"}}]}]
    }
    assert keys(query({"filter": both})) == ["1", "8"]
    assert keys(query({"filter": {"NEQ": {"state": "CA"}}})) == ["1", "10", "2", "4", "6", "8"]
    assert keys(query({"filter": {"GT": {"person.id": 1070}}})) == ["3", "6", "8"]
    assert keys(query({"filter": {"LTE": {"city": "Portland"}}})) == ["10", "2", "5", "6"]


def test_json_equality_and_missing_paths() -> None:
    values = {
        "int": {"n": 1},
        "float": {"n": 1.0},
        "bool": {"n": True},
        "text": {"n": "1"},
        "null": {"n": None},
        "deeper": {"n": {"m": 1}},
        "absent": {"other": 1},
        "scalar": 1,
        "list": [1],
    }
    assert keys(query({"filter": {"EQ": {"n": 1}}}, values)) == ["float", "int"], "true and '1' are not 1"
    assert keys(query({"filter": {"EQ": {"n": True}}}, values)) == ["bool"]
    assert keys(query({"filter": {"EQ": {"n": None}}}, values)) == ["null"]
    assert keys(query({"filter": {"EQ": {"n.m": 1}}}, values)) == ["deeper"]
    assert keys(query({"filter": {"GTE": {"n": 1}}}, values)) == ["float", "int"], (
        "numbers compare with numbers"
    )
    neq = keys(query({"filter": {"NEQ": {"n": 1}}}, values))
    assert neq == ["bool", "deeper", "null", "text"], "a missing path or a non-object matches nothing"
    assert len(query({}, values).items) == len(values), "but an empty filter returns every value"


def test_raw_values_that_are_not_json_are_returned_but_never_match() -> None:
    raw = [("app||blob", b"\x00\xff", "e1"), ("app||doc", b'{"a": 1}', "e2")]
    assert keys(run_query(parse_query({}), raw, "app||")) == ["blob", "doc"]
    assert keys(run_query(parse_query({"filter": {"EQ": {"a": 1}}}), raw, "app||")) == ["doc"]
    assert keys(run_query(parse_query({"sort": [{"key": "a", "order": "DESC"}]}), raw, "app||")) == [
        "doc",
        "blob",
    ]


def test_sort_is_multi_key_stable_and_puts_missing_keys_last() -> None:
    values = {
        "a": {"g": 2, "n": "x"},
        "b": {"g": 1, "n": "y"},
        "c": {"n": "z"},
        "d": {"g": 2, "n": "w"},
        "e": {"g": 1},
        "f": {"g": "text"},
        "h": {"g": None},
        "i": {"g": False},
    }
    asc = keys(query({"sort": [{"key": "g"}]}, values))
    assert asc == ["h", "b", "e", "a", "d", "f", "i", "c"], (
        "null < numbers < strings < booleans; ties in key order"
    )
    desc = keys(query({"sort": [{"key": "g", "order": "DESC"}]}, values))
    assert desc == ["i", "f", "a", "d", "b", "e", "h", "c"], "missing stays last when descending"
    two = keys(query({"sort": [{"key": "g", "order": "DESC"}, {"key": "n", "order": "ASC"}]}, values))
    assert two == ["i", "f", "d", "a", "b", "e", "h", "c"]


def test_only_the_prefix_counts_and_keys_come_back_without_it() -> None:
    mixed = [
        *rows({"k1": {"v": 1}}, prefix="app||"),
        *rows({"k2": {"v": 1}}, prefix="other||"),
        *rows({"k3": {"v": 1}}, prefix="apple||"),
        ("app||Actor||id||k", b'{"v": 1}', "e"),
        ("bare", b'{"v": 1}', "e"),
    ]
    assert keys(run_query(Query(), mixed, "app||")) == ["k1"]
    assert keys(run_query(Query(), mixed, "")) == ["bare"], (
        "keyPrefix none: keys with '||' are not this app's"
    )


# --- the stores -------------------------------------------------------------------------


@pytest.fixture(params=["state.in-memory", "state.sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore | SqliteStore]:
    made = MemoryStore() if request.param == "state.in-memory" else SqliteStore(tmp_path / "s.db")
    yield made
    await made.close()


async def test_a_store_queries_one_apps_live_keys(store: MemoryStore | SqliteStore) -> None:
    assert supports_query(store) and "QUERY_API" in store.features
    await store.apply(
        [
            *(Upsert(f"app||{k}", json.dumps(v).encode()) for k, v in PEOPLE.items()),
            Upsert("other||1", json.dumps(PEOPLE["1"]).encode()),
            Upsert("app|{", json.dumps(PEOPLE["1"]).encode()),  # either side of the "app||" range
            Upsert("app|}", json.dumps(PEOPLE["1"]).encode()),
            Upsert("app||soon-gone", json.dumps(PEOPLE["1"]).encode(), ttl_seconds=1),
        ],
        atomic=True,
    )
    dev_ops = parse_query({"filter": {"EQ": {"person.org": "Dev Ops"}}, "sort": [{"key": "person.id"}]})
    page = await store.query("app||", dev_ops)
    assert keys(page) == ["7", "1", "soon-gone", "4", "10"]
    stored = await store.get("app||7")
    assert stored is not None and page.items[0].etag == stored.etag and page.items[0].value == stored.value
    assert keys(await store.query("other||", dev_ops)) == ["1"]
    await asyncio.sleep(1.1)
    assert keys(await store.query("app||", dev_ops)) == ["7", "1", "4", "10"], "expired keys are not returned"
    paged = await store.query("app||", parse_query({"page": {"limit": 4, "token": "8"}}))
    assert (keys(paged), paged.token) == (["8", "9"], None)


async def test_any_prefix_selects_exactly_its_keys(store: MemoryStore | SqliteStore) -> None:
    # "\ud7ff" has no encodable successor, so SQLite matches by substr instead of a key range.
    for prefix in ("app||", "a\ud7ff", "é"):
        inside, outside = f"{prefix}k", f"{prefix[:-1]}{chr(ord(prefix[-1]) - 1)}k"
        beyond = f"{prefix[:-1]}\U0010ffff"
        await store.apply([Upsert(inside, b"1"), Upsert(outside, b"2"), Upsert(beyond, b"3")], atomic=False)
        assert keys(await store.query(prefix, Query())) == ["k"], prefix
