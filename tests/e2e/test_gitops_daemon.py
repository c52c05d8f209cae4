"""A Git checkout of k3c objects, kept in sync by `kubectl apply --prune`, against a whole `k3c daemon`.

The loop a GitOps user runs: apply the directory, change a file, apply again, delete a file, apply again;
after each step the node's operator converges: the image is rebuilt when its ImageBuild's spec changes,
the container goes when its file goes. Custom resources are never in kubectl's default prune allowlist,
so the label-selected form names k3c's kinds with `--prune-allowlist`; the ApplySet form
(`KUBECTL_APPLYSET=true`, a Secret as the set's parent) needs no list at all.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.daemon_harness import TEST_IMAGE
from tests.support.harness import oldest_and_newest_kubectl, run_kubectl, wait_until

ALLOWLIST = [f"--prune-allowlist=k3c.io/v1alpha1/{kind}" for kind in ("ImageBuild", "LocalContainer", "Volume")]
LABELS = {"app": "gitops"}


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = oldest_and_newest_kubectl()
    if not found:
        pytest.skip("no kubectl on this machine")
    return found[-1]


def _write(directory: Path, name: str, doc: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(doc))


def _build(ctx: Path, version: str) -> dict:
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "site", "labels": LABELS},
            "spec": {"context": {"dir": str(ctx)}, "buildArgs": {"V": version}, "tags": ["k3c.test/gitops:1"]}}


def _volume(name: str) -> dict:
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "Volume", "metadata": {"name": name, "labels": LABELS},
            "spec": {}}


def _container(name: str, volume: str) -> dict:
    return {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": name, "labels": LABELS},
            "spec": {"image": TEST_IMAGE, "command": ["sleep", "3600"],
                     "volumes": [{"volume": volume, "mountPath": "/data"}]}}


def _get(kubectl: str, daemon, what: str) -> dict | None:
    cp = run_kubectl(kubectl, daemon.kubeconfig, "get", what, "-n", "default", "-o", "json", check=False)
    return json.loads(cp.stdout) if cp.returncode == 0 else None


def _apply(kubectl: str, daemon, repo: Path, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_kubectl(kubectl, daemon.kubeconfig, "apply", "-n", "default", "-f", str(repo), "--prune", *flags,
                       env=env)


def _built(kubectl: str, daemon, generation: int) -> dict:
    def done() -> dict | None:
        obj = _get(kubectl, daemon, "imagebuilds.k3c.io/site") or {}
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("phase") in ("Succeeded", "Failed"):
            return status
        return None

    status = wait_until(done, 180, f"build generation {generation} to finish")
    assert status["phase"] == "Succeeded", status
    return status


def _running(daemon, name: str) -> dict:
    return daemon.wait_phase(name, "Running", timeout=60)


def _removed(daemon, name: str, uid: str) -> None:
    wait_until(lambda: daemon.container(name) is None, 60, f"{name} to be removed")
    wait_until(lambda: not daemon.runtime_containers(uid), 30, f"{name}'s runtime container to go")


def test_label_selected_prune_of_k3c_objects(daemon, kubectl, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nARG V\nRUN echo \"v$V\" > /version\n")
    repo = tmp_path / "repo"
    _write(repo, "build", _build(ctx, "1"))
    _write(repo, "volume", _volume("site-data"))
    _write(repo, "web", _container("web", "site-data"))
    _write(repo, "worker", _container("worker", "site-data"))

    first = _apply(kubectl, daemon, repo, "-l", "app=gitops", *ALLOWLIST)
    assert "imagebuild.k3c.io/site created" in first.stdout and "localcontainer.k3c.io/web created" in first.stdout
    v1 = _built(kubectl, daemon, 1)
    web, worker = _running(daemon, "web"), _running(daemon, "worker")
    assert (_get(kubectl, daemon, "volumes.k3c.io/site-data") or {}).get("status", {}).get("phase") in (
        "Ready", "InUse")

    _write(repo, "build", _build(ctx, "2"))  # a commit changes the build's spec: the image is rebuilt
    second = _apply(kubectl, daemon, repo, "-l", "app=gitops", *ALLOWLIST)
    assert "imagebuild.k3c.io/site configured" in second.stdout
    assert "localcontainer.k3c.io/web unchanged" in second.stdout
    v2 = _built(kubectl, daemon, 2)
    assert v2["imageID"] != v1["imageID"]

    (repo / "worker.yaml").unlink()  # a commit removes a container: it is pruned and the node removes it
    third = _apply(kubectl, daemon, repo, "-l", "app=gitops", *ALLOWLIST)
    assert "localcontainer.k3c.io/worker pruned" in third.stdout, third.stdout
    _removed(daemon, "worker", worker["metadata"]["uid"])
    assert daemon.container("web")["metadata"]["uid"] == web["metadata"]["uid"]  # untouched
    assert daemon.runtime_containers(web["metadata"]["uid"])
    daemon.delete_container("web")


def test_applyset_prune_of_k3c_objects(daemon, kubectl, tmp_path):
    repo = tmp_path / "repo"
    # kubectl applies a directory's files in name order, so here the containers come before the Volume they
    # mount: the operator must give the Volume's own create time to arrive rather than make it first (kubectl
    # would then meet AlreadyExists on its create and fail the apply)
    _write(repo, "a", _container("set-a", "set-data"))
    _write(repo, "b", _container("set-b", "set-data"))
    _write(repo, "z-volume", _volume("set-data"))
    env = {"KUBECTL_APPLYSET": "true"}

    first = _apply(kubectl, daemon, repo, "--applyset=gitops-set", env=env)
    assert "localcontainer.k3c.io/set-a created" in first.stdout, first.stdout + first.stderr
    a, b = _running(daemon, "set-a"), _running(daemon, "set-b")
    parent = _get(kubectl, daemon, "secret/gitops-set") or {}
    assert parent["metadata"]["labels"]["applyset.kubernetes.io/id"].startswith("applyset-")
    kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
    assert set(kinds.split(",")) == {"LocalContainer.k3c.io", "Volume.k3c.io"}

    (repo / "b.yaml").unlink()
    second = _apply(kubectl, daemon, repo, "--applyset=gitops-set", env=env)
    assert "localcontainer.k3c.io/set-b pruned" in second.stdout, second.stdout + second.stderr
    _removed(daemon, "set-b", b["metadata"]["uid"])
    assert daemon.container("set-a")["metadata"]["uid"] == a["metadata"]["uid"]
    daemon.delete_container("set-a")


def test_a_volume_applied_just_after_its_container_is_created_by_its_own_apply(daemon, kubectl, tmp_path):
    """The operator gives a new container's Volume time to arrive (kubectl applies a directory one object at a
    time) and makes it itself only after that; so kubectl's own create of it, a moment later, succeeds."""
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first, "c", _container("late-user", "late-data"))
    _write(second, "v", _volume("late-data"))
    cp = run_kubectl(kubectl, daemon.kubeconfig, "create", "-n", "default", "-f", str(first))
    assert cp.returncode == 0, cp.stderr
    time.sleep(0.8)
    cp = run_kubectl(kubectl, daemon.kubeconfig, "create", "-n", "default", "-f", str(second))
    assert cp.returncode == 0 and "volume.k3c.io/late-data created" in cp.stdout, cp.stdout + cp.stderr
    user = _running(daemon, "late-user")
    daemon.delete_container("late-user")
    _removed(daemon, "late-user", user["metadata"]["uid"])
    run_kubectl(kubectl, daemon.kubeconfig, "delete", "-n", "default", "volume.k3c.io/late-data")


def test_a_volume_nobody_applies_is_made_by_the_operator(daemon, kubectl, tmp_path):
    repo = tmp_path / "only"
    _write(repo, "c", _container("lone-user", "lone-data"))
    cp = run_kubectl(kubectl, daemon.kubeconfig, "create", "-n", "default", "-f", str(repo))
    assert cp.returncode == 0, cp.stderr
    user = _running(daemon, "lone-user")
    assert _get(kubectl, daemon, "volume.k3c.io/lone-data") is not None
    daemon.delete_container("lone-user")
    _removed(daemon, "lone-user", user["metadata"]["uid"])
    run_kubectl(kubectl, daemon.kubeconfig, "delete", "-n", "default", "volume.k3c.io/lone-data")
