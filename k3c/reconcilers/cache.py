"""The operator's view of its objects: the newest version seen, from watch events or from its own writes.

A reconcile that just wrote an object must not act on the older copy a watch event delivers afterwards, so
every write's answer goes in here too, and a version older than the cached one is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _rv(obj: dict[str, Any]) -> int | None:
    rv = obj.get("metadata", {}).get("resourceVersion", "")
    return int(rv) if str(rv).isdigit() else None


def observe_by_name(objects: dict[str, dict[str, Any]], event_type: str | None, obj: dict[str, Any]) -> str:
    """Keep a by-name cache of cluster-scoped objects current with one watch event; returns the name.
    For the image reconcilers, whose objects are named after what they describe."""
    name: str = obj["metadata"]["name"]
    if event_type == "DELETED":
        objects.pop(name, None)
    else:
        objects[name] = obj
    return name


class ObjectCache:
    """Objects of one kind by uid."""

    def __init__(self) -> None:
        self._objs: dict[str, dict[str, Any]] = {}

    def put(self, obj: dict[str, Any]) -> bool:
        """Store ``obj`` unless a newer version is cached; True if stored."""
        uid = obj["metadata"]["uid"]
        old = self._objs.get(uid)
        if old is not None:
            new_rv, old_rv = _rv(obj), _rv(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return False
        self._objs[uid] = obj
        return True

    def get(self, uid: str) -> dict[str, Any] | None:
        return self._objs.get(uid)

    def pop(self, uid: str) -> dict[str, Any] | None:
        return self._objs.pop(uid, None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._objs.values()))

    def __len__(self) -> int:
        return len(self._objs)
