"""The live set of served resource types: built-ins plus whatever the stored CRDs declare.

Handlers look types up here by URL parts; discovery and OpenAPI render from here. It changes only when a
CRD is written, and it is updated *before* that CRD's watch event goes out, so a client that sees the CRD
established can use the new resource at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from k3c.apiserver.resources import BUILTINS, ResourceType, from_crd


class ResourceTypes:
    def __init__(self) -> None:
        self._by_crd: dict[str, list[ResourceType]] = {}
        self.generation = 0  # bumped on every change so cached documents know to re-render

    def all(self) -> list[ResourceType]:
        out = list(BUILTINS)
        for types in self._by_crd.values():
            out.extend(types)
        return out

    def set_crd(self, crd_name: str, crd: dict[str, Any]) -> None:
        self._by_crd[crd_name] = from_crd(crd)
        self.generation += 1

    def remove_crd(self, crd_name: str) -> None:
        if self._by_crd.pop(crd_name, None) is not None:
            self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for t in self.all():
            if t.group == group and t.version == version and t.plural == plural:
                return t
        return None

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [t for t in self.all() if t.group == group and t.plural == plural]

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions, preferred first (kube's version priority: v1 > v1beta1 > v1alpha1)."""
        out: dict[str, list[str]] = {}
        for t in self.all():
            if t.group and t.version not in out.setdefault(t.group, []):
                out[t.group].append(t.version)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}

    def in_group_version(self, group: str, version: str) -> Iterable[ResourceType]:
        return (t for t in self.all() if t.group == group and t.version == version)


def version_priority(v: str) -> tuple[int, int, int, str]:
    """Sort key: GA before beta before alpha, higher numbers first, non-kube names last alphabetically."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, v)
