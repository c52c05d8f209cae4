"""A LocalContainer's life as its writers drive it: what asks for a start, what counts as running or exited.

The CLI and the Docker API both drive containers by writing objects; this is the one statement of the
protocol they share with the operator (the start-request token it echoes, the finalizer nobody else
clears, the kill request after which it does not restart), so the two front doors cannot drift apart.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from k3c.api import KILL_REQUEST_ANNOTATION, RESTART_TOKEN_PREFIX, START_REQUEST_ANNOTATION
from k3c.signals import signal_number

#: the phases of a container that is coming up or up
ACTIVE_PHASES = ("Pending", "Pulling", "Creating", "Running")


def start_patch(spec: dict[str, Any] | None = None, restart: bool = False) -> tuple[str, dict[str, Any]]:
    """(token, merge patch) asking for a fresh start now: desired Running plus a new start-request token the
    operator echoes in status (a restart's says so, for docker's ``restart`` event)."""
    token = f"{RESTART_TOKEN_PREFIX if restart else ''}{time.time_ns():x}"
    return token, {"metadata": {"annotations": {START_REQUEST_ANNOTATION: token}},
                   "spec": {"state": "Running", **(spec or {})}}


def is_running(obj: dict[str, Any]) -> bool:
    """Running as docker means it (rm refuses without force): the process is up or about to be."""
    st = obj.get("status") or {}
    if st.get("phase") == "Running":
        return True
    return (obj.get("spec") or {}).get("state", "Running") == "Running" and st.get("phase") in ACTIVE_PHASES[1:]


def unclaimed(obj: dict[str, Any]) -> bool:
    """No operator ever touched it (no node claimed it, no status): nothing exists outside the API, so a
    writer may drop the finalizer itself."""
    return not obj.get("status") and not (obj.get("spec") or {}).get("nodeName")


def exit_code(obj: dict[str, Any]) -> int:
    """The last exit code, as docker reports it (128 for a container that failed to run at all)."""
    st = obj.get("status") or {}
    if st.get("exitCode") is not None:
        return int(st["exitCode"])
    return 128 if st.get("phase") == "Failed" else 0


def freeze_settled(obj: dict[str, Any] | None, paused: bool) -> bool:
    """Whether the status has followed a pause (``paused``) or an unpause: the operator wrote it, or the
    container is gone or no longer running, so there is nothing more to wait for."""
    st = (obj or {}).get("status") or {}
    return obj is None or bool(st.get("paused")) == paused or st.get("phase") != "Running"


class KillRequest(NamedTuple):
    """A `kill -s` asked of one run of a container (its CRI container ID); the token tells two apart.
    (A NamedTuple: the CLI imports this module at start-up, and ``dataclasses`` costs ~10 ms there.)"""

    signal: int
    container_id: str
    token: str


def kill_patch(obj: dict[str, Any], signal: int) -> dict[str, Any]:
    """The merge patch recording a `kill -s SIGNAL` of the running container, written before the signal is
    sent: the events derive docker's ``kill`` from it, the operator :func:`exits_for_good` by it."""
    cid = (obj.get("status") or {}).get("containerID") or ""
    return {"metadata": {"annotations": {KILL_REQUEST_ANNOTATION: f"{signal}/{cid}/{time.time_ns():x}"}}}


def kill_request(obj: dict[str, Any] | None) -> KillRequest | None:
    """The last `kill -s` recorded on the object (None if none, or unreadable)."""
    value = str((((obj or {}).get("metadata") or {}).get("annotations") or {}).get(KILL_REQUEST_ANNOTATION) or "")
    parts = value.split("/")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return KillRequest(int(parts[0]), parts[1], parts[2])


def exits_for_good(obj: dict[str, Any], container_id: str) -> bool:
    """docker 20.10's rule for an exit after `docker kill -s`: the restart policy does not start it again
    when the container has no stop signal of its own or the signal was that one (docker's "exit on next",
    kept even if the process outlived the signal). Only the stop signal of the spec counts here."""
    req = kill_request(obj)
    if req is None or not container_id or req.container_id != container_id:
        return False
    stop = str((obj.get("spec") or {}).get("stopSignal") or "")
    try:
        return not stop or signal_number(stop) == req.signal
    except ValueError:
        return True
