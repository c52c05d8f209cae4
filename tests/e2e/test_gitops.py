"""GitOps workflows against a real `k3c apiserver`, with the real kubectl (oldest and newest) and kpt.

`kubectl apply --prune` needs every kind of kubectl's default prune allowlist to be served: they are, as
storage-only built-ins with kube-apiserver's discovery, schemas, printer columns and defaults. This module
keeps that, `kubectl diff`, server-side apply's field ownership and kpt's live commands working.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.harness import kubectl_env, oldest_and_newest_kubectl, run_kubectl

REPO = Path(__file__).resolve().parents[2]

# kubectl 1.27-1.33's default prune allowlist (staging/src/k8s.io/kubectl/pkg/util/prune/prune.go).
PRUNE_ALLOWLIST = [
    ("v1", "ConfigMap"), ("v1", "Endpoints"), ("v1", "Namespace"), ("v1", "PersistentVolumeClaim"),
    ("v1", "PersistentVolume"), ("v1", "Pod"), ("v1", "ReplicationController"), ("v1", "Secret"),
    ("v1", "Service"), ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "Ingress"),
    ("apps/v1", "DaemonSet"), ("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet"),
]


def kctl(kubectl: str, apiserver, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_kubectl(kubectl, apiserver.kubeconfig, *args, **kw)


def fresh_ns(kubectl: str, apiserver, prefix: str) -> str:
    name = f"{prefix}-{Path(kubectl).name.replace('.', '-')}"
    kctl(kubectl, apiserver, "create", "namespace", name)
    return name


def deployment(name: str, image: str = "nginx:1.25", **labels: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}}}


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": "shop"}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "shop"}},
            "data": data}


def write(directory: Path, **docs: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    return directory


def get_json(kubectl: str, apiserver, *args: str) -> dict:
    return json.loads(kctl(kubectl, apiserver, "get", *args, "-o", "json").stdout)


# ------------------------------------------------------------------------------------------ prune, diff


def test_default_prune_allowlist_is_served(kubectl, apiserver):
    out = kctl(kubectl, apiserver, "api-resources", "-o", "wide").stdout.splitlines()
    rows = [line.split() for line in out[1:]]
    for api_version, kind in PRUNE_ALLOWLIST:
        assert any(api_version in row and kind in row for row in rows), (api_version, kind)
    deploy = next(row for row in rows if row[0] == "deployments")
    assert deploy[1] == "deploy" and deploy[-1] == "all,stored-only"  # discovery says nothing runs it here


def test_apply_prune_with_label_selector(kubectl, apiserver, tmp_path):
    ns = fresh_ns(kubectl, apiserver, "prune")
    app = write(tmp_path / "app", deploy=deployment("web", app="shop"), svc=service("web"),
                cm=configmap("settings", color="blue"))
    first = kctl(kubectl, apiserver, "apply", "-n", ns, "-f", str(app), "--prune", "-l", "app=shop")
    for created in ("deployment.apps/web created", "service/web created", "configmap/settings created"):
        assert created in first.stdout, first.stdout + first.stderr
    (app / "svc.yaml").unlink()
    second = kctl(kubectl, apiserver, "apply", "-n", ns, "-f", str(app), "--prune", "-l", "app=shop")
    assert "service/web pruned" in second.stdout, second.stdout + second.stderr
    assert "deployment.apps/web unchanged" in second.stdout and "configmap/settings unchanged" in second.stdout
    gone = kctl(kubectl, apiserver, "get", "svc", "web", "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert get_json(kubectl, apiserver, "deploy", "web", "-n", ns)["spec"]["replicas"] == 1


def test_diff_exit_codes(kubectl, apiserver, tmp_path):
    ns = fresh_ns(kubectl, apiserver, "diff")
    app = write(tmp_path / "app", deploy=deployment("web", app="shop"), svc=service("web"),
                cm=configmap("settings", color="blue"))
    kctl(kubectl, apiserver, "apply", "-n", ns, "-f", str(app))
    same = kctl(kubectl, apiserver, "diff", "-n", ns, "-f", str(app), check=False)
    assert same.returncode == 0, same.stdout + same.stderr  # defaults and the Service's address round-trip
    assert same.stdout == ""
    write(app, deploy=deployment("web", image="nginx:1.26", app="shop"), cm=configmap("settings", color="red"))
    changed = kctl(kubectl, apiserver, "diff", "-n", ns, "-f", str(app), check=False)
    assert changed.returncode == 1, changed.stderr
    assert "+      - image: nginx:1.26" in changed.stdout and "+  color: red" in changed.stdout
    assert "clusterIP" not in changed.stdout  # the Service did not change
    kctl(kubectl, apiserver, "apply", "-n", ns, "-f", str(app))
    assert kctl(kubectl, apiserver, "diff", "-n", ns, "-f", str(app), check=False).returncode == 0


def test_server_side_apply_two_managers_and_a_conflict(kubectl, apiserver, tmp_path):
    ns = fresh_ns(kubectl, apiserver, "ssa")

    def ssa(manager: str, doc: dict, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return kctl(kubectl, apiserver, "apply", "--server-side", f"--field-manager={manager}", "-n", ns, *extra,
                    "-f", "-", input=yaml.safe_dump(doc), check=check)

    ssa("alice", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"},
                  "data": {"size": "1", "owner": "alice"}})
    bob = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"size": "2", "b": "x"}}
    clash = ssa("bob", bob, check=False)
    assert clash.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "alice": .data.size' in clash.stderr
    assert get_json(kubectl, apiserver, "cm", "shared", "-n", ns)["data"] == {"size": "1", "owner": "alice"}
    ssa("bob", bob, "--force-conflicts")
    live = get_json(kubectl, apiserver, "cm", "shared", "-n", ns, "--show-managed-fields")
    assert live["data"] == {"size": "2", "owner": "alice", "b": "x"}
    owners = {m["manager"]: m for m in live["metadata"]["managedFields"]}
    assert owners["alice"]["operation"] == owners["bob"]["operation"] == "Apply"
    assert owners["alice"]["fieldsV1"] == {"f:data": {"f:owner": {}}}
    assert owners["bob"]["fieldsV1"] == {"f:data": {"f:b": {}, "f:size": {}}}
    # alice drops `owner` from her configuration: nobody else owns it, so it goes; bob's fields stay
    ssa("alice", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"size": "2"}})
    assert get_json(kubectl, apiserver, "cm", "shared", "-n", ns)["data"] == {"size": "2", "b": "x"}

    # a built-in served from kube's schema: containers merge by name, replicas conflict
    web = deployment("web")
    web["spec"]["replicas"] = 2
    ssa("alice", web)
    scaler = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    clash = ssa("hpa", scaler, check=False)
    assert 'conflict with "alice": .spec.replicas' in clash.stderr
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [
                   {"name": "log", "image": "busybox"}]}}}}
    ssa("mesh", sidecar)
    containers = get_json(kubectl, apiserver, "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "log"]


# ----------------------------------------------------------------------------------- storage-only kinds


def test_stored_only_kinds_warn_print_and_explain(kubectl, apiserver, tmp_path):
    ns = fresh_ns(kubectl, apiserver, "inert")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    app = write(tmp_path / "app", deploy=deployment("web"), pod=pod, svc=service("web"),
                headless=service("peers", clusterIP="None"), nodeport=service("edge", type="NodePort"))
    out = kctl(kubectl, apiserver, "apply", "-n", ns, "-f", str(app))
    assert ("Warning: apps/v1 Deployment is stored only: nothing runs it on k3c's embedded API server; "
            "use a LocalContainer to run a container") in out.stderr
    assert "Warning: v1 Pod is stored only: nothing runs it" in out.stderr

    svc = get_json(kubectl, apiserver, "svc", "web", "-n", ns)["spec"]
    assert ipaddress.ip_address(svc["clusterIP"]) in ipaddress.ip_network("10.43.0.0/16")
    assert svc["clusterIPs"] == [svc["clusterIP"]] and svc["ipFamilies"] == ["IPv4"]
    assert (svc["ipFamilyPolicy"], svc["sessionAffinity"], svc["type"]) == ("SingleStack", "None", "ClusterIP")
    assert svc["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert get_json(kubectl, apiserver, "svc", "peers", "-n", ns)["spec"]["clusterIP"] == "None"
    edge = get_json(kubectl, apiserver, "svc", "edge", "-n", ns)["spec"]
    assert 30000 <= edge["ports"][0]["nodePort"] <= 32767 and edge["clusterIP"] != svc["clusterIP"]

    live = get_json(kubectl, apiserver, "deploy", "web", "-n", ns)
    assert live["status"] == {}  # nothing runs it: no replicas, ready or not
    assert live["spec"]["strategy"] == {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert get_json(kubectl, apiserver, "pod", "one", "-n", ns)["status"]["phase"] == "Pending"
    pending = kctl(kubectl, apiserver, "get", "pods", "-n", ns, "--field-selector=status.phase=Pending", "-o", "name")
    assert pending.stdout.split() == ["pod/one"]

    tables = kctl(kubectl, apiserver, "get", "deploy,po,svc", "-n", ns).stdout
    blocks = [b.splitlines() for b in tables.strip().split("\n\n")]
    assert blocks[0][0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert blocks[0][1].split()[:4] == ["deployment.apps/web", "0/1", "0", "0"]
    assert blocks[1][0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert blocks[1][1].split()[:4] == ["pod/one", "0/1", "Pending", "0"]
    assert blocks[2][0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    rows = {r.split()[0]: r.split() for r in blocks[2][1:]}
    assert rows["service/web"][1:5] == ["ClusterIP", svc["clusterIP"], "<none>", "80/TCP"]
    assert rows["service/edge"][4] == f"80:{edge['ports'][0]['nodePort']}/TCP"
    wide = kctl(kubectl, apiserver, "get", "deploy", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and wide[1].split()[-3:] == [
        "web", "nginx:1.25", "app=web"]
    listed = kctl(kubectl, apiserver, "get", "stored-only", "-n", ns, "-o", "name").stdout.split()
    assert {"deployment.apps/web", "pod/one", "service/web"} <= set(listed)

    explain = kctl(kubectl, apiserver, "explain", "deployment.spec.replicas").stdout
    assert "replicas" in explain and "<integer>" in explain and "Number of desired pods" in explain


def test_unknown_fields_of_built_ins_are_refused(kubectl, apiserver):
    ns = fresh_ns(kubectl, apiserver, "strict")
    bad = deployment("typo")
    bad["spec"]["replica"] = 3
    out = kctl(kubectl, apiserver, "create", "-n", ns, "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert out.returncode != 0 and 'unknown field "spec.replica"' in out.stderr


# ------------------------------------------------------------------------------------------------- kpt


@pytest.fixture(scope="module")
def k3c_crds(apiserver):
    kubectls = oldest_and_newest_kubectl()
    if not kubectls:
        pytest.skip("no kubectl on this machine")
    run_kubectl(kubectls[-1], apiserver.kubeconfig, "apply", "-f", str(REPO / "crds"))
    run_kubectl(kubectls[-1], apiserver.kubeconfig, "wait", "--for=condition=established", "--timeout=20s",
                "crd/localcontainers.k3c.io")


def test_kpt_live_package_lifecycle(apiserver, k3c_crds, tmp_path):
    kpt = shutil.which("kpt")
    if kpt is None:
        pytest.skip("no kpt on this machine")
    env = kubectl_env(apiserver.kubeconfig)
    pkg = tmp_path / "pkg"
    write(pkg, cm={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kcm", "namespace": "default"},
                   "data": {"a": "1"}},
          lc={"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer",
              "metadata": {"name": "klc", "namespace": "default"}, "spec": {"image": "busybox"}})
    (pkg / "Kptfile").write_text("apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: pkg\n")

    def live(*args: str) -> subprocess.CompletedProcess:
        cp = subprocess.run([kpt, "live", *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert cp.returncode == 0, f"kpt live {args}: {cp.stdout}{cp.stderr}"
        return cp

    live("init", str(pkg))
    assert (pkg / "resourcegroup.yaml").exists()
    live("install-resource-group")
    applied = live("apply", str(pkg), "--reconcile-timeout=30s").stdout
    assert "apply result: 2 attempted, 2 successful" in applied, applied
    status = live("status", str(pkg)).stdout
    assert "configmap/default/kcm is Current" in status and "localcontainer.k3c.io/default/klc is Current" in status
    kubectl = oldest_and_newest_kubectl()[-1]
    assert get_json(kubectl, apiserver, "cm", "kcm", "-n", "default")["data"] == {"a": "1"}
    destroyed = live("destroy", str(pkg)).stdout
    assert "delete result: 2 attempted, 2 successful" in destroyed, destroyed
    gone = kctl(kubectl, apiserver, "get", "cm/kcm", "localcontainers.k3c.io/klc", "-n", "default", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
