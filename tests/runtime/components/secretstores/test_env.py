"""`secretstores.local.env`: names, prefix, Dapr's forbidden variables, bulk."""

from __future__ import annotations

import pytest

from outrig.runtime.components.secretstores import EnvSecretStore, SecretNotFoundError

ENV = {"DB_PASSWORD": "pw", "APP_DB_HOST": "h", "APP_API_TOKEN": "t", "DAPR_API_TOKEN": "d", "APP_": "x"}


def test_reads_a_variable_as_a_single_valued_secret() -> None:
    assert EnvSecretStore(environ=ENV).get("DB_PASSWORD", {}) == {"DB_PASSWORD": "pw"}


def test_a_variable_that_is_not_set_is_not_found_and_the_message_names_it() -> None:
    with pytest.raises(SecretNotFoundError, match="NOPE"):
        EnvSecretStore(environ=ENV).get("NOPE", {})


def test_the_api_tokens_are_never_handed_out() -> None:
    store = EnvSecretStore(environ=ENV)
    for name in ("APP_API_TOKEN", "DAPR_API_TOKEN"):
        with pytest.raises(SecretNotFoundError):
            store.get(name, {})
    assert "APP_API_TOKEN" not in store.bulk_get({}) and "DAPR_API_TOKEN" not in store.bulk_get({})


def test_prefix_is_added_when_reading_and_stripped_in_bulk() -> None:
    store = EnvSecretStore.create("env", {"prefix": "APP_"})
    store.environ = ENV
    assert store.get("DB_HOST", {}) == {"DB_HOST": "h"}
    assert store.bulk_get({}) == {"DB_HOST": {"DB_HOST": "h"}}
