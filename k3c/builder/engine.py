"""The builder interface: one request in, one image in containerd out, step lines streamed on the way.

Why an interface at all: there are two engines, and room for more without touching the reconciler, which
only knows :class:`Engine`: the native one (:mod:`k3c.builder.native`, steps run directly on containerd
snapshots, the default) and buildah (:mod:`k3c.builder.buildah`, the fallback for what the native one does
not support). A buildkit engine (buildkitd with a containerd worker) could be a third.

An engine's contract:

- :meth:`Engine.build` runs the build from :class:`BuildRequest` and leaves the image in containerd's
  ``k8s.io`` namespace under every tag (or, with no tags, under its ID so CRI still knows it);
- every output line goes to ``observer.line`` as it happens, and every step start to ``observer.step``;
- a failure raises :class:`BuildFailed` (with the step and the exit code when a step failed);
- cancelling the coroutine stops the build at once and removes whatever it had made (processes, build
  containers, temporary files); nothing is tagged unless the build completed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

__all__ = ["BuildFailed", "BuildObserver", "BuildRequest", "BuildResult", "Engine", "finish_anyway", "replay_steps"]


@dataclass
class BuildRequest:
    """Everything an engine needs; paths are on this node, tags already normalized."""

    context_dir: Path
    dockerfile: Path
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    #: RUN steps' network unless a step names its own: default (the builder's), host or none
    network: str = "default"
    #: entitlements granted, as BuildKit's ``--allow`` (:mod:`k3c.builder.entitlements`): ``network.host``
    allow: list[str] = field(default_factory=list)
    #: secret id -> file holding its value (the engine never copies it into the image)
    secrets: dict[str, Path] = field(default_factory=dict)
    #: containerd image labels put on every tag (e.g. which ImageBuild made it)
    image_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    """The built image as containerd holds it."""

    image_id: str  #: sha256 of the config blob: docker's image ID
    digest: str  #: manifest digest
    size: int  #: bytes of config plus layers
    tags: list[str] = field(default_factory=list)
    cached_steps: int = 0  #: steps answered from the layer cache


class BuildFailed(Exception):
    """The build did not produce an image; ``step`` and ``exit_code`` are set when a step failed."""

    def __init__(self, message: str, step: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.exit_code = exit_code


class BuildObserver(Protocol):
    """Receives the build's progress; both methods must return quickly (they run on the event loop)."""

    def line(self, text: str) -> None:
        """One line of output, as the builder printed it."""

    def step(self, text: str) -> None:
        """A step started, e.g. ``[2/2] STEP 3/5: RUN make`` (also passed to :meth:`line`)."""


class Engine(Protocol):
    """A builder that leaves its result in containerd."""

    name: str

    async def start(self) -> None:
        """Prepare directories and remove what a crashed build left behind (no build runs yet)."""
        ...

    async def close(self) -> None:
        """Release connections and mounts after the last build."""
        ...

    async def build(self, request: BuildRequest, observer: BuildObserver) -> BuildResult:
        """Build, import into containerd and tag; see the module docstring for the contract."""
        ...

    async def usage(self) -> tuple[int, int]:
        """The build cache: (entries, bytes)."""
        ...

    async def prune(self) -> int:
        """Drop the whole build cache (never while a build runs; images stay); returns the bytes freed."""
        ...


def replay_steps(observer: BuildObserver, steps: list[str]) -> int:
    """An earlier identical build's step lines, each but FROM marked as answered from cache; their count.

    What an engine shows when its whole-build key finds that nothing changed since that build.
    """
    cached = 0
    for step in steps:
        observer.line(step)
        observer.step(step)
        if not step.split(": ", 1)[-1].upper().startswith("FROM "):
            observer.line("--> Using cache (nothing changed since the last build)")
            cached += 1
    return cached


async def finish_anyway(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion even if the caller is cancelled meanwhile; then re-raise the cancel.

    Cleanup and tagging must not stop halfway: a half-removed container or half the tags is worse than
    finishing a few hundred milliseconds later.
    """
    task = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
