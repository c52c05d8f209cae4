"""The Docker API's client of the API server (k3c/dockerapi/cluster.py) against a real `k3c apiserver`:
waits end as soon as the object changes, and a finished wait gives its connection back at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from k3c.api import CONFIG_MAPS
from k3c.dockerapi import cluster as cluster_module
from k3c.dockerapi.cluster import Cluster


def _config_map(name: str) -> dict[str, Any]:
    """(Any object will do: the plain API server has no CRDs.)"""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}


def _patch_later(c: Cluster, name: str, delay: float, value: str) -> asyncio.Task[Any]:
    async def later() -> None:
        await asyncio.sleep(delay)
        await c.merge_patch(CONFIG_MAPS, name, {"metadata": {"annotations": {"test/mark": value}}})

    return asyncio.get_running_loop().create_task(later())


def _marked(value: str) -> Any:
    return lambda o: o is not None and (o["metadata"].get("annotations") or {}).get("test/mark") == value


def test_waits_end_when_the_object_changes_and_free_their_connection(apiserver, monkeypatch) -> None:
    """More waits one after the other than the client has connections: a wait left holding its watch's
    connection would make a later one time out (as `docker run -d` did after 32 containers)."""
    monkeypatch.setattr(cluster_module, "CONNECTIONS", 3)

    async def scenario() -> list[float]:
        c = Cluster(apiserver.kubeconfig, namespace="default")
        try:
            await c.create(CONFIG_MAPS, _config_map("waited"))
            took = []
            for i in range(12):
                started = time.monotonic()
                change = _patch_later(c, "waited", 0.05, str(i))
                async with asyncio.timeout(10):
                    got = await c.wait_for(CONFIG_MAPS, "waited", _marked(str(i)), 10)
                await change
                assert got is not None and got["metadata"]["annotations"]["test/mark"] == str(i)
                took.append(time.monotonic() - started)
            await c.delete(CONFIG_MAPS, "waited")
            assert await c.wait_for(CONFIG_MAPS, "waited", lambda o: o is None, 10) is None
            return took
        finally:
            await c.close()

    took = asyncio.run(scenario())
    assert max(took) < 5, took  # (a leaked connection would have stalled a wait for the client's 30 s)


def test_a_wait_that_never_comes_true_times_out(apiserver) -> None:
    async def scenario() -> None:
        c = Cluster(apiserver.kubeconfig, namespace="default")
        try:
            await c.create(CONFIG_MAPS, _config_map("never"))
            with pytest.raises(TimeoutError):
                await c.wait_for(CONFIG_MAPS, "never", _marked("x"), 1.5)
            await c.delete(CONFIG_MAPS, "never")
        finally:
            await c.close()

    asyncio.run(scenario())
