"""kopf wiring for Images, ImageTags and ImagePushes: every watch event goes to the image controller.

Two ways in:

- ``register(registry, config)``: what ``python -m k3c.operator`` calls with its own registry and the
  :class:`~k3c.reconcilers.controller.OperatorConfig` it built from its flags (``--kubeconfig``,
  ``--containerd-address``, ``--node-name``, ``--root-dir``);
- ``kopf run operator/images.py`` (standalone, e.g. against any cluster): the handlers register on kopf's
  default registry and read ``K3C_KUBECONFIG`` (else ``KUBECONFIG``), ``K3C_CONTAINERD_ADDRESS``,
  ``K3C_NODE_NAME``, ``K3C_ROOT_DIR`` and optionally ``K3C_CERTS_DIR`` (containerd's registry config_path)
  and ``K3C_IMAGES_READY_FILE`` (written once containerd's images are listed and watched).

Only ``on.event`` handlers, like operator/handlers.py: the reconcilers are level-based and keep their own
finalizer (``k3c.io/image``), so kopf's per-handler progress annotations and finalizer would only cost
writes.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import kopf

from k3c.api import DEFAULT_KUBECONFIG, DEFAULT_ROOT_DIR, GROUP, IMAGE_PUSHES, IMAGE_TAGS, IMAGES, VERSION
from k3c.reconcilers.imagecontroller import ImageController, ImageControllerConfig

PLURALS = (IMAGES.plural, IMAGE_TAGS.plural, IMAGE_PUSHES.plural)


def controller_for(config: Any) -> ImageController:
    """An image controller from an OperatorConfig-like object (kubeconfig, containerd_address, ...)."""
    return ImageController(ImageControllerConfig(
        kubeconfig=str(config.kubeconfig), containerd_address=str(config.containerd_address),
        node_name=config.node_name, root_dir=Path(config.root_dir),
        certs_dir=Path(config.certs_dir) if getattr(config, "certs_dir", None) else None,
    ))


def register(registry: kopf.OperatorRegistry | None, config: Any) -> ImageController:
    """Add the image handlers to ``registry`` (None: kopf's default registry); returns the controller."""
    controller = controller_for(config)
    reg: dict[str, Any] = {"registry": registry} if registry is not None else {}

    @kopf.on.startup(**reg)
    async def start_images(**_: Any) -> None:
        await controller.start()
        ready = os.environ.get("K3C_IMAGES_READY_FILE")
        if ready:  # standalone runs (tests) learn here that containerd's images have been listed
            Path(ready).write_text(f"{os.getpid()}\n")

    @kopf.on.cleanup(**reg)
    async def stop_images(**_: Any) -> None:
        await controller.stop()

    for plural in PLURALS:
        _watch(plural, controller, reg)
    return controller


def _watch(plural: str, controller: ImageController, reg: dict[str, Any]) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"k3c-{plural}", **reg)
    async def on_event(event: dict[str, Any], **_: Any) -> None:  # async: runs in the loop, not a thread
        controller.observe(plural, event.get("type"), event["object"])


def config_from_env() -> ImageControllerConfig:
    """Settings of the standalone mode, from K3C_* environment variables."""
    kubeconfig = os.environ.get("K3C_KUBECONFIG") or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    return ImageControllerConfig(
        kubeconfig=kubeconfig,
        containerd_address=os.environ.get("K3C_CONTAINERD_ADDRESS", "/run/k3c/containerd/containerd.sock"),
        node_name=os.environ.get("K3C_NODE_NAME") or socket.gethostname(),
        root_dir=Path(os.environ.get("K3C_ROOT_DIR", DEFAULT_ROOT_DIR)),
        certs_dir=Path(os.environ["K3C_CERTS_DIR"]) if os.environ.get("K3C_CERTS_DIR") else None,
    )


if __name__ not in ("k3c.operator.images", "__main__"):  # loaded as a file by `kopf run`
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per handled event
    register(None, config_from_env())
