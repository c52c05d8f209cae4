"""The status documents the reconcilers write: one TypedDict per k3c type's ``status`` (fields as in
``crds/*.yaml``) and the records inside them.

TypedDicts rather than dataclasses because a status write is a JSON merge patch built as a dict: a key left
out keeps the stored field, a key set to None deletes it, and the dict's key order is the order on the
wire. A TypedDict is that dict, so typing it changes nothing that is sent. Hence ``total=False`` for the
documents (each write carries only what it changes) and ``X | None`` for the fields a write may clear.
Statuses read back from the API server stay plain dicts: they are whatever was stored.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of ``status.conditions`` (Kubernetes' condition shape)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str


# ------------------------------------------------------------------------------------------ LocalContainer

ContainerPhase = Literal["Pending", "Pulling", "Creating", "Running", "Exited", "Failed"]


class PortStatus(TypedDict):
    """A published port as status shows it (the host port chosen)."""

    hostIP: str
    hostPort: int
    containerPort: int
    protocol: str


HealthState = Literal["starting", "healthy", "unhealthy"]


class HealthCheckResult(TypedDict):
    """One run of a container's health check (docker's ``State.Health.Log`` entry)."""

    start: str
    end: str
    exitCode: int
    output: str


class HealthStatus(TypedDict):
    """``status.health``: what docker inspect shows as ``State.Health``."""

    status: HealthState
    failingStreak: int
    log: list[HealthCheckResult]


class NetworkAttachment(TypedDict, total=False):
    """One network a container is attached to (docker inspect's NetworkSettings.Networks entry)."""

    name: str
    ip: str
    prefixLength: int
    gateway: str
    mac: str
    interface: str
    aliases: list[str]


class LocalContainerStatus(TypedDict, total=False):
    phase: ContainerPhase
    summary: str  # docker ps' STATUS column: "Up", "Up (Paused)", "Exited (0)", "Restarting (1)", …
    paused: bool  # frozen by `k3c pause` (the cgroup freezer); still Running
    message: str
    node: str
    containerID: str
    sandboxID: str
    imageID: str
    ip: str
    ports: list[PortStatus]
    portSummary: str
    command: str
    startedAt: str
    finishedAt: str | None
    exitCode: int | None
    restartCount: int
    logPath: str
    # what the last start acted on (see ContainerReconciler._origin_fields)
    startRequest: str
    specHash: str
    observedState: Literal["Running", "Stopped"]
    observedGeneration: int | None
    health: HealthStatus | None
    networks: list[NetworkAttachment]
    conditions: list[Condition]


# ------------------------------------------------------------------------------------------ Volume


class VolumeStatus(TypedDict, total=False):
    mountpoint: str
    node: str
    phase: Literal["Pending", "Ready", "InUse", "Failed"]
    usedBy: list[str]
    message: str


# ------------------------------------------------------------------------------------------ Network


class AttachedContainer(TypedDict, total=False):
    name: str
    ip: str
    aliases: list[str]


class NetworkStatus(TypedDict, total=False):
    phase: Literal["Pending", "Ready", "Failed"]
    bridge: str
    subnet: str
    gateway: str
    node: str
    message: str
    containers: list[AttachedContainer]
    conditions: list[Condition]


# ------------------------------------------------------------------------------------------ images


class Layer(TypedDict):
    """A layer of an image's manifest."""

    digest: str
    size: int


class LayerProgress(TypedDict):
    """One blob's progress in a pull or a push; ``state`` in docker's words ("Downloading", "Pushed", …)."""

    digest: str
    size: int
    current: int
    state: str


class ImagePull(TypedDict, total=False):
    """``status.pull`` of an Image: the last pull asked by ``spec.pullRequest`` (or the first one)."""

    request: str
    state: Literal["Resolving", "Pulling", "Succeeded", "Failed"]
    message: str
    startTime: str
    completionTime: str
    current: int
    total: int
    layers: list[LayerProgress]


class ImageStatus(TypedDict, total=False):
    phase: Literal["Pending", "Pulling", "Ready", "Failed"]
    message: str
    node: str
    repository: str
    tag: str
    id: str
    shortID: str
    digest: str
    repoDigests: list[str]
    mediaType: str
    size: int
    sizeText: str
    created: str
    platform: str
    config: dict[str, Any]  # the image config's ``config`` (Entrypoint, Cmd, Env, …) as the image has it
    layers: list[Layer]
    diffIDs: list[str]
    history: list[HistoryEntry]
    pull: ImagePull
    conditions: list[Condition]


class HistoryEntry(TypedDict, total=False):
    """One step of an image config's ``history``, as the config spells it (`k3c history` shows them)."""

    created: str
    created_by: str
    author: str
    comment: str
    empty_layer: bool


TagPhase = Literal["Pending", "Tagged", "Pushing", "Ready", "Failed"]


class TagTarget(TypedDict):
    """One of an ImageTag's targets; the push fields only with ``spec.push``."""

    reference: str
    tagged: bool
    push: NotRequired[str]  # the ImagePush child's name
    pushPhase: NotRequired[str]
    pushedDigest: NotRequired[str]
    message: NotRequired[str]


class ImageTagStatus(TypedDict, total=False):
    phase: TagPhase
    message: str
    observedGeneration: int | None
    imageID: str
    digest: str
    targetSummary: str
    targets: list[TagTarget]
    conditions: list[Condition]


class ImagePushStatus(TypedDict, total=False):
    phase: Literal["Pending", "Pushing", "Succeeded", "Failed"]
    message: str
    node: str
    observedGeneration: int
    destination: str
    digest: str
    mediaType: str
    size: int
    progress: str  # "12.3MB/45.6MB"
    current: int
    total: int
    startTime: str
    completionTime: str | None
    layers: list[LayerProgress]
    conditions: list[Condition]


# ------------------------------------------------------------------------------------------ builds


class ImageBuildStatus(TypedDict, total=False):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Canceled"]
    message: str
    node: str
    observedGeneration: int
    startTime: str
    completionTime: str | None
    steps: list[str]
    stepsDone: int
    failedStep: str | None
    exitCode: int | None
    imageID: str | None
    shortID: str | None
    imageDigest: str | None
    imageSize: int | None
    tags: list[str] | None
    tagSummary: str | None
    pushed: list[str] | None
    conditions: list[Condition]


class BuildCacheStatus(TypedDict, total=False):
    node: str
    entries: int
    size: int
    sizeText: str
    prunedRequest: str  # the spec.pruneRequest last answered
    reclaimed: int
    reclaimedText: str
    lastPruned: str
    updated: str
    message: str
