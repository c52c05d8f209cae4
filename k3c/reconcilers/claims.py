"""Node claims: how a node takes an object living on one node (a Volume, a Network), acts on it, lets it go.

An object is this node's when ``spec.nodeName`` names it or is empty, and ``status.node`` (the claim) names it
or is empty. The first operator to write ``status.node`` — with the object's resourceVersion, so two nodes
never both win — and to add the kind's finalizer holds it; a node that lost the race reads the object again
and lets it go. One rule for every such kind, so Volumes and Networks are placed alike, and one level-based
turn (:meth:`NodeClaim.reconcile`): the kind's reconciler says only how an object is made so and how it goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from k3c.apierrors import Conflict, NotFound
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.kube import Kube, Ref

#: One step of a kind's reconciler on an object it holds: the delay to its next turn (seconds; None: none).
Step = Callable[[dict[str, Any]], Awaitable[float | None]]
#: The kind's status record (a TypedDict of :mod:`k3c.reconcilers.statuses`).
S = TypeVar("S", bound=Mapping[str, Any])


@dataclass
class NodeClaim(Generic[S]):
    """The claim of one kind's objects by this node."""

    kube: Kube
    cache: ObjectCache
    schedule: Callable[[str, float], None]
    node: str
    finalizer: str
    ref: Callable[[dict[str, Any]], Ref]

    async def reconcile(self, uid: str, ensure: Step, finalize: Step) -> float | None:
        """One level-based turn of object ``uid``: nothing when it is not (or no longer) this node's;
        ``finalize`` when it is being deleted and still holds the kind's finalizer; else, once claimed,
        ``ensure``."""
        obj = self.cache.get(uid)
        if obj is None or not self.mine(obj):
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return await finalize(obj) if self.finalizer in (obj["metadata"].get("finalizers") or []) else None
        claimed = await self.claim(obj)
        return None if claimed is None else await ensure(claimed)

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

    async def release(self, obj: dict[str, Any]) -> bool:
        """Drop the kind's finalizer (the object may go). False on a conflict (to be tried again); the object
        being gone already is fine."""
        meta = obj["metadata"]
        fins = [f for f in meta.get("finalizers") or [] if f != self.finalizer]
        try:
            self.cache.put(await self.kube.merge_patch(
                self.ref(obj), {"metadata": {"finalizers": fins or None, "resourceVersion": meta["resourceVersion"]}}))
        except Conflict:
            return False
        except NotFound:
            pass
        return True

    async def write_status(self, obj: dict[str, Any], status: S) -> None:
        """Write the fields of ``status`` that differ from the object's (none: no write, so a level-based turn
        that changes nothing costs no event); an object gone meanwhile is fine."""
        current = obj.get("status") or {}
        diff = {k: v for k, v in status.items()
                if current.get(k) != v and not (k == "conditions" and same_conditions(current.get(k), v))}
        if not diff:
            return
        with contextlib.suppress(NotFound):
            self.cache.put(await self.kube.patch_status(self.ref(obj), diff))


def same_conditions(old: Any, new: Any) -> bool:
    """Conditions saying the same, whenever they were written (the transition time stays the first)."""
    def strip(cs: Any) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in cs or []]
    return strip(old) == strip(new)
