"""manifests/ (installed as `k3c.manifests`, so `k3c install` finds the kustomize tree wherever k3c is
installed): the base and one overlay per node runtime."""

from pathlib import Path

DIR = Path(__file__).resolve().parent
#: The node runtimes an overlay exists for (manifests/overlays/NAME).
RUNTIMES = ("k3s", "containerd")


def overlay(runtime: str) -> Path:
    """The kustomization of nodes whose runtime is ``runtime`` (one of :data:`RUNTIMES`)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"no overlay for runtime {runtime!r}")
    return DIR / "overlays" / runtime
