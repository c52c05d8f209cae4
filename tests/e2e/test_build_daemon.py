"""`k3c build` then `k3c run` against a whole `k3c daemon`: the built image runs at once, no push or pull.

The daemon wires the build with ``k3c.builder.logs.BuildSubresources`` mounted on its API server
and ``operator/imagebuilds.py``'s ``register(registry, config)`` in its operator (native engine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.daemon_harness import TEST_IMAGE


def _k3c(daemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_built_image_runs_with_k3c_run(daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE} AS build\nARG V\nRUN echo \"built $V\" > /msg\n"
                                    f"FROM {TEST_IMAGE}\nCOPY --from=build /msg /msg\nCMD [\"cat\", \"/msg\"]\n")
    build = _k3c(daemon, "build", "-q", "-t", "k3c.test/built:1", "--build-arg", "V=7", str(ctx))
    assert build.returncode == 0, build.stderr
    image_id = build.stdout.strip()
    assert image_id.startswith("sha256:")
    run = _k3c(daemon, "run", "--rm", "k3c.test/built:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "built 7"
