"""kopf wiring: login, the operator's start-up and clean-up, and the watch handlers of the controllers the
process runs (:mod:`k3c.operator.images` and :mod:`k3c.operator.imagebuilds` for theirs). No logic here.

Only ``on.event`` handlers are used, on purpose: kopf's change-detecting handlers (on.create/update/delete)
store per-handler progress and the last-handled configuration in annotations, which costs API writes on
every change, and add kopf's own finalizer. The reconcilers are level-based and keep their own finalizer,
so the raw event is all they need, and it reaches them without a single extra round trip.
The handlers are ``async`` so kopf calls them in the event loop (sync ones would go to a thread pool).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import kopf

from k3c import kubeclient
from k3c.api import GROUP, LOCAL_CONTAINERS, NETWORKS, VERSION, VOLUMES
from k3c.operator import imagebuilds, images, nodepolicies
from k3c.reconcilers.assembly import Assembly
from k3c.reconcilers.webhooks import Webhooks


def build_registry(assembly: Assembly, webhooks: Webhooks | None = None) -> kopf.OperatorRegistry:
    """One registry for everything this operator process serves (``assembly.config.controllers``, and the
    NodePolicy objects its ``webhooks`` enforce)."""
    registry = kopf.OperatorRegistry()
    _life_cycle(registry, assembly)
    if webhooks is not None:
        nodepolicies.register(registry, webhooks)
    if assembly.config.runs("containers"):
        _containers_and_volumes(registry, assembly)
    if assembly.config.runs("images"):
        images.register(registry, assembly)
    if assembly.config.runs("builds"):
        imagebuilds.register(registry, assembly)
    return registry


def _life_cycle(registry: kopf.OperatorRegistry, assembly: Assembly) -> None:
    """Login, then the assembly's start and stop (kopf watches nothing before start-up is over)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return with_token_file(kopf.login_with_kubeconfig(**kwargs))

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        await assembly.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await assembly.stop()


def with_token_file(info: kopf.ConnectionInfo | None) -> kopf.ConnectionInfo | None:
    """kopf's kubeconfig login reads ``token`` only; a ServiceAccount kubeconfig (``k3c agent`` in a Pod)
    names a ``tokenFile`` the kubelet rotates: its current content is the token (kopf logs in again on a 401)."""
    if info is None:
        return None
    token = kubeclient.load(os.environ.get("KUBECONFIG")).bearer()
    return dataclasses.replace(info, token=token) if token and token != info.token else info


def _containers_and_volumes(registry: kopf.OperatorRegistry, assembly: Assembly) -> None:
    @kopf.on.event(GROUP, VERSION, LOCAL_CONTAINERS.plural, registry=registry)
    async def container_event(event: Mapping[str, Any], **_: Any) -> None:
        assembly.containers.observe(LOCAL_CONTAINERS.plural, event.get("type"), event["object"])

    @kopf.on.event(GROUP, VERSION, VOLUMES.plural, registry=registry)
    async def volume_event(event: Mapping[str, Any], **_: Any) -> None:
        assembly.containers.observe(VOLUMES.plural, event.get("type"), event["object"])

    @kopf.on.event(GROUP, VERSION, NETWORKS.plural, registry=registry)
    async def network_event(event: Mapping[str, Any], **_: Any) -> None:
        assembly.containers.observe(NETWORKS.plural, event.get("type"), event["object"])
