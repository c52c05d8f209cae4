"""Where builds keep their files under k3c's root dir: logs, context uploads, temporary contexts.

Two processes share this layout: the operator (:mod:`k3c.reconcilers.imagebuilds`) writes the logs and
consumes the uploads, the API server's build subresources (:mod:`k3c.builder.logs`) stream the logs and
store the uploads. Its own module so the operator needs nothing of the subresources to find them.
"""

from __future__ import annotations

import os
from pathlib import Path


class BuildPaths:
    """Where build logs, uploads and temporary contexts live under k3c's root dir (shared with the operator)."""

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root = Path(root_dir).absolute() / "builds"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def log_file(self, uid: str) -> Path:
        return self.logs / f"{uid}.log"

    def upload_dir(self, namespace: str, name: str) -> Path:
        """``uploads/<namespace>/<name>``: both are object names (checked by the API server), never a path."""
        for part in (namespace, name):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise ValueError(f"not an object's namespace or name: {part!r}")
        return self.uploads / namespace / name
