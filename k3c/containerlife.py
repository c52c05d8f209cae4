"""A LocalContainer's life as its writers drive it: what asks for a start, what counts as running or exited.

The CLI and the Docker API both drive containers by writing objects; this is the one statement of the
protocol they share with the operator (the start-request token it echoes, the finalizer nobody else
clears), so the two front doors cannot drift apart.
"""

from __future__ import annotations

import time
from typing import Any

from k3c.api import RESTART_TOKEN_PREFIX, START_REQUEST_ANNOTATION

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
