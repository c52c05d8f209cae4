"""CustomResourceDefinition side effects: accepted names and the Established condition.

kube-apiserver sets these asynchronously through controllers; k3c sets them in the same write that stores
the CRD, after registering the new types, so by the time anyone sees the CRD (its watch event, a GET)
its resources are already served and `kubectl wait --for condition=established` returns at once.
"""

from __future__ import annotations

from typing import Any

from k3c.apiserver.resources import ResourceType, from_crd
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.timefmt import now_rfc3339


def accepted_names(crd: dict[str, Any]) -> dict[str, Any]:
    names = dict(crd.get("spec", {}).get("names") or {})
    kind = names.get("kind", "")
    names.setdefault("singular", kind.lower())
    names.setdefault("listKind", kind + "List")
    return names


def _conflict(crd: dict[str, Any], registry: ResourceTypes) -> str:
    """A message when another CRD already serves this group's plural or kind, else ''."""
    spec = crd.get("spec", {})
    group, names = spec.get("group"), spec.get("names") or {}
    me = crd.get("metadata", {}).get("name")
    for t in registry.all():
        if t.group != group:
            continue
        if t.plural == names.get("plural") and f"{t.plural}.{t.group}" != me:
            return f'"{t.plural}" is already in use'
        if t.kind == names.get("kind") and f"{t.plural}.{t.group}" != me:
            return f'"{t.kind}" is already in use'
    return ""


def _condition(existing: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """Keep lastTransitionTime when nothing changed, so re-writing an unchanged CRD stays a no-op."""
    for c in existing:
        if c.get("type") == ctype and c.get("status") == status and c.get("reason") == reason:
            return c
    return {"type": ctype, "status": status, "lastTransitionTime": now_rfc3339(), "reason": reason,
            "message": message}


def prepare(crd: dict[str, Any], registry: ResourceTypes) -> None:
    """Fill in the CRD's status as the apiextensions controllers would (in place)."""
    status = crd.setdefault("status", {}) or {}
    crd["status"] = status
    existing = status.get("conditions") or []
    conflict = _conflict(crd, registry)
    if conflict:
        status["conditions"] = [
            _condition(existing, "NamesAccepted", "False", "NameConflict", conflict),
            _condition(existing, "Established", "False", "NotAccepted", "not all names are accepted"),
        ]
        status.setdefault("acceptedNames", {"plural": "", "kind": ""})
    else:
        status["acceptedNames"] = accepted_names(crd)
        status["conditions"] = [
            _condition(existing, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            _condition(existing, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted"),
        ]
    stored = list(status.get("storedVersions") or [])
    for v in crd.get("spec", {}).get("versions", []):
        if v.get("storage") and v.get("name") not in stored:
            stored.append(v["name"])
    status["storedVersions"] = stored


def established(crd: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )


def types_of(crd: dict[str, Any]) -> list[ResourceType]:
    return from_crd(crd)


def register(crd: dict[str, Any], registry: ResourceTypes) -> None:
    """Serve the CRD's types when its names were accepted; stop serving them otherwise."""
    name = crd.get("metadata", {}).get("name", "")
    if established(crd):
        registry.set_crd(name, crd)
    else:
        registry.remove_crd(name)
