"""The workload identity in one process: renewal, and the client's check of the server's app id."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from outrig.middleware import Call, Hop
from outrig.runtime.security import (
    Authority,
    CaError,
    PeerIdentityError,
    PeerVerifier,
    SpiffeConnector,
    SpiffeError,
    SpiffeId,
    WorkloadIdentity,
)
from outrig.runtime.security.ca import new_key, now
from outrig.runtime.security.peers import expected_app
from outrig.runtime.transport import ConnectFailedError, HttpTransport


def identity(app_id: str, authority: Authority, ttl: float = 20) -> WorkloadIdentity:
    return WorkloadIdentity(authority, SpiffeId("public", "default", app_id), dt.timedelta(seconds=ttl))


def test_renewal_makes_a_new_certificate_and_is_due_at_half_life() -> None:
    workload = identity("a", Authority.create("public"))
    first = workload.certificate
    assert 9 < workload.seconds_to_renewal() <= 10
    workload.renew()
    assert workload.certificate.serial_number != first.serial_number
    assert workload.certificate.public_key() != first.public_key()  # a new key each time
    assert workload.renewals == 1


async def _serve_and_call(server: WorkloadIdentity, client: WorkloadIdentity, expected: str) -> int:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server.server_context)
    port = tcp.sockets[0].getsockname()[1]
    connector = SpiffeConnector(client.verifier, ssl=client.client_context)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            token = expected_app.set(expected)
            try:
                async with session.get(f"https://127.0.0.1:{port}/") as response:
                    return response.status
            finally:
                expected_app.reset(token)
    finally:
        tcp.close()
        await tcp.wait_closed()


def test_the_client_accepts_only_the_sidecar_of_the_app_it_meant_to_call() -> None:
    authority = Authority.create("public")
    back, front = identity("back", authority), identity("front", authority)
    assert asyncio.run(_serve_and_call(back, front, "back")) == 200
    with pytest.raises(PeerIdentityError, match="not the sidecar of app 'orders'"):
        asyncio.run(_serve_and_call(back, front, "orders"))
    stranger = identity("back", Authority.create("public"))
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as failed:
        asyncio.run(_serve_and_call(stranger, front, "back"))
    assert isinstance(failed.value.certificate_error, ssl.SSLCertVerificationError)


class _KeepAliveServer:
    """A TLS server answering every request 200 on kept-alive connections; counts connections."""

    def __init__(self, workload: WorkloadIdentity) -> None:
        self.workload = workload
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _KeepAliveServer:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        self._server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=self.workload.server_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


def _call(target: str) -> Call:
    return Call("invoke", "invoke", target, "x", Hop.PEER, "/r", verb="GET")


def test_a_pooled_connection_verified_for_one_app_is_not_reused_for_another_at_the_same_address() -> None:
    authority = Authority.create("public")
    back, front = identity("back", authority), identity("front", authority)

    async def scenario() -> None:
        transport = HttpTransport(tls=(front.client_context, front.verifier))
        await transport.start()
        try:
            async with _KeepAliveServer(back) as server:
                first = await transport.send("127.0.0.1", server.port, "/x", _call("back"), "failed")
                assert first.status == 200
                with pytest.raises(ConnectFailedError, match="not the sidecar of app 'orders'"):
                    await transport.send("127.0.0.1", server.port, "/x", _call("orders"), "failed")
                again = await transport.send("127.0.0.1", server.port, "/x", _call("back"), "failed")
                assert again.status == 200
                assert server.connections == 2  # back's connection pooled and reused; one refused
        finally:
            await transport.close()

    asyncio.run(scenario())


def test_client_connections_are_not_reused_past_the_maximum_connection_age() -> None:
    authority = Authority.create("public")
    back, front = identity("back", authority), identity("front", authority)
    front.verifier.max_connection_age = 0.3

    async def scenario() -> int:
        transport = HttpTransport(tls=(front.client_context, front.verifier))
        await transport.start()
        try:
            async with _KeepAliveServer(back) as server:
                for _ in range(2):
                    assert (
                        await transport.send("127.0.0.1", server.port, "/x", _call("back"), "f")
                    ).status == 200
                assert server.connections == 1
                await asyncio.sleep(0.4)
                # The request that took the old connection puts it back no more: the next opens one.
                assert (
                    await transport.send("127.0.0.1", server.port, "/x", _call("back"), "f")
                ).status == 200
                assert (
                    await transport.send("127.0.0.1", server.port, "/x", _call("back"), "f")
                ).status == 200
                return server.connections
        finally:
            await transport.close()

    assert asyncio.run(scenario()) == 2


class _Presented:
    """What `PeerVerifier` reads from a TLS connection: the peer's DER certificate."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool) -> bytes:
        return self.der


def test_the_verifier_checks_validity_itself_so_a_resumed_session_cannot_outlive_its_certificate() -> None:
    authority = Authority.create("public")
    front = SpiffeId("public", "default", "front")
    verifier = PeerVerifier("public")

    def presented(start: dt.datetime, ttl: dt.timedelta) -> ssl.SSLObject:
        cert = authority.issue(front, new_key().public_key(), ttl, start=start)
        return _Presented(cert.public_bytes(Encoding.DER))  # type: ignore[return-value]

    assert verifier.verify(presented(now(), dt.timedelta(hours=1))) == front
    with pytest.raises(SpiffeError, match="expired at"):
        verifier.verify(presented(now() - dt.timedelta(hours=2), dt.timedelta(hours=1)))
    with pytest.raises(SpiffeError, match="not valid before"):
        verifier.verify(presented(now() + dt.timedelta(hours=1), dt.timedelta(hours=1)))


def test_an_issuer_near_its_end_is_warned_about_and_past_it_renewal_reports_once_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CA certificates start 5 minutes back: this issuer ends about 1.5 s from now.
    authority = Authority.create("public", issuer_ttl=dt.timedelta(minutes=5, seconds=1.5))
    with caplog.at_level(logging.WARNING, logger="outrig.security"):
        workload = WorkloadIdentity(authority, SpiffeId("public", "default", "a"), dt.timedelta(hours=1))
    assert "in less than one workloadCertTTL" in caplog.text and "outrig ca init --root-cert" in caplog.text
    # The certificate is cut short to the issuer's end; renewal does not follow its half-life.
    assert workload.expires_at == authority.issuer.not_valid_after_utc
    assert workload.seconds_to_renewal() > 50
    time.sleep(max(0.0, (authority.issuer.not_valid_after_utc - now()).total_seconds()) + 0.1)
    with pytest.raises(CaError, match=r"issuer expired at .*outrig ca init --root-cert"):
        workload.renew()
    caplog.clear()

    async def run_a_while() -> None:
        workload._issued_at = now() - dt.timedelta(hours=1)  # renewal overdue
        workload.start()
        await asyncio.sleep(1.6)  # attempts at 0 s and 1 s (then 2 s later)
        await workload.stop()

    with caplog.at_level(logging.DEBUG, logger="outrig.security"):
        asyncio.run(run_a_while())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, caplog.text
    assert "outrig ca init --root-cert" in errors[0].getMessage()
