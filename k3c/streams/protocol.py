"""The wire protocol of k3c's streams: Kubernetes' channel websocket, shared by server and CLI.

logs, exec and attach speak what kube-apiserver and the kubelet speak for pods/log, pods/exec and
pods/attach over websockets, so kubectl-style clients work and the CLI needs nothing but the kubeconfig:
every binary frame starts with one byte naming its channel, the rest is payload.

==========  =====================================================================================
channel     meaning
==========  =====================================================================================
0           stdin (client → server)
1, 2        stdout, stderr (server → client); ``logs`` uses them too, which keeps the streams apart
3           the outcome, a ``metav1.Status`` as JSON (``channel.k8s.io``: only a failure's text)
4           terminal size, ``{"Width": W, "Height": H}`` (client → server)
5           k3c extension, attach only: a signal name such as ``SIGINT`` to deliver to the container
            (``docker attach --sig-proxy``); servers that do not know it ignore it
255         ``v5.channel.k8s.io`` only: "close channel N" (payload N), used to close stdin (EOF)
==========  =====================================================================================

This module must stay import-light: the CLI imports it.
"""

from __future__ import annotations

import json
from typing import Any

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
SIGNAL = 5
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V1 = "channel.k8s.io"
#: What servers accept, best first; v5 adds the CLOSE channel, the only way to signal stdin EOF.
PROTOCOLS = (V5, V4, V1)

#: Exit codes docker uses when a command cannot run at all.
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127

_NOT_FOUND_MARKERS = ("executable file not found", "no such file or directory")


def success() -> dict[str, Any]:
    """The Status a kubelet sends when a command exits 0."""
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, command: list[str] | None = None) -> dict[str, Any]:
    """The Status for a finished command: Success for 0, else NonZeroExitCode with an ExitCode cause."""
    if code == 0:
        return success()
    what = f"error executing command {command}, " if command else ""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {what}exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    """A Status for a stream that failed for another reason than a non-zero exit (one-line message)."""
    message = " ".join(message.split())
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
        "details": {"causes": [{"message": message}]},
    }


def exit_code_of(status: dict[str, Any]) -> int | None:
    """The exit code a Status reports: 0 for Success, the ExitCode cause, or None (another failure)."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                return None
    return None


def start_failure_code(message: str, command: list[str]) -> int:
    """docker's exit code for a command that could not be started: 127 if it does not exist, else 126.

    Like dockerd, "not found" counts only when the runtime's message names the command (a missing
    working directory is also "no such file or directory", but the command itself exists).
    """
    lowered = message.lower()
    missing = any(m in lowered for m in _NOT_FOUND_MARKERS)
    return EXIT_NOT_FOUND if missing and command and command[0] in message else EXIT_CANNOT_INVOKE


def decode_status(payload: bytes, protocol: str | None) -> dict[str, Any]:
    """Parse channel 3: JSON Status for v4/v5; ``channel.k8s.io`` carries only an error's text."""
    text = payload.decode(errors="replace")
    if protocol in (V4, V5):
        try:
            doc = json.loads(text)
        except ValueError:
            return failure(text)
        return doc if isinstance(doc, dict) else failure(text)
    return failure(text) if text.strip() else success()


def encode_status(status: dict[str, Any], protocol: str | None) -> bytes | None:
    """Channel 3's payload for ``status`` in ``protocol`` (None: nothing to send on ``channel.k8s.io``)."""
    if protocol in (V4, V5):
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return None
    return str(status.get("message", "error")).encode()


def resize_payload(width: int, height: int) -> bytes:
    """Channel 4's payload."""
    return json.dumps({"Width": width, "Height": height}).encode()
