"""The resolvers' switch: `k3c daemon --no-dns` (and the agent's) reaches the operator's command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3c.cli.daemon import _node_config
from k3c.cli.main import build_parser
from k3c.daemon.supervisor import Daemon, DaemonConfig


@pytest.mark.parametrize("command", ["daemon", "agent"])
def test_no_dns_reaches_the_operator(tmp_path: Path, command: str) -> None:
    dirs = ["--root-dir", str(tmp_path / "root"), "--state-dir", str(tmp_path / "state"), "--node-runtime-address",
            "none"]
    for flags, wanted in (([], False), (["--no-dns"], True)):
        args = build_parser().parse_args([command, *dirs, *flags])
        argv = Daemon(DaemonConfig(**_node_config(args)))._operator_argv()
        assert ("--no-dns" in argv) is wanted
