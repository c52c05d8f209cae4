"""Real kubectl (oldest and newest on the machine) against the embedded API server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import kubectl_env, run_kubectl
from tests.support.sample_crds import WIDGET_CRD


@pytest.fixture(scope="module")
def crd(apiserver, tmp_path_factory):
    from tests.support.harness import oldest_and_newest_kubectl

    kubectls = oldest_and_newest_kubectl()
    if not kubectls:
        pytest.skip("no kubectl on this machine")
    path = tmp_path_factory.mktemp("crd") / "crd.yaml"
    path.write_text(WIDGET_CRD)
    run_kubectl(kubectls[-1], apiserver.kubeconfig, "apply", "-f", str(path))
    run_kubectl(kubectls[-1], apiserver.kubeconfig, "wait", "--for=condition=established", "--timeout=10s",
                "crd/widgets.test.k3c.io")
    return path


def ns_for(kubectl: str, apiserver, suffix: str) -> str:
    """A fresh namespace per test and kubectl version, so tests never see each other's objects."""
    name = f"{suffix}-{Path(kubectl).name.replace('.', '-')}"
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "namespace", name)
    return name


def widget(name: str, size: int = 3, **spec) -> str:
    spec_doc = {"size": size, **spec}
    return json.dumps({"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec_doc})


def test_apply_get_printer_columns(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "cols")
    out = run_kubectl(kubectl, apiserver.kubeconfig, "apply", "-n", ns, "-f", "-", input=widget("w1", 7, shape="cube"))
    assert "widget.test.k3c.io/w1 created" in out.stdout
    again = run_kubectl(kubectl, apiserver.kubeconfig, "apply", "-n", ns, "-f", "-", input=widget("w1", 7, shape="cube"))
    assert "unchanged" in again.stdout
    table = run_kubectl(kubectl, apiserver.kubeconfig, "get", "widgets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "COLOR", "READY", "AGE"]
    assert table[1].split()[:3] == ["w1", "7", "red"]  # color defaulted from the schema
    wide = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "COLOR", "READY", "SHAPE", "AGE"]
    assert "cube" in wide[1]
    as_json = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "w1", "-n", ns, "-o", "json").stdout)
    assert as_json["spec"] == {"size": 7, "color": "red", "shape": "cube"}
    assert as_json["metadata"]["generation"] == 1
    as_yaml = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "w1", "-n", ns, "-o", "yaml").stdout
    assert "kind: Widget" in as_yaml and "size: 7" in as_yaml
    jp = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns, "-o", "jsonpath={.items[0].spec.color}")
    assert jp.stdout == "red"
    in_all = run_kubectl(kubectl, apiserver.kubeconfig, "get", "all", "-n", ns).stdout
    assert "w1" in in_all and "SIZE" in in_all  # the category "all" includes widgets


def test_validation_errors(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "valid")
    bad = run_kubectl(kubectl, apiserver.kubeconfig, "apply", "-n", ns, "-f", "-", input=widget("w2", 1000),
                      check=False)
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr and "100" in bad.stderr
    unknown = run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-",
                          input=widget("w3", 1, bogus="x"), check=False)
    assert unknown.returncode != 0
    assert 'unknown field "spec.bogus"' in unknown.stderr
    enum = run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-",
                       input=widget("w4", 1, color="pink"), check=False)
    assert enum.returncode != 0 and "Unsupported value" in enum.stderr
    gone = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "nope", "-n", ns, check=False)
    assert gone.returncode == 1
    assert 'widgets.test.k3c.io "nope" not found' in gone.stderr


def test_patch_label_describe_delete(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "patch")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", input=widget("w1", 1))
    run_kubectl(kubectl, apiserver.kubeconfig, "patch", "wd", "w1", "-n", ns, "--type=merge", "-p",
                '{"spec":{"size":5}}')
    run_kubectl(kubectl, apiserver.kubeconfig, "patch", "wd", "w1", "-n", ns, "--type=json", "-p",
                '[{"op":"replace","path":"/spec/color","value":"blue"}]')
    failed = run_kubectl(kubectl, apiserver.kubeconfig, "patch", "wd", "w1", "-n", ns, "--type=json", "-p",
                         '[{"op":"test","path":"/spec/size","value":99}]', check=False)
    assert failed.returncode != 0
    run_kubectl(kubectl, apiserver.kubeconfig, "label", "wd", "w1", "-n", ns, "tier=gold")
    obj = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "w1", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["size"] == 5 and obj["spec"]["color"] == "blue"
    assert obj["metadata"]["labels"] == {"tier": "gold"}
    assert obj["metadata"]["generation"] == 3  # two spec changes; the label did not count
    sel = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns, "-l", "tier=gold", "-o", "name").stdout
    assert sel.strip() == "widget.test.k3c.io/w1"
    none = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns, "-l", "tier=lead", "-o", "name").stdout
    assert none.strip() == ""
    desc = run_kubectl(kubectl, apiserver.kubeconfig, "describe", "wd", "w1", "-n", ns).stdout
    assert "Name:" in desc and "w1" in desc and "Size:" in desc
    run_kubectl(kubectl, apiserver.kubeconfig, "delete", "wd", "w1", "-n", ns)
    left = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns, "-o", "name").stdout
    assert left.strip() == ""


