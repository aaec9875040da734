"""`bindings.http`: verbs, `path`, headers out, status and headers back, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from outrig.runtime.components.bindings import BindingError, BindingRequest, BindingRequestError, HttpBinding
from outrig.runtime.components.metadata import MetadataError
from tests.support import free_port


async def echo(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/api/fail"):
        return web.Response(status=503, text="down")
    if request.path.startswith("/api/not-modified"):
        return web.Response(status=304)
    if request.path.startswith("/api/big"):
        size = int(request.query["size"])
        if "chunked" in request.query:
            stream = web.StreamResponse()
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            for _ in range(size // 1000):
                await stream.write(b"x" * 1000)
            await stream.write_eof()
            return stream
        return web.Response(body=b"x" * size)
    if request.path.startswith("/api/gzip"):
        zipped = web.Response(text="squeezed " * 100)
        zipped.enable_compression(web.ContentCoding.gzip)
        return zipped
    headers = dict(request.headers)
    body = {"method": request.method, "path": request.path_qs, "header": request.headers.get("x-tenant"),
            "body": (await request.read()).decode(), "headers": headers,
            "lower": request.headers.get("lower-key")}  # fmt: skip
    reply = web.json_response(body, headers={"x-served-by": "echo"})
    reply.headers.add("X-Many", "a")
    reply.headers.add("X-Many", "b")
    return reply


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/api"
    await runner.cleanup()


async def test_verbs_path_and_headers(base_url: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        got = await binding.invoke(BindingRequest("get", b"", {"path": "items/7?x=1", "X-Tenant": "acme"}))
        assert {k: v for k, v in json.loads(got.data).items() if k not in ("headers", "lower")} == {
            "method": "GET",
            "path": "/api/items/7?x=1",
            "header": "acme",
            "body": "",
        }
        assert got.metadata["statusCode"] == "200" and got.metadata["status"] == "200 OK"
        assert got.metadata["x-served-by"] == "echo"
        posted = await binding.invoke(BindingRequest("create", b'{"a":1}', {"path": "/items"}))
        assert json.loads(posted.data)["method"] == "POST" and json.loads(posted.data)["body"] == '{"a":1}'
        for verb in ("put", "patch", "delete", "options"):
            answer = await binding.invoke(BindingRequest(verb))
            assert json.loads(answer.data)["method"] == verb.upper()
        assert (await binding.invoke(BindingRequest("head"))).metadata["statusCode"] == "200"
    finally:
        await binding.close()


async def test_error_statuses_fail_unless_told_otherwise(base_url: str) -> None:
    strict = HttpBinding.create("web", {"url": base_url})
    lenient = HttpBinding.create("web", {"url": base_url, "errorIfNot2XX": "false"})
    try:
        with pytest.raises(BindingError, match="received status code 503"):
            await strict.invoke(BindingRequest("get", b"", {"path": "fail"}))
        answer = await lenient.invoke(BindingRequest("get", b"", {"path": "fail"}))
        assert answer.metadata["statusCode"] == "503" and answer.data == b"down"
    finally:
        await strict.close()
        await lenient.close()


async def test_an_unreachable_server_is_a_binding_error() -> None:
    binding = HttpBinding.create("web", {"url": f"http://127.0.0.1:{free_port()}"})
    try:
        with pytest.raises(BindingError, match=r"GET http://127\.0\.0\.1"):
            await binding.invoke(BindingRequest("get"))
    finally:
        await binding.close()


def test_url_is_required_and_checked() -> None:
    with pytest.raises(MetadataError, match="url is required"):
        HttpBinding.create("web", {})
    with pytest.raises(MetadataError, match="http:// or https://"):
        HttpBinding.create("web", {"url": "ftp://host/x"})


async def test_only_capitalised_metadata_keys_are_headers_with_dapr_defaults(base_url: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        got = json.loads((await binding.invoke(BindingRequest("get", b"", {"lower-key": "no"}))).data)
        assert got["lower"] is None and got["headers"]["Accept"] == "application/json; charset=utf-8"
        assert "Content-Type" not in got["headers"]
        posted = json.loads((await binding.invoke(BindingRequest("post", b"{}"))).data)
        assert posted["headers"]["Content-Type"] == "application/json; charset=utf-8"
        typed = await binding.invoke(BindingRequest("post", b"a", {"Content-Type": "text/plain"}))
        assert json.loads(typed.data)["headers"]["Content-Type"] == "text/plain"
        empty = json.loads((await binding.invoke(BindingRequest("put"))).data)
        assert empty["headers"]["Content-Type"] == "application/json; charset=utf-8"  # as Dapr
        deleted = json.loads((await binding.invoke(BindingRequest("delete", b"ignored"))).data)
        assert deleted["body"] == ""  # a body only for PUT, POST and PATCH, as Dapr
        many = await binding.invoke(BindingRequest("get"))
        assert many.metadata["X-Many"] == "a, b"
    finally:
        await binding.close()


async def test_error_if_not_2xx_per_request_and_for_any_non_2xx(base_url: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        with pytest.raises(BindingError, match="received status code 304"):
            await binding.invoke(BindingRequest("get", b"", {"path": "not-modified"}))
        answer = await binding.invoke(BindingRequest("get", b"", {"path": "fail", "errorIfNot2XX": "false"}))
        assert answer.metadata["statusCode"] == "503"
        lenient = await binding.invoke(BindingRequest("get", b"", {"path": "fail", "errorIfNot2XX": "no"}))
        assert lenient.metadata["statusCode"] == "503"  # Dapr's IsTruthy words
        with pytest.raises(BindingRequestError, match="errorIfNot2XX"):
            await binding.invoke(BindingRequest("get", b"", {"errorIfNot2XX": "maybe"}))
    finally:
        await binding.close()


async def test_security_token_header_is_sent(base_url: str) -> None:
    binding = HttpBinding.create(
        "web", {"url": base_url, "securityToken": "s3cr3t", "securityTokenHeader": "X-Token"}
    )
    try:
        got = json.loads((await binding.invoke(BindingRequest("get"))).data)
        assert got["headers"]["X-Token"] == "s3cr3t"
    finally:
        await binding.close()
    with pytest.raises(MetadataError, match="go together"):
        HttpBinding.create("web", {"url": base_url, "securityToken": "s3cr3t"})


@pytest.mark.parametrize("key", ["MTLSRootCA", "MTLSClientCert", "MTLSClientKey"])
def test_mutual_tls_is_refused_at_load(key: str) -> None:
    with pytest.raises(MetadataError, match=f"{key} .*not supported") as caught:
        HttpBinding.create("web", {"url": "https://host", key: "-----BEGIN"})
    assert "BEGIN" not in str(caught.value.value)


@pytest.mark.parametrize("path", ["../admin", "a/../../admin", "a/..", "..\\admin"])
async def test_a_path_cannot_leave_the_base_url(base_url: str, path: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        with pytest.raises(BindingRequestError, match=r"'\.\.' segment"):
            await binding.invoke(BindingRequest("get", b"", {"path": path}))
    finally:
        await binding.close()


async def test_a_header_with_cr_or_lf_is_a_request_error(base_url: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        with pytest.raises(BindingRequestError, match="X-Bad") as caught:
            await binding.invoke(BindingRequest("get", b"", {"X-Bad": "a\r\nX-Injected: 1"}))
        assert "Injected" not in str(caught.value)
    finally:
        await binding.close()


@pytest.mark.parametrize("chunked", [False, True])
async def test_response_bodies_are_capped(base_url: str, chunked: bool) -> None:
    binding = HttpBinding.create("web", {"url": base_url, "maxResponseBodySize": "10Ki"})
    query = "&chunked=1" if chunked else ""
    try:
        small = await binding.invoke(BindingRequest("get", b"", {"path": f"big?size=10000{query}"}))
        assert len(small.data) == 10000
        with pytest.raises(BindingError, match=r"larger than maxResponseBodySize \(10240 bytes\)"):
            await binding.invoke(BindingRequest("get", b"", {"path": f"big?size=20000{query}"}))
    finally:
        await binding.close()
    with pytest.raises(MetadataError, match="must be a size"):
        HttpBinding.create("web", {"url": base_url, "maxResponseBodySize": "lots"})


async def test_a_decompressed_answer_drops_its_encoding_headers(base_url: str) -> None:
    binding = HttpBinding.create("web", {"url": base_url})
    try:
        answer = await binding.invoke(BindingRequest("get", b"", {"path": "gzip"}))
        assert answer.data == b"squeezed " * 100
        assert not {"content-encoding", "content-length"} & {k.lower() for k in answer.metadata}
    finally:
        await binding.close()


async def test_errors_never_show_user_info_or_query() -> None:
    port = free_port()
    binding = HttpBinding.create("web", {"url": f"http://user:pa55word@127.0.0.1:{port}/api"})
    try:
        with pytest.raises(BindingError) as caught:
            await binding.invoke(BindingRequest("get", b"", {"path": "x?token=t0ken"}))
    finally:
        await binding.close()
    message = str(caught.value)
    assert f"GET http://127.0.0.1:{port}/api/x:" in message
    assert "pa55word" not in message and "t0ken" not in message and "user" not in message
