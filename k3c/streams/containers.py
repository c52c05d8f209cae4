"""From a LocalContainer object to the runtime container its streams are served from.

The operator records the CRI container in ``status.containerID`` (a bare id or ``containerd://<id>``,
kubelet's form) and the log file in ``status.logPath``; everything else a stream needs comes from
containerd itself, which is the truth about the process: state and exit code, the CRI config (tty,
stdin) and, through the verbose ContainerStatus, the init pid and the OCI runtime spec that exec derives
its process from. Once the operator has removed an exited container, its exit code is the object's.

Failures before a stream starts are kube-style Status errors: 404 for a missing object, 409 Conflict
for a container that is not running, each one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.api import CRI_UID_LABEL, container_log_file
from k3c.apiserver import errors
from k3c.apiserver.subresources import SubresourceRequest
from k3c.cri.errors import NotFoundError
from k3c.cri.runtime import CRIClient, pb
from k3c.timefmt import NS, parse_rfc3339_ns

_STATES: dict[int, str] = {
    pb.CONTAINER_CREATED: "Created",
    pb.CONTAINER_RUNNING: "Running",
    pb.CONTAINER_EXITED: "Exited",
    pb.CONTAINER_UNKNOWN: "Unknown",
}


@dataclass
class RuntimeContainer:
    """What containerd says about the container behind one LocalContainer."""

    name: str  # the object's name, for messages
    id: str
    state: int
    exit_code: int
    log_path: str
    created_at: int = 0  # ns since the epoch: this container's log lines are not older
    pid: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # the CRI ContainerConfig, JSON form
    spec: dict[str, Any] = field(default_factory=dict)  # the OCI runtime spec
    snapshot_key: str = ""  # containerd's snapshot of its root filesystem

    @property
    def running(self) -> bool:
        return self.state == pb.CONTAINER_RUNNING

    @property
    def state_text(self) -> str:
        text = _STATES.get(self.state, "Unknown")
        return f"{text} ({self.exit_code})" if self.state == pb.CONTAINER_EXITED else text


def container_id_of(obj: dict[str, Any]) -> str:
    """The runtime id in ``status.containerID`` without a ``containerd://`` prefix ('' if none yet)."""
    cid = str((obj.get("status") or {}).get("containerID") or "")
    return cid.split("://", 1)[1] if "://" in cid else cid


def log_path_of(obj: dict[str, Any], rc: RuntimeContainer | None, log_dir: Path | None) -> str:
    """Where the container's output is, derived on the server: with the node's log dir, once the object
    has had a container, its own file there (one per object, kept across restarts and after the runtime
    container is removed; see :func:`k3c.api.container_log_file`), else the path CRI recorded ('' if none:
    a follower then waits for the container).

    Never ``status.logPath``: whoever may write the object may write that, and it would be opened as root.
    """
    if log_dir is None or (rc is None and not container_id_of(obj)):
        return rc.log_path if rc else ""
    meta = obj["metadata"]
    parts = (str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""))
    if not all(parts) or any("/" in p or p in (".", "..") for p in parts):  # (the API server checked them)
        return ""
    return str(log_dir / container_log_file(*parts))


def recorded_exit(obj: dict[str, Any], container_id: str) -> int | None:
    """The exit code the operator recorded for ``container_id`` (None if not recorded, or another run's)."""
    st = obj.get("status") or {}
    if container_id_of(obj) != container_id or st.get("phase") not in ("Exited", "Failed"):
        return None
    code = st.get("exitCode")
    return int(code) if code is not None else None


def finished_from_status(obj: dict[str, Any]) -> RuntimeContainer | None:
    """A container the operator has already removed after its exit, as far as the object tells.

    Its output stays in ``status.logPath``; ``created_at`` is its start (a second early: the status
    keeps whole seconds), so a replay shows this run's lines only.
    """
    cid = container_id_of(obj)
    code = recorded_exit(obj, cid)
    if not cid or code is None:
        return None
    started = str((obj.get("status") or {}).get("startedAt") or "")
    try:
        created = parse_rfc3339_ns(started) - NS if started else 0
    except ValueError:
        created = 0
    return RuntimeContainer(obj["metadata"]["name"], cid, pb.CONTAINER_EXITED, code, "", max(created, 0))


async def runtime_container(
    cri: CRIClient, obj: dict[str, Any], *, verbose: bool = False
) -> RuntimeContainer | None:
    """containerd's view of the object's container, or None if it has none (yet, or any more)."""
    cid = container_id_of(obj)
    if not cid:
        return None
    try:
        resp = await cri.container_status(cid, verbose=verbose)
    except NotFoundError:
        return None
    st = resp.status
    if st.labels.get(CRI_UID_LABEL) != obj["metadata"].get("uid"):
        return None  # not this object's: status.containerID is the client's to write, the label is k3c's
    rc = RuntimeContainer(obj["metadata"]["name"], cid, st.state, st.exit_code, st.log_path, st.created_at)
    if verbose and "info" in resp.info:
        info = json.loads(resp.info["info"])
        rc.pid = int(info.get("pid") or 0)
        rc.config = info.get("config") or {}
        rc.spec = info.get("runtimeSpec") or {}
        rc.snapshot_key = str(info.get("snapshotKey") or "")
    return rc


#: LocalContainer phases of a container the operator is still bringing up.
STARTING_PHASES = ("Pending", "Pulling", "Creating")


def is_starting(obj: dict[str, Any], rc: RuntimeContainer | None) -> bool:
    """Whether the container is on its way up: phase Pending/Pulling/Creating, or created but not started.

    A container being deleted or asked to stay stopped is not.
    """
    if obj["metadata"].get("deletionTimestamp") or (obj.get("spec") or {}).get("state") == "Stopped":
        return False
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    if rc is not None and rc.state == pb.CONTAINER_CREATED:
        return True
    return phase in STARTING_PHASES and (rc is None or rc.state != pb.CONTAINER_RUNNING)


def not_running(name: str, what: str, obj: dict[str, Any], rc: RuntimeContainer | None) -> errors.APIError:
    """409 Conflict: ``cannot exec into container "web": it is not running (Exited (0))``."""
    if rc is not None:
        state = rc.state_text
    else:
        state = str((obj.get("status") or {}).get("phase") or "Pending")
    return errors.APIError(409, "Conflict", f'cannot {what} container "{name}": it is not running ({state})')


async def running_container(req: SubresourceRequest, cri: CRIClient, what: str) -> RuntimeContainer:
    """The running container behind the request's object, with its spec and pid; 404/409 Status errors
    otherwise."""
    obj = await req.parent()
    rc = await runtime_container(cri, obj, verbose=True)
    if rc is None or not rc.running:
        raise not_running(req.name or "", what, obj, rc)
    return rc
