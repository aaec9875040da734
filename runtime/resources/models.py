"""Typed shapes of the Dapr resources outrig reads, validated with pydantic.

Only the fields outrig acts on are modelled; other Dapr fields are accepted and ignored
(listed in the log), so a Dapr Configuration loads unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Spec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OtelSpec(_Spec):
    endpointAddress: str  # noqa: N815 - Dapr's field names
    isSecure: bool = False  # noqa: N815
    protocol: Literal["grpc", "http"] = "grpc"


class TracingSpec(_Spec):
    samplingRate: float = Field(default=1.0, ge=0.0, le=1.0)  # noqa: N815
    otel: OtelSpec | None = None


class HandlerSpec(_Spec):
    name: str
    type: str


class PipelineSpec(_Spec):
    handlers: list[HandlerSpec] = Field(default_factory=list)


class MetricSpec(_Spec):
    """Dapr's `spec.metric`; `http` (increasedCardinality, pathMatching) and `rules` are
    accepted: outrig's labels are bounded already (route templates, capped targets)."""

    enabled: bool = True
    latencyDistributionBuckets: list[float] | None = Field(default=None, min_length=1)  # noqa: N815


class NameResolutionSpec(_Spec):
    component: str = "mdns"
    configuration: dict[str, Any] = Field(default_factory=dict)


class MtlsSpec(_Spec):
    """Dapr's `spec.mtls`; durations are Go durations ("24h", "15m"), checked where used."""

    enabled: bool = False
    workloadCertTTL: str = "24h"  # noqa: N815
    allowedClockSkew: str = "15m"  # noqa: N815
    controlPlaneTrustDomain: str = "cluster.local"  # noqa: N815
    sentryAddress: str = ""  # noqa: N815


Action = Literal["allow", "deny"]


class OperationPolicySpec(_Spec):
    """One operation rule: `name` is a path (`/op1`, `/ns/*`, `/**`), `httpVerb` the verbs."""

    name: str
    httpVerb: list[str] = Field(default_factory=lambda: ["*"])  # noqa: N815
    action: Action


class AppPolicySpec(_Spec):
    appId: str = Field(min_length=1)  # noqa: N815
    defaultAction: Action | None = None  # noqa: N815  (None: the global defaultAction, as Dapr)
    trustDomain: str = "public"  # noqa: N815
    namespace: str = "default"
    operations: list[OperationPolicySpec] = Field(default_factory=list)


class AccessControlSpec(_Spec):
    """Dapr's `spec.accessControl`, enforced by the callee's sidecar."""

    defaultAction: Action = "allow"  # noqa: N815
    trustDomain: str = "public"  # noqa: N815
    policies: list[AppPolicySpec] = Field(default_factory=list)


class SecretScopeSpec(_Spec):
    storeName: str = Field(min_length=1)  # noqa: N815
    defaultAccess: Action = "allow"  # noqa: N815
    allowedSecrets: list[str] = Field(default_factory=list)  # noqa: N815
    deniedSecrets: list[str] = Field(default_factory=list)  # noqa: N815


class SecretsSpec(_Spec):
    """Dapr's `spec.secrets`: which secrets of which store this app may read."""

    scopes: list[SecretScopeSpec] = Field(default_factory=list)


class ConfigurationSpec(_Spec):
    tracing: TracingSpec | None = None
    metric: MetricSpec | None = None
    nameResolution: NameResolutionSpec | None = None  # noqa: N815
    httpPipeline: PipelineSpec = Field(default_factory=PipelineSpec)  # noqa: N815
    appHttpPipeline: PipelineSpec = Field(default_factory=PipelineSpec)  # noqa: N815
    mtls: MtlsSpec | None = None
    accessControl: AccessControlSpec | None = None  # noqa: N815
    secrets: SecretsSpec | None = None


class SecretKeyRef(_Spec):
    """A metadata value read from a secret store at load: `name` the secret, `key` the
    entry in it (defaults to `name`, as Dapr's)."""

    name: str = Field(min_length=1)
    key: str = ""


class MetadataItem(_Spec):
    name: str
    value: Any = None
    secretKeyRef: SecretKeyRef | None = None  # noqa: N815


class ComponentSpec(_Spec):
    type: str
    version: str = "v1"
    metadata: list[MetadataItem] = Field(default_factory=list)


class Metadata(_Spec):
    name: str = Field(min_length=1)
    namespace: str | None = None


class ComponentAuth(_Spec):
    secretStore: str = Field(min_length=1)  # noqa: N815


class ComponentResource(_Spec):
    apiVersion: str  # noqa: N815
    kind: Literal["Component"]
    metadata: Metadata
    spec: ComponentSpec
    scopes: list[str] = Field(default_factory=list)
    auth: ComponentAuth | None = None
    """Where `secretKeyRef`s of this component are read (Dapr's default: `kubernetes`,
    which outrig has not; so a component with secretKeyRefs names its store here)."""

    def settings(self) -> dict[str, Any]:
        return {item.name: item.value for item in self.spec.metadata}


class ConfigurationResource(_Spec):
    apiVersion: str  # noqa: N815
    kind: Literal["Configuration"]
    metadata: Metadata
    spec: ConfigurationSpec = Field(default_factory=ConfigurationSpec)


class SubscriptionResource(_Spec):
    """`dapr.io/v2alpha1` (`spec.routes`) or `v1alpha1` (`spec.route`); the spec's fields
    are checked by `blocks.subscriptions.parse`, which knows routes and match rules."""

    apiVersion: str  # noqa: N815
    kind: Literal["Subscription"]
    metadata: Metadata
    spec: dict[str, Any]
    scopes: list[str] = Field(default_factory=list)


class ResiliencyResource(_Spec):
    """Dapr's `Resiliency`: `spec.policies` (timeouts, retries, circuitBreakers) and
    `spec.targets` (apps, components with inbound/outbound, actors). The policies' fields
    are checked when the policies are built, which names the policy and field."""

    apiVersion: str  # noqa: N815
    kind: Literal["Resiliency"]
    metadata: Metadata
    spec: dict[str, Any] = Field(default_factory=dict)
    scopes: list[str] = Field(default_factory=list)
