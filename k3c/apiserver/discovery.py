"""Legacy discovery documents (/api, /apis, /apis/G, /apis/G/V) and /version.

Clients that ask for aggregated discovery (kubectl 1.30+) also accept the legacy form; answering with
plain `application/json` makes them fall back to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from k3c import __version__
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.resourcetypes import ResourceTypes

KUBE_VERSION = (1, 30)


def version() -> dict[str, Any]:
    major, minor = KUBE_VERSION
    return {
        "major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0+k3c{__version__}",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python3", "compiler": "k3c", "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def _all_groups(registry: ResourceTypes, aggregated: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The served groups' versions, with those of the aggregated group/versions (APIServices) added."""
    groups = {g: list(vs) for g, vs in registry.groups().items()}
    for group, versions in aggregated.items():
        groups.setdefault(group, []).extend(v for v in versions if v not in groups[group])
    return groups


def api_group_list(registry: ResourceTypes, aggregated: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in sorted(_all_groups(registry, aggregated or {}).items())]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceTypes, group: str,
              aggregated: Mapping[str, list[str]] | None = None) -> dict[str, Any] | None:
    versions = _all_groups(registry, aggregated or {}).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _storage_hash(t: ResourceType) -> str:
    return hashlib.sha256(f"{t.group}/{t.version}/{t.kind}".encode()).digest()[:8].hex()


def _resources(t: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
        "verbs": list(t.verbs), "storageVersionHash": _storage_hash(t),
    }
    if t.short_names:
        main["shortNames"] = list(t.short_names)
    if t.categories:
        main["categories"] = list(t.categories)
    out = [main]
    if t.has_status:
        out.append({"name": f"{t.plural}/status", "singularName": "", "namespaced": t.namespaced,
                    "kind": t.kind, "verbs": ["get", "patch", "update"]})
    for sub in t.extra_subresources:
        out.append({"name": f"{t.plural}/{sub}", "singularName": "", "namespaced": t.namespaced,
                    "kind": t.kind, "verbs": ["get", "create"]})
    return out


def resource_list(registry: ResourceTypes, group: str, version: str) -> dict[str, Any] | None:
    types = list(registry.in_group_version(group, version))
    if not types:
        return None
    gv = f"{group}/{version}" if group else version
    resources = [r for t in types for r in _resources(t)]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
