"""`k3c install`'s decisions that need no cluster: the runtime from the nodes, the selector, readiness."""

from __future__ import annotations

from typing import Any

import pytest

from k3c.cli.errors import CLIError
from k3c.cli.install import agents_ready, node_runtime, parse_selector, runtime_of


def _node(name: str, runtime: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels},
            "status": {"nodeInfo": {"containerRuntimeVersion": runtime}}}


@pytest.mark.parametrize("version,runtime", [
    ("containerd://1.7.23-k3s2", "k3s"), ("containerd://2.0.4-k3s1", "k3s"), ("containerd://1.7.24", "containerd"),
    ("containerd://1.6.20-0ubuntu1", "containerd"), ("cri-o://1.30.0", ""), ("docker://24.0.7", ""), ("", ""),
])
def test_node_runtime(version: str, runtime: str) -> None:
    assert node_runtime(version) == runtime


def test_runtime_of_the_selected_nodes() -> None:
    nodes = [_node("a", "containerd://1.7.23-k3s2", pool="edge"), _node("b", "containerd://1.7.24", pool="core")]
    assert runtime_of(nodes, {"pool": "edge"}) == "k3s"
    assert runtime_of(nodes, {"pool": "core"}) == "containerd"
    with pytest.raises(CLIError, match=r"different runtimes \(containerd: b; k3s: a\)"):
        runtime_of(nodes, {})
    with pytest.raises(CLIError, match="no node matches"):
        runtime_of(nodes, {"pool": "gpu"})


def test_parse_selector() -> None:
    assert parse_selector(["a=1,b=2", "c="]) == {"a": "1", "b": "2", "c": ""}
    with pytest.raises(CLIError, match="KEY=VALUE"):
        parse_selector(["novalue"])


def test_agents_ready_follows_the_controllers_report() -> None:
    ds: dict[str, Any] = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}
    assert agents_ready(ds) == (False, "the DaemonSet controller has not seen the current spec yet")
    ds["status"] = {"observedGeneration": 2, "desiredNumberScheduled": 0}
    assert agents_ready(ds)[0] is False and "no node runs an agent" in agents_ready(ds)[1]
    ds["status"].update(desiredNumberScheduled=3, numberReady=3, updatedNumberScheduled=2)
    assert agents_ready(ds) == (False, "3/3 agents ready, 2 up to date")  # a rollout still going on
    ds["status"]["updatedNumberScheduled"] = 3
    assert agents_ready(ds)[0] is True


def test_the_agents_image_is_imported_only_into_a_runtime_of_this_machine(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """What install does not import, and why, without touching a runtime: an image the nodes pull, a machine
    that is none of the nodes (its default socket would be, say, docker's containerd), a socket not here."""
    import socket

    from k3c.cli import agentimport
    from k3c.cli.install import DEFAULT_IMAGE

    agentimport.ensure("registry.example/k3c-agent:1", "containerd", None, {"n1": "n1"})
    assert capsys.readouterr() == ("", "")

    agentimport.ensure(DEFAULT_IMAGE, "containerd", None, {"kind-control-plane": "kind-control-plane"})
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "is none of the nodes" in err and "build-agent-image" in err

    host = socket.gethostname().lower()
    missing = tmp_path / "none.sock"
    for address, nodes in ((str(missing), {"kind-control-plane": ""}), (str(missing), {}),
                           (str(missing), {"n1": host})):
        agentimport.ensure(DEFAULT_IMAGE, "k3s", address, nodes)
        out, err = capsys.readouterr()
        assert out == "" and err == (f"k3c: no node runtime at {missing} on this machine, {DEFAULT_IMAGE} not "
                                     f"imported: on every node, {agentimport.BY_HAND}\n")
    assert agentimport.default_address("k3s") == "/run/k3s/containerd/containerd.sock"
    assert agentimport.default_address("containerd") == "/run/containerd/containerd.sock"
