"""The resolvers' switch: `k3c daemon --no-dns` (and the agent's) reaches the operator's command line."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from k3c.cli.daemon import _node_config
from k3c.cli.main import build_parser
from k3c.daemon.supervisor import Daemon, DaemonConfig


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir short enough for containerd's socket under it (pytest's own may not be, with workers)."""
    path = Path(tempfile.mkdtemp(prefix="k3cw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("command", ["daemon", "agent"])
def test_no_dns_reaches_the_operator(short_dir: Path, command: str) -> None:
    dirs = ["--root-dir", str(short_dir / "root"), "--state-dir", str(short_dir / "state"), "--node-runtime-address",
            "none"]
    for flags, wanted in (([], False), (["--no-dns"], True)):
        args = build_parser().parse_args([command, *dirs, *flags])
        argv = Daemon(DaemonConfig(**_node_config(args)))._operator_argv()
        assert ("--no-dns" in argv) is wanted
