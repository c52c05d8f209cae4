"""The CRD manifests (installed as `k3c.crds` so the daemon can apply them wherever k3c is installed)."""

from pathlib import Path

DIR = Path(__file__).resolve().parent


def manifests() -> list[Path]:
    return sorted(DIR.glob("*.yaml"))
