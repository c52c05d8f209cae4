"""A DELETE whose object changes while admission is asked (k3c.apiserver.rest): the latest is deleted.

Why it matters: `docker-compose down` removes a network right after its containers, while the operator is
still writing the Network's status; each such write landing during the admission call made the DELETE fail
with a 500 (a storage revision conflict) instead of marking the object terminating.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from k3c.apiserver import errors
from k3c.apiserver.admission import Admission, Attributes
from k3c.apiserver.resources import ResourceType
from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.rest import ResourceAPI, WriteOptions
from k3c.apiserver.storage import Store

WIDGETS = ResourceType(group="test.k3c.io", version="v1", kind="Widget", plural="widgets", namespaced=True)


class WritingAdmission(Admission):
    """Admission during which someone else writes the object ``writes`` times (a status update)."""

    def __init__(self, store: Store, registry: ResourceTypes, writes: int) -> None:
        super().__init__(store, registry)
        self.writes = writes

    async def validate(self, a: Attributes) -> list[str]:
        for _ in range(self.writes):
            cur = self.store.get(WIDGETS.key(a.namespace, a.name))
            assert cur is not None
            obj = {**cur.obj, "status": {"seen": cur.revision}}
            await self.store.update(WIDGETS.key(a.namespace, a.name), obj, expect=cur.revision)
        return []


def widget(name: str, finalizers: list[str]) -> dict[str, Any]:
    return {"apiVersion": "test.k3c.io/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "finalizers": finalizers}}


def delete(tmp_path: Path, finalizers: list[str], writes: int, preconditions: dict[str, Any] | None = None,
           ) -> tuple[dict[str, Any], Any]:
    async def run() -> tuple[dict[str, Any], Any]:
        store = Store(tmp_path / "state.db")
        try:
            api = ResourceAPI(store, ResourceTypes(), WritingAdmission(store, ResourceTypes(), writes))
            await store.create(WIDGETS.key("default", "w"), widget("w", finalizers))
            result = await api.delete(WIDGETS, "default", "w", WriteOptions(), preconditions)
            left = store.get(WIDGETS.key("default", "w"))
            return result.obj, left.obj if left else None
        finally:
            store.close()

    return asyncio.run(run())


def test_an_object_with_finalizers_is_marked_terminating_in_its_latest_version(tmp_path):
    answered, stored = delete(tmp_path, ["test/hold"], writes=2)
    assert stored["metadata"]["deletionTimestamp"] and stored["status"] == answered["status"]
    assert answered["status"]["seen"]  # the version written during admission, not the one read before


def test_an_object_without_finalizers_is_removed(tmp_path):
    answered, stored = delete(tmp_path, [], writes=1)
    assert stored is None and answered["status"]["seen"]


def test_a_precondition_the_change_broke_still_fails_with_409(tmp_path):
    with pytest.raises(errors.APIError) as err:
        delete(tmp_path, ["test/hold"], writes=1, preconditions={"resourceVersion": "1"})
    assert err.value.code == 409 and "Precondition failed" in err.value.message
