"""`k3c build` then `k3c run` against a whole `k3c daemon`: the built image runs at once, no push or pull.

Skips (with the reason) while the daemon does not yet run the ImageBuild operator: the daemon wires it
with ``k3c.builder.logs.register(server.handler, root_dir)`` in its API server and
``operator/imagebuilds.py``'s ``register(registry, config)`` in its operator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import TEST_IMAGE

from k3c import kubeclient

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah not installed")


def _k3c(daemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    env = {**os.environ, "K3C_KUBECONFIG": str(daemon.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "k3c.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _claimed(daemon, name: str, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    path = kubeclient.resource_path("imagebuilds", "default", name)
    while time.monotonic() < deadline:
        if (daemon.api.get(path).get("status") or {}).get("node"):
            return True
        time.sleep(0.1)
    return False


def test_built_image_runs_with_k3c_run(daemon, tmp_path: Path) -> None:  # noqa: ANN001
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE} AS build\nARG V\nRUN echo \"built $V\" > /msg\n"
                                    f"FROM {TEST_IMAGE}\nCOPY --from=build /msg /msg\nCMD [\"cat\", \"/msg\"]\n")
    probe = {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "probe"},
             "spec": {"context": {"dir": str(ctx)}, "tags": ["k3c.test/probe:1"]}}
    daemon.api.create(kubeclient.resource_path("imagebuilds", "default"), probe)
    claimed = _claimed(daemon, "probe", 15)
    daemon.api.delete(kubeclient.resource_path("imagebuilds", "default", "probe"))
    if not claimed:
        pytest.skip("this k3c daemon does not run the ImageBuild operator yet")
    build = _k3c(daemon, "build", "-q", "-t", "k3c.test/built:1", "--build-arg", "V=7", str(ctx))
    assert build.returncode == 0, build.stderr
    image_id = build.stdout.strip()
    assert image_id.startswith("sha256:")
    run = _k3c(daemon, "run", "--rm", "k3c.test/built:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "built 7"
