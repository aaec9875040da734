"""The sidecar's workload certificate: issued locally, loaded into its TLS contexts,
renewed at half-life while connections keep running.

The key is made in this process and never written to a file system (see `keyfiles`);
each renewal makes a new key. A renewed certificate is loaded into the live contexts:
handshakes that start afterwards use it, established connections go on with the old one
(they were authenticated when they started), so no request fails across a rotation; they
end within about one renewal interval (`PeerVerifier.max_connection_age`).

Near the issuer's own end, certificates are cut short to it; renewals keep a floor on their
interval rather than following ever shorter half-lives, and once the issuer has expired
one ERROR says how to make a new one, then retries back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from cryptography import x509

from .ca import Authority, CaError, cert_pem, key_pem, new_key, now
from .keyfiles import load_chain
from .spiffe import SpiffeId
from .tls import PeerVerifier, client_context, server_context

log = logging.getLogger("outrig.security")

RETRY_AFTER = 1.0
"""Seconds before trying a failed renewal again (doubling up to RETRY_MAX)."""
RETRY_MAX = 300.0
MIN_RENEWAL_INTERVAL = 60.0
"""Renewals come at most this often (or every half TTL, if shorter), however short the
certificates get near the issuer's end."""
NEW_ISSUER = "outrig ca init --root-cert root.crt --root-key root.key --out NEWDIR"


class WorkloadIdentity:
    def __init__(
        self,
        authority: Authority,
        identity: SpiffeId,
        ttl: dt.timedelta,
        skew: dt.timedelta = dt.timedelta(0),
    ) -> None:
        self.authority = authority
        self.identity = identity
        self.ttl = ttl
        self.skew = skew
        root = cert_pem(authority.root)
        self.server_context = server_context(root)
        self.client_context = client_context(root)
        self.verifier = PeerVerifier(identity.trust_domain, max_connection_age=ttl.total_seconds() / 2)
        self.renewals = 0
        self.on_renew: list[Callable[[x509.Certificate], None]] = []
        self._issued_at = now()
        self._warn_if_issuer_ends_soon()
        self.certificate = self._issue()
        self._task: asyncio.Task[None] | None = None

    def _warn_if_issuer_ends_soon(self) -> None:
        ends = self.authority.issuer.not_valid_after_utc
        if ends - now() < self.ttl:
            log.warning(
                "the CA issuer expires at %s, in less than one workloadCertTTL (%s): workload certificates "
                "are cut short to it and, after it, every mTLS call fails. Make a new issuer under the "
                "same root now: `%s`, and point sidecars at NEWDIR", ends.isoformat(), self.ttl, NEW_ISSUER,
            )  # fmt: skip

    def _issue(self) -> x509.Certificate:
        issued_at = now()
        ends = self.authority.issuer.not_valid_after_utc
        if issued_at >= ends:
            raise CaError(
                f"the CA issuer expired at {ends.isoformat()}: no workload certificate can be issued, "
                "and mTLS calls fail once the current one ends. Make a new issuer under the same root: "
                f"`{NEW_ISSUER}`, point sidecars at NEWDIR and restart them"
            )
        key = new_key()
        certificate = self.authority.issue(self.identity, key.public_key(), self.ttl, self.skew, issued_at)
        chain = cert_pem(certificate) + cert_pem(self.authority.issuer)
        secret = key_pem(key)
        for context in (self.server_context, self.client_context):
            load_chain(context, chain, secret)
        self._issued_at = issued_at
        return certificate

    @property
    def expires_at(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def renew(self) -> None:
        self.certificate = self._issue()
        self.renewals += 1
        log.info("renewed workload certificate of %s: serial %x, expires %s", self.identity,
                 self.certificate.serial_number, self.expires_at.isoformat())  # fmt: skip
        for callback in self.on_renew:
            callback(self.certificate)

    def seconds_to_renewal(self) -> float:
        """Half of the certificate's life (from its issue, not its skewed start) is left; never
        sooner than the floor after the last issue (certificates cut short by the issuer's end)."""
        lifetime = (self.expires_at - self._issued_at).total_seconds()
        floor = min(self.ttl.total_seconds() / 2, MIN_RENEWAL_INTERVAL)
        due = self._issued_at + dt.timedelta(seconds=max(lifetime / 2, floor))
        return max(0.0, (due - now()).total_seconds())

    async def _run(self) -> None:
        delay = RETRY_AFTER
        reported = False
        while True:
            await asyncio.sleep(self.seconds_to_renewal())
            while True:
                try:
                    self.renew()
                except CaError as exc:
                    if not reported:
                        log.error("cannot renew the workload certificate of %s: %s", self.identity, exc)
                        reported = True
                except Exception:
                    if not reported:
                        log.exception(
                            "renewing the workload certificate of %s failed; retrying", self.identity
                        )
                        reported = True
                else:
                    delay, reported = RETRY_AFTER, False
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outrig-cert-rotation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
