"""The state block's query handling: prefix scoping per keyPrefix, and stores that cannot query."""

from __future__ import annotations

import pytest

from outrig.middleware import Call, CallError, Hop, Pipeline
from outrig.runtime.blocks.state import QueryRequest, StateBlock, StoreEndpoint, StoreEntry
from outrig.runtime.components.state import MemoryStore, StateStore, Upsert
from outrig.runtime.components.state.query import Query, QueryPage


class PlainStore(MemoryStore):
    """A store without Dapr's QUERY_API feature."""

    features = frozenset({"ETAG", "TRANSACTIONAL", "TTL"})


def entry(name: str, store: StateStore, prefix: str) -> StoreEntry:
    return StoreEntry(name, "state.in-memory", store, Pipeline([], StoreEndpoint(store)), prefix)


def query_call(store: str) -> Call:
    return Call(
        block="state", operation="query", target=store, subject="", hop=Hop.APP_API,
        route="/v1.0-alpha1/state/{storeName}/query", request=QueryRequest(Query()),
    )  # fmt: skip


async def test_the_query_sees_the_apps_keys_by_its_key_prefix() -> None:
    shared = MemoryStore()
    await shared.apply([Upsert("app||a", b"1"), Upsert("other||b", b"2"), Upsert("c", b"3")], atomic=True)
    block = StateBlock({"mine": entry("mine", shared, "app"), "raw": entry("raw", shared, "")})
    mine = (await block(query_call("mine"))).value
    raw = (await block(query_call("raw"))).value
    assert isinstance(mine, QueryPage) and isinstance(raw, QueryPage)
    assert ([i.key for i in mine.items], [i.key for i in raw.items]) == (["a"], ["c"])


async def test_a_store_without_query_support_is_named_with_the_ones_that_have_it() -> None:
    block = StateBlock({
        "plain": entry("plain", PlainStore(), "app"),
        "cache": entry("cache", MemoryStore(), "app"),
        "statestore": entry("statestore", MemoryStore(), "app"),
    })  # fmt: skip
    with pytest.raises(CallError) as caught:
        await block(query_call("plain"))
    assert (caught.value.code, caught.value.status) == ("ERR_STATE_STORE_NOT_SUPPORTED", 500)
    assert caught.value.message == (
        "state store plain (state.in-memory) does not support querying"
        " (configured stores that do: cache, statestore)"
    )
