"""The agent's containerd in the host's namespaces: which Python runs ``k3c-cni`` there."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from k3c.daemon.containerd import ContainerdConfig
from k3c.daemon.hostcontainerd import HOST_PYTHONS, host_python


def test_the_hosts_python_is_found_through_inits_root() -> None:
    # this process's own root stands for the host's: the first interpreter of the list that exists there
    expected = next(p for p in HOST_PYTHONS if os.access(p, os.X_OK))
    assert host_python(os.getpid()) == expected


def test_k3c_runs_k3c_cni_under_its_own_python_by_default(tmp_path: Path) -> None:
    cfg = ContainerdConfig(root_dir=tmp_path / "root", state_dir=tmp_path / "state")
    assert cfg.cni_python == sys.executable
