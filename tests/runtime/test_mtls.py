"""mTLS between real sidecars: who may connect to a peer port (no certificate, another CA,
expired, another trust domain: refused, TLS 1.2 and 1.3, cleanly and logged), access
control by app id and operation, the caller's identity handed to the app, certificate
expiry in metadata and metrics, and rotation under load without a failed call."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from outrig.runtime.security import Authority, SpiffeId
from outrig.runtime.security.ca import cert_pem, key_pem, new_key, now
from tests.runtime.test_metrics import scrape
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar

ACCESS = """  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: front
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /items/**
        httpVerb: ["GET", "POST"]
        action: allow
      - name: /items/secret
        httpVerb: ["*"]
        action: deny
"""


FRONT_ID = "spiffe://public/ns/default/front"


def config(folder: Path, ttl: str = "24h", access: str = "") -> Path:
    path = folder / f"mtls-{ttl}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: mtls\nspec:\n"
        f"  mtls:\n    enabled: true\n    workloadCertTTL: {ttl}\n    allowedClockSkew: 1m\n{access}"
    )
    return path


@dataclass
class Mesh:
    ca: Path
    authority: Authority
    front: Sidecar
    back: Sidecar
    peer_port: int


def init_ca(folder: Path, trust_domain: str = "public") -> Path:
    """A CA made the way users make one: `outrig ca init`."""
    out = folder / f"ca-{trust_domain}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "outrig.runtime",
            "ca",
            "init",
            "--trust-domain",
            trust_domain,
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def internal_port(sidecar: Sidecar) -> int:
    return int(httpx.get(sidecar.url("/v1.0/metadata")).json()["extended"]["outrig.internalPort"])


def start_mesh(procs: Processes, tmp_path: Path, ttl: str = "24h", access: str = "") -> Mesh:
    ca = init_ca(tmp_path)
    args = ["--ca-dir", str(ca), "--config", str(config(tmp_path, ttl, access))]
    back = procs.sidecar_with_echo("back", extra_args=args)
    front = procs.sidecar("front", extra_args=args)
    return Mesh(ca, Authority.load(ca), front, back, internal_port(back))


@pytest.fixture
def mesh(procs: Processes, tmp_path: Path) -> Iterator[Mesh]:
    yield start_mesh(procs, tmp_path, access=ACCESS)


def client_cert(
    folder: Path,
    authority: Authority,
    identity: SpiffeId,
    ttl: dt.timedelta = dt.timedelta(hours=1),
    start: dt.datetime | None = None,
) -> Path:
    """A certificate + key file for a test client (the test's own file)."""
    key = new_key()
    certificate = authority.issue(identity, key.public_key(), ttl, start=start)
    path = folder / f"client-{certificate.serial_number:x}.pem"
    path.write_bytes(cert_pem(certificate) + cert_pem(authority.issuer) + key_pem(key))
    return path


def wait_for_output(sidecar: Sidecar, text: str, seconds: float = 15.0) -> str:
    """The sidecar's log once it holds `text` (polled, with a deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        log = sidecar.output()
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def tls_client(
    ca: Path, cert: Path | None, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.minimum_version = context.maximum_version = version
    context.load_verify_locations(ca / "root.crt")
    if cert is not None:
        context.load_cert_chain(cert)
    return context


def read_head(tls: ssl.SSLSocket) -> bytes:
    """One HTTP/1.1 response's status line and headers (lowercased), its body read past."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            return data.lower()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.lower()
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += tls.recv(65536)
    return head


def peer_get(
    port: int,
    ca: Path,
    cert: Path | None,
    version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    method: str = "items/1",
) -> tuple[str, int]:
    """GET an invocation straight on a peer port over TLS; (status line or the error, the
    serial of the certificate the server presented)."""
    context = tls_client(ca, cert, version)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        serial = x509.load_der_x509_certificate(der).serial_number
        try:
            tls.sendall(f"GET /v1.0/invoke/back/method/{method} HTTP/1.1\r\nHost: back\r\n\r\n".encode())
            reply = tls.recv(65536)
        except TimeoutError:
            raise  # a hang is a failure, not a refusal
        except (OSError, ssl.SSLError) as exc:
            return f"refused: {type(exc).__name__}: {exc}", serial
        return (reply.split(b"\r\n", 1)[0].decode() if reply else "refused: connection closed"), serial


def test_invocations_go_over_mtls_and_the_app_sees_the_callers_identity(mesh: Mesh) -> None:
    forged = {
        "outrig-caller-identity": "forged",
        "outrig_caller_identity": "forged",
        "dapr_caller_app_id": "x",
    }
    reply = httpx.get(mesh.front.invoke_url("back", "items/1"), headers=forged)
    assert reply.status_code == 200, reply.text
    headers = reply.json()["headers"]
    assert headers["outrig-caller-identity"] == "spiffe://public/ns/default/front"
    assert headers["dapr-caller-app-id"] == "front"
    assert "outrig_caller_identity" not in headers and "dapr_caller_app_id" not in headers
    # An app invoking itself through its sidecar cannot hand itself a verified identity either.
    own = httpx.get(mesh.back.invoke_url("back", "items/1"), headers=forged)
    assert own.status_code == 200, own.text
    headers = own.json()["headers"]
    assert "outrig-caller-identity" not in headers, headers
    assert "outrig_caller_identity" not in headers and "dapr_caller_app_id" not in headers
    assert headers["dapr-caller-app-id"] == "back"
    # The peer port speaks TLS only.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{mesh.peer_port}/v1.0/invoke/back/method/items/1", timeout=5)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_clients_without_a_valid_workload_certificate_are_refused(
    mesh: Mesh, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    front_id = SpiffeId("public", "default", "front")
    good = client_cert(tmp_path, mesh.authority, front_id)
    if version is ssl.TLSVersion.TLSv1_3:
        status, _ = peer_get(mesh.peer_port, mesh.ca, good, version)
        assert status == "HTTP/1.1 200 OK"
    else:  # sidecars speak TLS 1.3 only: even a good certificate gets nowhere over TLS 1.2
        with pytest.raises(ssl.SSLError):
            peer_get(mesh.peer_port, mesh.ca, good, version)

    other_ca = Authority.create("public")
    expired = client_cert(
        tmp_path, mesh.authority, front_id, dt.timedelta(minutes=1), start=now() - dt.timedelta(hours=2)
    )
    elsewhere = client_cert(tmp_path, mesh.authority, SpiffeId("elsewhere", "default", "front"))
    cases = {
        "no certificate": None,
        "another CA": client_cert(tmp_path, other_ca, front_id),
        "expired": expired,
        "another trust domain": elsewhere,
    }
    for case, cert in cases.items():
        try:
            status, _ = peer_get(mesh.peer_port, mesh.ca, cert, version)
        except ssl.SSLError as exc:  # TLS 1.2: the handshake itself fails
            status = f"refused in handshake: {exc}"
        except ConnectionError as exc:
            status = f"refused: {exc}"
        assert status.startswith("refused"), f"{case}: {status}"
    if version is ssl.TLSVersion.TLSv1_3:  # refused by outrig after the handshake, by name
        log = mesh.back.output()
        assert "refused peer connection" in log and "presented no certificate" in log
        assert "of trust domain 'elsewhere'" in log
    # Refused inside OpenSSL (expired, another CA, TLS 1.2): noticed by the handshake timer.
    assert "did not complete its TLS handshake" in wait_for_output(mesh.back, "did not complete its TLS")


def test_access_control_allows_and_denies_by_app_and_operation(
    procs: Processes, mesh: Mesh, tmp_path: Path
) -> None:
    allowed = httpx.post(mesh.front.invoke_url("back", "items/7"), content=b"x")
    assert allowed.status_code == 200, allowed.text
    disguised = (("items/%73ecret", "GET"), ("Items/SECRET", "GET"), ("items/x/%2e%2e/secret", "GET"))
    for method, verb in (("items/secret", "GET"), ("admin", "GET"), ("items/7", "DELETE"), *disguised):
        denied = httpx.request(verb, mesh.front.invoke_url("back", method))
        assert denied.status_code == 403, denied.text
        body = denied.json()
        assert body["errorCode"] == "ERR_DIRECT_INVOKE"
        assert (
            "access control policy has denied access to id: spiffe://public/ns/default/front"
            in body["message"]
        )
        assert f"operation: /{method} verb: {verb}" in body["message"]
    other = procs.sidecar("other", extra_args=["--ca-dir", str(mesh.ca), "--config", str(config(tmp_path))])
    assert httpx.get(other.invoke_url("back", "items/7")).status_code == 403

    trace_id = "ab" * 16
    httpx.get(mesh.front.invoke_url("back", "admin"), headers={"traceparent": f"00-{trace_id}-{'cd' * 8}-01"})
    spans = wait_for_spans(procs.home, trace_id, 3)
    server = next(s for s in spans if s.service == "back")
    assert server.attributes["outrig.peer.identity"] == "spiffe://public/ns/default/front"
    assert server.attributes["outrig.access.action"] == "deny"
    assert server.attributes["http.response.status_code"] == 403
    assert "access denied" in json.dumps(server.events)


def test_metadata_and_metrics_show_the_certificate_expiry(mesh: Mesh) -> None:
    extended = httpx.get(mesh.front.url("/v1.0/metadata")).json()["extended"]
    assert extended["outrig.mtls.spiffeId"] == "spiffe://public/ns/default/front"
    expiry = dt.datetime.fromisoformat(extended["outrig.mtls.certExpiry"])
    assert dt.timedelta(hours=23) < expiry - now() <= dt.timedelta(hours=24)
    values = [v for name, _, v in scrape(mesh.front) if name == "outrig_mtls_certificate_expiry_seconds"]
    assert len(values) == 1 and 23 * 3600 < values[0] <= 24 * 3600


def test_private_keys_are_0600_or_never_written(procs: Processes, tmp_path: Path) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {"TMPDIR": str(private_tmp)}
    # No --ca-dir: the sidecar creates the default CA in its home.
    cfg = ["--config", str(config(tmp_path, "4s"))]
    front = procs.sidecar("front", extra_args=cfg, env=env)
    procs.sidecar_with_echo("back", extra_args=cfg, env=env)
    time.sleep(3)  # past a renewal (at half of 4s)
    assert httpx.get(front.invoke_url("back", "items/1")).status_code == 200
    assert "renewed workload certificate" in front.output()
    # Every file under the test's folder (home, TMPDIR, logs) holding a private key.
    holders = [p for p in tmp_path.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(p.relative_to(procs.home).as_posix() for p in holders) == ["ca/issuer.key", "ca/root.key"]
    for path in holders:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((procs.home / "ca").stat().st_mode) == 0o700
    assert list(private_tmp.iterdir()) == []


def test_a_ca_of_another_trust_domain_than_access_control_names_is_refused_at_start(
    procs: Processes, tmp_path: Path
) -> None:
    ca = init_ca(tmp_path, "example.org")
    access = "  accessControl:\n    trustDomain: public\n"
    proc = subprocess.run(
        [sys.executable, "-m", "outrig.runtime", "run", "--app-id", "x", "--ca-dir", str(ca),
         "--config", str(config(tmp_path, access=access))],
        capture_output=True, text=True, timeout=60, env=procs.env(),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "accessControl.trustDomain" in proc.stderr and "example.org" in proc.stderr


def test_a_resumed_session_with_an_expired_client_certificate_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    """Session resumption does not re-verify the client's certificate in OpenSSL: the server
    issues no tickets, and outrig checks the dates on every connection."""
    front_id = SpiffeId("public", "default", "front")
    short = client_cert(tmp_path, mesh.authority, front_id, dt.timedelta(seconds=2))
    context = tls_client(mesh.ca, short)
    with (
        socket.create_connection(("127.0.0.1", mesh.peer_port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET /v1.0/invoke/back/method/items/1 HTTP/1.1\r\nHost: back\r\n\r\n")
        assert read_head(tls).startswith(b"http/1.1 200")
        session = tls.session
    expiry = x509.load_pem_x509_certificate(short.read_bytes()).not_valid_after_utc
    time.sleep(max(0.0, (expiry - now()).total_seconds()) + 0.5)
    with socket.create_connection(("127.0.0.1", mesh.peer_port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, session=session) as tls:
                assert not tls.session_reused
                tls.sendall(b"GET /v1.0/invoke/back/method/items/1 HTTP/1.1\r\nHost: back\r\n\r\n")
                reply = tls.recv(65536)
        except (ssl.SSLError, ConnectionError):
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 200"), reply


def test_the_peer_port_closes_connections_past_their_maximum_age(procs: Processes, tmp_path: Path) -> None:
    """4 s certificates: renewal, and the maximum connection age, every 2 s. A kept-alive
    connection is told `Connection: close` on its first request after that."""
    mesh = start_mesh(procs, tmp_path, ttl="4s")
    probe = client_cert(tmp_path, mesh.authority, SpiffeId("public", "default", "probe"))
    request = b"GET /v1.0/invoke/back/method/items/1 HTTP/1.1\r\nHost: back\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", mesh.peer_port), timeout=10) as raw,
        tls_client(mesh.ca, probe).wrap_socket(raw) as tls,
    ):
        tls.sendall(request)
        first = read_head(tls)
        assert first.startswith(b"http/1.1 200") and b"connection: close" not in first, first
        time.sleep(2.5)
        tls.sendall(request)
        second = read_head(tls)
        assert second.startswith(b"http/1.1 200") and b"connection: close" in second, second


def test_rotation_under_load_fails_no_call(procs: Processes, tmp_path: Path) -> None:
    """20 s certificates, 60 s of calls: renewals every 10 s, not one failed call, and the
    peer port serves at least three different certificates."""
    mesh = start_mesh(procs, tmp_path, ttl="20s")
    probe = client_cert(
        tmp_path, mesh.authority, SpiffeId("public", "default", "probe"), dt.timedelta(hours=1)
    )
    failures: list[str] = []
    calls = 0
    counted = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        nonlocal calls
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                reply = client.post(mesh.front.invoke_url("back", "items/1"), content=b"x" * 512)
                with counted:
                    calls += 1
                    if reply.status_code != 200:
                        failures.append(f"{reply.status_code} {reply.text}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    # A sidecar presents one certificate as server and as client (loaded into both contexts):
    # front's peer port shows the certificate front calls back with.
    front_port = internal_port(mesh.front)
    serials: list[int] = []
    front_serials: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            status, serial = peer_get(mesh.peer_port, mesh.ca, probe)
            assert status == "HTTP/1.1 200 OK", status
            serials.append(serial)
            front_serials.append(peer_get(front_port, mesh.ca, probe)[1])
            time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    with counted:
        assert not failures, failures[:5]
        assert calls > 100
    assert sum(1 for a, b in itertools.pairwise(serials) if a != b) >= 2, serials
    assert sum(1 for a, b in itertools.pairwise(front_serials) if a != b) >= 2, front_serials
    assert mesh.front.output().count("renewed workload certificate") >= 4


def test_a_missing_ca_folder_or_a_bad_lifetime_is_named_at_start(procs: Processes, tmp_path: Path) -> None:
    def start(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "outrig.runtime", "run", "--app-id", "x", *args],
            capture_output=True, text=True, timeout=60, env=procs.env(),
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        return proc.stderr

    missing = start("--ca-dir", str(tmp_path / "nowhere"), "--config", str(config(tmp_path)))
    assert f"no CA folder at {tmp_path / 'nowhere'}" in missing and "outrig ca init" in missing
    bad = start("--config", str(config(tmp_path, ttl="soon")))
    assert "spec.mtls.workloadCertTTL" in bad and "soon" in bad


def test_access_policies_without_mtls_are_warned_about_at_start(procs: Processes, tmp_path: Path) -> None:
    path = tmp_path / "no-mtls.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: plain\nspec:\n" + ACCESS
    )
    sidecar = procs.sidecar("back", extra_args=["--config", str(path)])
    log = wait_for_output(sidecar, "spec.mtls is not enabled")
    assert "spec.accessControl has app policies but spec.mtls is not enabled" in log
    assert "global defaultAction (deny)" in log
