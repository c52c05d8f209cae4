"""Where a Service is reached: the seam between a webhook's ``clientConfig.service`` and an address.

kube-apiserver resolves a Service to its cluster IP (or endpoints). The embedded API server runs no Pods
and has no Services to route to, so by default a Service cannot be resolved and a webhook configured that
way fails its call (its ``failurePolicy`` decides). Cluster mode (issue 12's aggregation and agents) is to
plug in a resolver that maps a Service to an agent's address; tests map one to a local port with
:class:`StaticServices`. The TLS server name stays ``NAME.NAMESPACE.svc`` whatever the address, as
kube-apiserver verifies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ServiceUnavailable(LookupError):
    """The Service cannot be resolved to an address."""


class ServiceResolver(Protocol):
    def resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """(host, port) to connect to for ``port`` of Service ``namespace/name``; ServiceUnavailable if none."""
        ...


class NoServices:
    """Embedded mode: no Service is routable."""

    def resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        raise ServiceUnavailable(f'service "{namespace}/{name}" cannot be resolved: this API server routes to no '
                                 "Services (use clientConfig.url)")


@dataclass
class StaticServices:
    """A fixed map (namespace, name) → (host, port); the Service's own port is not used."""

    addresses: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)

    def resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        try:
            return self.addresses[(namespace, name)]
        except KeyError:
            raise ServiceUnavailable(f'service "{namespace}/{name}" not found') from None
