"""Node claims: how a node takes an object that lives on one node (a Volume, a Network) before acting on it.

An object is this node's when ``spec.nodeName`` names it or is empty, and ``status.node`` (the claim) names it
or is empty. The first operator to write ``status.node`` — with the object's resourceVersion, so two nodes
never both win — and to add the kind's finalizer holds it; a node that lost the race reads the object again
and lets it go. One rule for every such kind, so Volumes and Networks are placed alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k3c.apierrors import Conflict, NotFound
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.kube import Kube, Ref


@dataclass
class NodeClaim:
    """The claim of one kind's objects by this node."""

    kube: Kube
    cache: ObjectCache
    schedule: Callable[[str, float], None]
    node: str
    finalizer: str
    ref: Callable[[dict[str, Any]], Ref]

    def mine(self, obj: dict[str, Any]) -> bool:
        """Whether the object is (or may become) this node's."""
        wanted = obj.get("spec", {}).get("nodeName") or ""
        claimed = (obj.get("status") or {}).get("node") or ""
        return (not wanted or wanted == self.node) and (not claimed or claimed == self.node)

    async def claim(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object claimed (status ``node`` and phase Pending, the finalizer), or None when another node
        holds it or it changed meanwhile (then it is read again and reconciled anew)."""
        try:
            if not (obj.get("status") or {}).get("node"):
                obj = await self.kube.patch_status(self.ref(obj), {"node": self.node, "phase": "Pending"},
                                                   resource_version=obj["metadata"]["resourceVersion"])
                self.cache.put(obj)
            if self.finalizer not in (obj["metadata"].get("finalizers") or []):
                fins = [*(obj["metadata"].get("finalizers") or []), self.finalizer]
                obj = await self.kube.merge_patch(self.ref(obj), {"metadata": {
                    "finalizers": fins, "resourceVersion": obj["metadata"]["resourceVersion"]}})
                self.cache.put(obj)
        except (NotFound, Conflict):
            fresh = await self.kube.get(self.ref(obj))
            if fresh is not None:
                self.cache.put(fresh)
                self.schedule(fresh["metadata"]["uid"], 0.0)
            return None
        return obj if self.mine(obj) else None
