"""Admin kubeconfig for the embedded API server: written by the server, read by `k3c kubeconfig` and the CLI.

The credentials are embedded (base64) so the file is self-contained and can be copied; that is also why it
is created with mode 0600 (0640 when a group is given, like the daemon's socket group).

It is written as JSON, which is YAML too (kubectl, client-go, the Python client and kopf read it unchanged):
the k3c CLI then parses it with :mod:`json` and never imports a YAML parser, about 10 ms of every command.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from k3c.apiserver.certs import Material


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(server_url: str, m: Material, context: str = "default") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server_url, "certificate-authority-data": _b64(m.ca_cert)}}
        ],
        "users": [
            {
                "name": context,
                "user": {
                    "client-certificate-data": _b64(m.client_cert),
                    "client-key-data": _b64(m.client_key),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }
    return json.dumps(doc, indent=2) + "\n"


def write(path: Path, content: str, gid: int | None = None) -> None:
    """Write atomically with restrictive permissions, so no reader ever sees a partial file."""
    mode = 0o640 if gid is not None else 0o600
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    if gid is not None:
        os.chown(tmp, -1, gid)
    os.replace(tmp, path)