def test_edit_with_scripted_editor(kubectl, apiserver, crd, tmp_path):
    ns = ns_for(kubectl, apiserver, "edit")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", input=widget("w1", 1))
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\np = sys.argv[-1]\ns = open(p).read()\n"
        "open(p, 'w').write(s.replace('size: 1', 'size: 42'))\n"
    )
    run_kubectl(kubectl, apiserver.kubeconfig, "edit", "wd", "w1", "-n", ns,
                env={"KUBE_EDITOR": f"{sys.executable} {editor}", "EDITOR": f"{sys.executable} {editor}"})
    size = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "w1", "-n", ns, "-o", "jsonpath={.spec.size}")
    assert size.stdout == "42"


def test_wait_for_condition(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "wait")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", input=widget("w1", 1))
    env = kubectl_env(apiserver.kubeconfig)
    waiter = subprocess.Popen([kubectl, "wait", "-n", ns, "--for=condition=Ready", "--timeout=30s", "wd/w1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    assert waiter.poll() is None  # not ready yet
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Done", "message": "ok",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    run_kubectl(kubectl, apiserver.kubeconfig, "patch", "wd", "w1", "-n", ns, "--subresource=status",
                "--type=merge", "-p", json.dumps(status))
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "condition met" in out
    ready = run_kubectl(kubectl, apiserver.kubeconfig, "get", "wd", "-n", ns).stdout.splitlines()[1].split()
    assert ready[3] == "True"


def test_get_watch_streams_changes(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "watch")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", input=widget("w1", 1))
    env = kubectl_env(apiserver.kubeconfig)
    watcher = subprocess.Popen([kubectl, "get", "wd", "-n", ns, "-w", "--request-timeout=8s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", input=widget("w2", 2))
    run_kubectl(kubectl, apiserver.kubeconfig, "patch", "wd", "w1", "-n", ns, "--type=merge", "-p",
                '{"spec":{"size":9}}')
    time.sleep(1.5)
    watcher.terminate()
    out, _ = watcher.communicate(timeout=10)
    lines = [line.split() for line in out.splitlines() if line.strip()]
    names = [cols[0] for cols in lines]
    assert names[0] == "NAME"
    assert "w2" in names
    assert any(cols[0] == "w1" and cols[1] == "9" for cols in lines)


def test_explain(kubectl, apiserver, crd):
    out = run_kubectl(kubectl, apiserver.kubeconfig, "explain", "widgets.spec").stdout
    assert "What the widget should be" in out
    assert "size" in out and "How big" in out
    field = run_kubectl(kubectl, apiserver.kubeconfig, "explain", "wd.spec.color").stdout
    assert "color" in field.lower()


def test_builtin_creates(kubectl, apiserver, tmp_path):
    ns = ns_for(kubectl, apiserver, "builtin")
    f = tmp_path / "file.txt"
    f.write_text("from a file\n")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "configmap", "cm1", "-n", ns, "--from-literal=a=b",
                f"--from-file=f.txt={f}")
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "secret", "generic", "s1", "-n", ns,
                "--from-literal=password=hunter2")
    cm = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "get", "cm", "cm1", "-n", ns, "-o", "json").stdout)
    assert cm["data"] == {"a": "b", "f.txt": "from a file\n"}
    pw = run_kubectl(kubectl, apiserver.kubeconfig, "get", "secret", "s1", "-n", ns,
                     "-o", "jsonpath={.data.password}").stdout
    import base64

    assert base64.b64decode(pw) == b"hunter2"
    table = run_kubectl(kubectl, apiserver.kubeconfig, "get", "secrets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"] and table[1].split()[:3] == ["s1", "Opaque", "1"]
    dup = run_kubectl(kubectl, apiserver.kubeconfig, "create", "configmap", "cm1", "-n", ns, check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    run_kubectl(kubectl, apiserver.kubeconfig, "delete", "namespace", ns, "--timeout=20s")
    gone = run_kubectl(kubectl, apiserver.kubeconfig, "get", "cm", "cm1", "-n", ns, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_describe_shows_events(kubectl, apiserver, crd):
    ns = ns_for(kubectl, apiserver, "events")
    obj = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "create", "-n", ns, "-f", "-", "-o", "json",
                                 input=widget("w1", 1)).stdout)
    event = {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "w1.1", "namespace": ns},
        "involvedObject": {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "name": "w1", "namespace": ns,
                           "uid": obj["metadata"]["uid"]},
        "reason": "Polished", "message": "the widget shines", "type": "Normal", "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "test"},
    }
    run_kubectl(kubectl, apiserver.kubeconfig, "create", "-f", "-", input=json.dumps(event))
    desc = run_kubectl(kubectl, apiserver.kubeconfig, "describe", "wd", "w1", "-n", ns).stdout
    assert "Polished" in desc and "the widget shines" in desc
    events = run_kubectl(kubectl, apiserver.kubeconfig, "get", "events", "-n", ns).stdout
    assert "Polished" in events and "widget/w1" in events
