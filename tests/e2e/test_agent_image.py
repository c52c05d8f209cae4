"""scripts/build-agent-image: the node agent's image, assembled from this host without pulling anything, runs.

The image is built by the script, imported into a real `k3c daemon`'s containerd and run as LocalContainers:
`k3c --version` (the DaemonSet's command is `k3c agent`), and a check that the agent's imports and every tool
it runs start inside the image (no library missing from what ldd found). Marked containerd: needs root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from k3c import __version__
from k3c.oci.layout import read_oci_archive

REPO = Path(__file__).resolve().parents[2]
TAG = f"k3c.local/k3c-agent:{__version__}"
CHECK = """
import json, os, subprocess
import k3c.cli.main, k3c.operator.__main__, kopf, grpc, cryptography, kubernetes_validate, re2, yaml
tools = {t: subprocess.run([t, flag], capture_output=True, text=True).returncode for t, flag in [
    ("containerd", "--version"), ("containerd-shim-runc-v2", "-v"), ("runc", "--version"), ("ctr", "--version"),
    ("nsenter", "--version"), ("ip", "-V"), ("iptables", "--version"), ("iptables-save", "--version"),
    ("setpriv", "--version"), ("mount", "--version")]}
plugins = sorted(p for p in ("bridge", "host-local", "loopback", "portmap", "firewall")
                 if os.access(f"/usr/lib/cni/{p}", os.X_OK))
print(json.dumps({"tools": tools, "plugins": plugins}))
"""


@pytest.mark.containerd
def test_agent_image_runs_k3c_and_its_tools(daemon, tmp_path: Path) -> None:
    archive = tmp_path / "agent.tar"
    cp = subprocess.run([sys.executable, str(REPO / "scripts" / "build-agent-image"), "--output", str(archive)],
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr
    [(name, image)] = read_oci_archive(archive)
    assert name == TAG and image.config["config"]["Cmd"] == ["k3c", "agent"]
    assert len(image.manifest["layers"]) == 3
    daemon.import_image(TAG, image, timeout=180)

    daemon.create_container("agent-version", image=TAG, command=["k3c", "--version"])
    st = daemon.wait_phase("agent-version", "Exited", "Failed", timeout=120)
    out = "".join(text for _, text in daemon.container_log(st))
    assert st["status"]["exitCode"] == 0 and out.strip() == f"k3c version {__version__}", (st["status"], out)

    daemon.create_container("agent-tools", image=TAG, command=["python3", "-c", CHECK])
    st = daemon.wait_phase("agent-tools", "Exited", "Failed", timeout=120)
    lines = [text for _, text in daemon.container_log(st)]
    assert st["status"]["exitCode"] == 0, lines
    report = json.loads(lines[-1])
    assert report["tools"] == dict.fromkeys(report["tools"], 0), report
    assert report["plugins"] == ["bridge", "firewall", "host-local", "loopback", "portmap"]
    for name in ("agent-version", "agent-tools"):
        daemon.delete_container(name)
