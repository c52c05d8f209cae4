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


def test_the_embedded_daemon_builds_from_a_local_git_repository(daemon, tmp_path: Path) -> None:
    """Embedded k3c trusts its users as docker.sock does (context.dir too): its operator is started with
    --allow-local-git-contexts, so a file:// git context builds; a standalone operator refuses it."""
    from tests.support.git_http import commit_all
    from tests.support.harness import wait_until

    repo = tmp_path / "repo"
    commit_all(repo, {"Dockerfile": f"FROM {TEST_IMAGE}\nCOPY msg /msg\n", "msg": "from a local repository\n"})
    path = "/apis/k3c.io/v1alpha1/namespaces/default/imagebuilds"
    daemon.api.create(path, {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "local-git"},
                           "spec": {"context": {"git": {"url": f"file://{repo}", "ref": "main"}},
                                    "tags": ["k3c.test/local-git:1"]}})
    status = wait_until(lambda: (daemon.api.get(f"{path}/local-git").get("status") or {}).get("phase")
                        in ("Succeeded", "Failed") and daemon.api.get(f"{path}/local-git")["status"], 120,
                        "the local git build to finish")
    assert status["phase"] == "Succeeded", status
