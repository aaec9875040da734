"""Finding middleware types and validating their typed configuration."""

from __future__ import annotations

import pytest

from outrig.middleware import Call, Hop, PluginError, Result, plugins
from outrig.middleware.headers import Headers
from outrig.middleware.uppercase import Uppercase


def test_builtins_are_found_by_dapr_type_name() -> None:
    types = plugins.available_types()
    assert types["middleware.http.uppercase"] is Uppercase
    assert types["middleware.outrig.headers"] is Headers


def test_unknown_type_lists_what_is_known() -> None:
    with pytest.raises(PluginError, match=r"unknown middleware type 'middleware\.http\.nope'.*uppercase"):
        plugins.build("middleware.http.nope", {})


def test_missing_and_unknown_settings_are_named() -> None:
    with pytest.raises(PluginError, match="setting 'value': Field required") as missing:
        plugins.build("middleware.outrig.headers", {"requestHeader": "x"})
    assert missing.value.field == "value"
    with pytest.raises(PluginError, match="no setting 'colour'"):
        plugins.build("middleware.outrig.headers", {"requestHeader": "x", "value": "v", "colour": 1})


def test_setting_of_the_wrong_type_is_named_with_its_value() -> None:
    from dataclasses import dataclass

    @dataclass
    class Config:
        limit: int

    with pytest.raises(PluginError, match=r"setting 'limit'.*\(got 'many'\)") as bad:
        plugins.validate_config("demo", Config, {"limit": "many"})
    assert (bad.value.field, bad.value.value) == ("limit", "many")
    assert plugins.validate_config("demo", Config, {"limit": "5"}) == Config(5)


async def test_uppercase_upper_cases_the_body() -> None:
    middleware = plugins.build("middleware.http.uppercase", {})
    seen: list[bytes] = []

    async def endpoint(call: Call) -> Result:
        seen.append(await call.read())
        return Result()

    call = Call("invoke", "invoke", "b", "m", Hop.APP_API, "/r", body=b"hello")
    await middleware(call, endpoint)
    assert seen == [b"HELLO"]
