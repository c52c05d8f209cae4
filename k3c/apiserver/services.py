"""Where a Service is reached: the seam between a Service reference (a webhook's ``clientConfig.service``, an
APIService's ``spec.service``) and an address.

kube-apiserver resolves a Service to its cluster IP, or, with ``--enable-aggregator-routing`` (what a server
without kube-proxy in front needs), to one of its endpoints. The embedded API server has no kube-proxy, so it
routes the second way: :class:`EndpointsServices` reads the Service and its Endpoints from storage, picks the
Service port by number and the endpoint port of the same name, as kube's ``ResolveEndpoint`` does. A
Service nobody wrote Endpoints for cannot be resolved, and a webhook configured that way fails its call (its
``failurePolicy`` decides). Tests may map a Service to a local port with :class:`StaticServices` instead;
:class:`NoServices` routes nowhere. The TLS server name stays ``NAME.NAMESPACE.svc`` whatever the address, as
kube-apiserver verifies it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


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


#: reads one object: (resource plural of the core group, namespace, name) → the object, or None
ObjectReader = Callable[[str, str, str], Mapping[str, Any] | None]


@dataclass
class EndpointsServices:
    """Services resolved through their Endpoints, as kube-apiserver's endpoint routing resolves them."""

    read: ObjectReader

    def resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        service = self.read("services", namespace, name)
        if service is None:
            raise ServiceUnavailable(f'service "{name}" not found')
        spec = service.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("port") == port]
        if not ports:
            raise ServiceUnavailable(f'no service port {port} found for service "{name}"')
        if spec.get("type") == "ExternalName" and spec.get("externalName"):
            return str(spec["externalName"]), port
        endpoints = self.read("endpoints", namespace, name)
        if endpoints is None:
            raise ServiceUnavailable(f'endpoints "{name}" not found')
        port_name = ports[0].get("name") or ""
        for subset in endpoints.get("subsets") or []:
            for ep_port in subset.get("ports") or []:
                if (ep_port.get("name") or "") != port_name or not subset.get("addresses"):
                    continue
                address = random.choice(subset["addresses"])
                return str(address.get("ip", "")), int(ep_port.get("port", 0))
        raise ServiceUnavailable(f'no endpoints available for service "{name}"')
