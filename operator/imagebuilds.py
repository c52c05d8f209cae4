"""kopf wiring of ImageBuild (and of this node's BuildCache): every watch event goes to
:class:`~k3c.reconcilers.imagebuilds.ImageBuildReconciler` (or :class:`~k3c.reconcilers.buildcaches.BuildCacheReconciler`).

Like the other handler files, only ``on.event`` is used (no kopf progress annotations, no kopf finalizer:
the reconciler keeps its own, and only while a build runs). Two ways in:

- the operator's ``build_registry`` calls :func:`register` with its registry and ``OperatorConfig``;
- ``python -m k3c.operator.imagebuilds`` runs the ImageBuild operator alone (tests and benchmarks), with
  settings from flags or the environment: ``K3C_KUBECONFIG``/``KUBECONFIG``, ``K3C_CONTAINERD_ADDRESS``,
  ``K3C_ROOT_DIR``, ``K3C_NODE_NAME``; ``K3C_BUILD_ENGINE`` (native, the default, or buildah) and
  ``K3C_BUILD_ISOLATION`` (buildah's: chroot, the default, or oci).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import kopf

from k3c.api import BUILD_CACHES, GROUP, IMAGE_BUILDS, VERSION
from k3c.builder.buildah import BuildahConfig, BuildahEngine
from k3c.builder.engine import Engine
from k3c.builder.native import NativeConfig, NativeEngine
from k3c.operator import running
from k3c.operator.running import run_registry
from k3c.reconcilers.buildcaches import BuildCacheReconciler
from k3c.reconcilers.imagebuilds import EnvSettings, ImageBuildReconciler, Settings


def default_engine(settings: Settings) -> Engine:
    """The native engine (``<root dir>/builder/native``), handing what it does not support to buildah
    (storage under ``<root dir>/builder``) when buildah is installed; ``K3C_BUILD_ENGINE=buildah`` uses
    buildah for every build."""
    buildah = None
    if shutil.which("buildah"):
        buildah = BuildahEngine(BuildahConfig(
            root=Path(settings.root_dir) / "builder", containerd_address=settings.containerd_address,
            isolation=os.environ.get("K3C_BUILD_ISOLATION", "chroot"),
        ))
    if os.environ.get("K3C_BUILD_ENGINE", "native") == "buildah" and buildah is not None:
        return buildah
    return NativeEngine(NativeConfig(root=Path(settings.root_dir) / "builder" / "native",
                                     containerd_address=settings.containerd_address), fallback=buildah)


def register(registry: kopf.OperatorRegistry, settings: Settings,
             engine: Engine | None = None) -> ImageBuildReconciler:
    """Add the ImageBuild handlers (start-up, clean-up, watch events) to ``registry``."""
    reconciler = ImageBuildReconciler(settings, engine or default_engine(settings))
    caches = BuildCacheReconciler(reconciler.engine, settings.node_name)
    reconciler.on_build_done = caches.refresh

    @kopf.on.startup(registry=registry)
    async def imagebuilds_startup(**_: Any) -> None:
        await reconciler.start()
        assert reconciler.kube is not None
        await caches.start(reconciler.kube)

    @kopf.on.cleanup(registry=registry)
    async def imagebuilds_cleanup(**_: Any) -> None:
        await caches.stop()
        await reconciler.stop()

    @kopf.on.event(GROUP, VERSION, BUILD_CACHES.plural, registry=registry)
    async def buildcache_event(event: dict[str, Any], **_: Any) -> None:
        if event.get("type") != "DELETED":
            caches.observe(event["object"])

    @kopf.on.event(GROUP, VERSION, IMAGE_BUILDS.plural, registry=registry)
    async def imagebuild_event(event: dict[str, Any], **_: Any) -> None:
        reconciler.observe(event.get("type"), event["object"])

    return reconciler


# ------------------------------------------------------------------------------------------ standalone


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = EnvSettings()
    p = argparse.ArgumentParser(prog="imagebuilds", description="k3c's ImageBuild operator on its own")
    p.add_argument("--kubeconfig", default=env.kubeconfig)
    p.add_argument("--containerd-address", default=env.containerd_address)
    p.add_argument("--node-name", default=env.node_name)
    p.add_argument("--root-dir", default=env.root_dir, type=Path)
    p.add_argument("--ready-file", type=Path, help="written once the operator is watching")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    os.environ["KUBECONFIG"] = args.kubeconfig  # for kopf's own login
    settings = EnvSettings(kubeconfig=args.kubeconfig, containerd_address=args.containerd_address,
                           node_name=args.node_name, root_dir=args.root_dir.absolute())
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    register(registry, settings)
    await run_registry(registry, args.ready_file)


def main(argv: list[str] | None = None) -> None:
    running.main(parse_args, run, argv)


if __name__ == "__main__":
    main()
