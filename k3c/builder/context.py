"""Build contexts: a directory on the node, a git repository, or a tar the client uploaded.

Whatever the source, the builder gets a plain directory plus the path of the Dockerfile, and
:meth:`PreparedContext.cleanup` removes every temporary file made for it (a clone, an extracted upload, an
inline Dockerfile), whatever the outcome of the build.

- ``dir``: used in place (no copy, so a 50 MB context costs nothing); buildah applies its .dockerignore.
- ``git``: cloned into a temporary directory by :mod:`k3c.builder.gitcontext` (shallow where the server
  allows it, submodules included, ``.git`` removed; only https, http, ssh and git URLs unless the operator
  allows local ones, nothing that looks like an option, none of the node's git configuration).
  ``subPath`` selects a directory of the repository.
- ``upload``: ``<uploads>/<namespace>/<name>/<hex>.tar`` (written by the ``context`` subresource, see
  :mod:`k3c.builder.logs`), extracted by :mod:`k3c.untar` so no member can escape the directory or
  create devices.

The Dockerfile is ``spec.dockerfileInline`` (written beside, never inside, the context so ``COPY .`` does
not pick it up) or ``spec.dockerfile`` relative to the context; neither may point outside the context.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c import untar
from k3c.builder import gitcontext

__all__ = ["ContextError", "PreparedContext", "prepare_context", "upload_path"]

#: Where output lines of preparation (git) go: the build log.
LineSink = Callable[[str], None]


class ContextError(Exception):
    """The context cannot be prepared (missing directory, clone failure, bad upload): a build failure."""


@dataclass
class PreparedContext:
    """A directory for the builder, the Dockerfile to use, and what to remove afterwards."""

    dir: Path
    dockerfile: Path
    temp: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        """Remove every temporary directory made for this context (idempotent)."""
        for path in self.temp:
            shutil.rmtree(path, ignore_errors=True)
        self.temp.clear()


def upload_path(uploads: Path, namespace: str, name: str, digest: str) -> Path:
    """Where the ``context`` subresource stores an upload and the reconciler finds it."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise ContextError(f"invalid upload digest {digest!r}")
    return uploads / namespace / name / f"{hexpart}.tar"


async def prepare_context(
    spec: dict[str, Any], work_root: Path, uploads: Path, namespace: str, name: str, log: LineSink,
    allow_local_git: bool = False,
) -> PreparedContext:
    """Turn ``spec.context`` and the Dockerfile fields into a :class:`PreparedContext` under ``work_root``.

    ``allow_local_git``: whether a git context may be a ``file://`` URL or a path on the node (the
    operator's ``--allow-local-git-contexts``; the seam for a node policy)."""
    source = spec.get("context") or {}
    work_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=work_root))
    prepared = PreparedContext(dir=tmp, dockerfile=tmp, temp=[tmp])
    try:
        if "dir" in source:
            prepared.dir = _local_dir(source["dir"])
        elif "git" in source:
            prepared.dir = await _clone(source["git"] or {}, tmp / "src", log, allow_local_git)
        elif "upload" in source:
            path = upload_path(uploads, namespace, name, (source["upload"] or {}).get("digest", ""))
            prepared.dir = await asyncio.to_thread(_extract, path, tmp / "src")
        else:
            raise ContextError("spec.context needs one of dir, git or upload")
        prepared.dockerfile = _dockerfile(spec, prepared.dir, tmp)
    except BaseException:
        prepared.cleanup()
        raise
    return prepared


def _local_dir(path: str) -> Path:
    d = Path(path)
    if not d.is_absolute():
        raise ContextError(f"context dir {path!r} must be an absolute path on the node")
    if not d.is_dir():
        raise ContextError(f"context dir {path} does not exist on this node")
    return d


def _inside(base: Path, rel: str, what: str) -> Path:
    """``base/rel`` resolved, refusing anything that leaves ``base`` (``..``, absolute, symlinks out)."""
    target = (base / rel).resolve()
    root = base.resolve()
    if target != root and root not in target.parents:
        raise ContextError(f"{what} {rel!r} is outside the build context")
    return target


def _dockerfile(spec: dict[str, Any], context: Path, tmp: Path) -> Path:
    inline = spec.get("dockerfileInline")
    if inline:
        path = tmp / "Dockerfile.inline"
        path.write_text(inline)
        return path
    rel = spec.get("dockerfile") or "Dockerfile"
    path = _inside(context, rel, "dockerfile")
    if not path.is_file():
        raise ContextError(f"dockerfile {rel!r} not found in the build context")
    return path


# ---------------------------------------------------------------------------------------------- git


async def _clone(git: dict[str, Any], dest: Path, log: LineSink, allow_local: bool) -> Path:
    """The repository at ``git.ref`` (:mod:`k3c.builder.gitcontext` refuses what may reach the node),
    then ``subPath`` in it."""
    url, ref = git.get("url") or "", git.get("ref") or ""
    if not url:
        raise ContextError("spec.context.git.url is empty")
    try:
        await gitcontext.clone(url, ref, dest, log, allow_local)
    except gitcontext.GitError as err:
        raise ContextError(str(err)) from None
    sub = git.get("subPath") or ""
    context = _inside(dest, sub, "subPath") if sub else dest
    if not context.is_dir():
        raise ContextError(f"subPath {sub!r} is not a directory of {gitcontext.redact(url)}")
    return context


# ---------------------------------------------------------------------------------------------- upload


def _extract(archive: Path, dest: Path) -> Path:
    """The upload into ``dest`` by :mod:`k3c.untar` (nothing may leave it, no devices), with the members'
    modes kept: COPY copies modes into the image, so the same directory uploaded or on the node must build
    the same image. Owners are not set: COPY gives context files to root anyway. The directory is private
    (0700)."""
    if not archive.is_file():
        raise ContextError("the uploaded context is not on this node (upload it again: k3c build re-uploads)")
    dest.mkdir(parents=True)
    try:
        untar.extract_all(archive, dest, untar.Options(mode_mask=0o7777))
    except (ValueError, OSError) as err:
        raise ContextError(f"cannot extract the uploaded context: {err}") from None
    return dest
