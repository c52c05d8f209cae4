"""An ImageBuild as its writers make and follow it: the object a `docker build` becomes, and how it ends.

The CLI (`k3c build`) and the Docker API (``POST /build``) both build by uploading a context, creating an
ImageBuild and following its ``log`` subresource; this is the one statement of that object and of how its
log and status read (the step lines, the closing failure line, the finished phases), so the two front
doors cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from k3c.api import IMAGE_BUILDS

#: how long a finished build's object and log stay for `kubectl get/describe` and the logs of `k3c build`
KEEP_FINISHED = 3600
#: docker build --network values BuildKit takes
NETWORKS = ("default", "host", "none")
#: the phases of a build that is over
FINISHED = ("Succeeded", "Failed", "Canceled")
#: a step as the builder announces it in the log: ``[2/2] STEP 3/5: RUN make``
STEP_RE = re.compile(r"^(?:\[\d+/\d+\] )?STEP (?P<n>\d+)/(?P<total>\d+): (?P<text>.*)$")
#: how the log of a failed build ends (k3c.reconcilers.imagebuilds): the failure is said again by the client
FAILED_LINE = "build failed: "


@dataclass
class BuildRequest:
    """What a build asks for, whichever front door it came through."""

    context: dict[str, Any]
    dockerfile: str = ""
    dockerfile_inline: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    push: bool = False
    platform: str = ""
    #: one of :data:`NETWORKS` ("default" is said as none)
    network: str = ""
    allow: list[str] = field(default_factory=list)
    secret_ids: list[str] = field(default_factory=list)
    node: str = ""


def imagebuild_object(name: str, req: BuildRequest, created_by: str) -> dict[str, Any]:
    """The ImageBuild for ``req`` (``created_by`` labels who made it); secrets come from ``NAME-secrets``."""
    spec: dict[str, Any] = {"context": req.context}
    if req.dockerfile_inline:
        spec["dockerfileInline"] = req.dockerfile_inline
    elif req.dockerfile:
        spec["dockerfile"] = req.dockerfile
    for key, value in (("buildArgs", req.build_args), ("labels", req.labels), ("tags", list(req.tags)),
                       ("target", req.target), ("noCache", req.no_cache), ("pull", req.pull),
                       ("push", req.push), ("platform", req.platform),
                       ("network", "" if req.network == "default" else req.network), ("allow", req.allow),
                       ("nodeName", req.node)):
        if value:
            spec[key] = value
    spec["ttlSecondsAfterFinished"] = KEEP_FINISHED
    if req.secret_ids:
        spec["secrets"] = [{"id": sid, "secretName": f"{name}-secrets", "key": sid} for sid in req.secret_ids]
    return {"apiVersion": IMAGE_BUILDS.api_version, "kind": IMAGE_BUILDS.kind,
            "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": created_by}}, "spec": spec}


def finished(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in FINISHED


def failure(status: dict[str, Any]) -> tuple[str, int | None, str]:
    """(failed step, its exit code, message) of a build that did not succeed."""
    code = status.get("exitCode")
    return (str(status.get("failedStep") or ""), int(code) if code is not None else None,
            str(status.get("message") or f"build {str(status.get('phase') or 'failed').lower()}"))


def step_instruction(step: str) -> str:
    """The instruction of a step as the log announces it (``[1/2] STEP 2/2: RUN make`` → ``RUN make``)."""
    m = STEP_RE.match(step)
    return m["text"] if m else step
