"""Turning `spec.mtls`, the CA folder and the namespace into the sidecar's workload identity.

Where the CA is: `--ca-dir`, else `$OUTRIG_CA_DIR`, else `$OUTRIG_HOME/ca`. Only the last,
the default, is created when missing (the first sidecar with mTLS on makes it, atomically,
so sidecars starting together agree on one CA); a folder named explicitly must exist.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from outrig.middleware.resiliency.durations import parse_duration

from .. import envvars
from ..options import SidecarOptions
from ..resources import Resources
from ..servers import StartupError
from .spiffe import SpiffeError, SpiffeId

if TYPE_CHECKING:
    from .workload import WorkloadIdentity

log = logging.getLogger("outrig.security")

DEFAULT_TRUST_DOMAIN = "public"
"""Dapr's default trust domain (`spec.accessControl.trustDomain`)."""
DEFAULT_NAMESPACE = "default"


def ca_folder(options: SidecarOptions) -> tuple[Path, bool]:
    """The CA folder, and whether it was named explicitly (flag or environment)."""
    if options.ca_dir is not None:
        return options.ca_dir, True
    named = os.environ.get(envvars.OUTRIG_CA_DIR)
    if named:
        return Path(named), True
    return options.home / "ca", False


def ensure_default_ca(folder: Path, trust_domain: str) -> None:
    """Create the default CA unless it exists; a sidecar that loses the race uses the winner's."""
    from .ca import Authority

    if folder.exists():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ca-", dir=folder.parent))
    try:
        Authority.create(trust_domain).save(staging)
        try:
            staging.rename(folder)
            log.info("created a CA for trust domain %r in %s (mTLS is on)", trust_domain, folder)
        except OSError:
            pass  # another sidecar created it first
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def workload_identity(options: SidecarOptions, resources: Resources) -> WorkloadIdentity | None:
    """The sidecar's identity when `spec.mtls.enabled`, else None."""
    config, doc = resources.configuration, resources.configuration_document
    mtls = config.spec.mtls if config else None
    if config is None or doc is None or mtls is None or not mtls.enabled:
        access = config.spec.accessControl if config else None
        if access is not None and access.policies:
            log.warning(
                "spec.accessControl has app policies but spec.mtls is not enabled: callers are not "
                "verified, so every caller gets the global defaultAction (%s) and no app policy applies; "
                "enable spec.mtls in the Configuration", access.defaultAction
                if "defaultAction" in access.model_fields_set else "deny",
            )  # fmt: skip
        return None
    # Only now: cryptography (~10 MB resident) is loaded when mTLS is on, never otherwise.
    from .ca import Authority, CaError
    from .workload import WorkloadIdentity

    durations = {}
    for name in ("workloadCertTTL", "allowedClockSkew"):
        value = getattr(mtls, name)
        try:
            durations[name] = dt.timedelta(seconds=parse_duration(value))
        except ValueError as exc:
            raise doc.error(("spec", "mtls", name), str(exc), value) from None
    if durations["workloadCertTTL"] <= dt.timedelta(seconds=1):
        hint = 'use at least "2s" (Dapr\'s default is "24h")'
        raise doc.error(
            ("spec", "mtls", "workloadCertTTL"), "too short a lifetime", mtls.workloadCertTTL, hint=hint
        )
    access = config.spec.accessControl
    configured = access.trustDomain if access and "trustDomain" in access.model_fields_set else None
    folder, explicit = ca_folder(options)
    try:
        if not explicit:
            ensure_default_ca(folder, configured or DEFAULT_TRUST_DOMAIN)
        authority = Authority.load(folder)
    except (CaError, SpiffeError) as exc:
        raise StartupError(f"mTLS is on but the CA cannot be used: {exc}") from None
    if configured is not None and configured != authority.trust_domain:
        raise doc.error(("spec", "accessControl", "trustDomain"),
                        f"differs from the trust domain of the CA in {folder} ({authority.trust_domain!r})",
                        configured, hint="use the CA's trust domain, or a CA made for this one")  # fmt: skip
    namespace = os.environ.get(envvars.NAMESPACE) or DEFAULT_NAMESPACE
    try:
        identity = SpiffeId.parse(str(SpiffeId(authority.trust_domain, namespace, options.app_id)))
    except SpiffeError as exc:
        raise StartupError(f"cannot make this sidecar's SPIFFE ID: {exc}") from None
    return WorkloadIdentity(authority, identity, durations["workloadCertTTL"], durations["allowedClockSkew"])
