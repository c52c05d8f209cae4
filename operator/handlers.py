"""kopf wiring: watch LocalContainers and Volumes and hand every event to the controller. No logic here.

Only ``on.event`` handlers are used, on purpose: kopf's change-detecting handlers (on.create/update/delete)
store per-handler progress and the last-handled configuration in annotations, which costs API writes on
every change, and add kopf's own finalizer. The reconcilers are level-based and keep their own finalizer,
so the raw event is all they need, and it reaches them without a single extra round trip.
The handlers are ``async`` so kopf calls them in the event loop (sync ones would go to a thread pool).
"""

from __future__ import annotations

import importlib
from typing import Any

import kopf

from k3c.api import GROUP, LOCAL_CONTAINERS, VERSION, VOLUMES
from k3c.reconcilers.controller import Controller, OperatorConfig

#: Wiring of other resources, each with ``register(registry, config)``; skipped if not installed.
OTHER_WIRING = ("k3c.operator.images", "k3c.operator.imagebuilds")


def build_registry(controller: Controller, config: OperatorConfig | None = None) -> kopf.OperatorRegistry:
    """One registry for everything the operator serves: LocalContainers and Volumes here, the rest from
    :data:`OTHER_WIRING` (with the same ``config``)."""
    registry = kopf.OperatorRegistry()
    _containers_and_volumes(registry, controller)
    for name in OTHER_WIRING if config is not None else ():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(registry, config)
    return registry


def _containers_and_volumes(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """Login, the controller's start/stop, and the LocalContainer and Volume watch events."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        await controller.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await controller.stop()

    @kopf.on.event(GROUP, VERSION, LOCAL_CONTAINERS.plural, registry=registry)
    async def container_event(event: dict[str, Any], **_: Any) -> None:
        controller.observe(LOCAL_CONTAINERS.plural, event.get("type"), event["object"])

    @kopf.on.event(GROUP, VERSION, VOLUMES.plural, registry=registry)
    async def volume_event(event: dict[str, Any], **_: Any) -> None:
        controller.observe(VOLUMES.plural, event.get("type"), event["object"])
