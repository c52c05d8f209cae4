"""kind-config.yaml is a valid kind Cluster (v1alpha4) with what the agent needs. kind cannot run here, so the
file is checked against kind's v1alpha4 types, written down below as a JSON schema: kind decodes its config
strictly (an unknown field is an error), hence ``additionalProperties: false`` everywhere.

The facts are those of kind's ``pkg/apis/config/v1alpha4`` (Cluster, Node, Networking, Mount, PortMapping,
PatchJSON6902 and their enums)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _object(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False, "required": list(required)}


_STRINGS = {"type": "array", "items": {"type": "string"}}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_PATCH_JSON6902 = _object({"group": {"type": "string"}, "version": {"type": "string"},
                           "kind": {"type": "string"}, "patch": {"type": "string"}})
_MOUNT = _object({
    "containerPath": {"type": "string"}, "hostPath": {"type": "string"}, "readOnly": {"type": "boolean"},
    "selinuxRelabel": {"type": "boolean"},
    "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
})
_PORT_MAPPING = _object({"containerPort": _INT32, "hostPort": _INT32, "listenAddress": {"type": "string"},
                         "protocol": {"enum": ["TCP", "UDP", "SCTP"]}})
_NODE = _object({
    "role": {"enum": ["control-plane", "worker"]}, "image": {"type": "string"}, "labels": _STRING_MAP,
    "extraMounts": {"type": "array", "items": _MOUNT},
    "extraPortMappings": {"type": "array", "items": _PORT_MAPPING}, "gpus": {"type": "string"},
    "kubeadmConfigPatches": _STRINGS, "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_JSON6902},
})
_NETWORKING = _object({
    "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]}, "apiServerPort": _INT32, "apiServerAddress": {"type": "string"},
    "podSubnet": {"type": "string"}, "serviceSubnet": {"type": "string"}, "disableDefaultCNI": {"type": "boolean"},
    "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]}, "dnsSearch": _STRINGS,
})
KIND_V1ALPHA4_CLUSTER = _object({
    "kind": {"const": "Cluster"}, "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"}, "name": {"type": "string"},
    "nodes": {"type": "array", "items": _NODE}, "networking": _NETWORKING,
    "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}}, "runtimeConfig": _STRING_MAP,
    "kubeadmConfigPatches": _STRINGS, "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_JSON6902},
    "containerdConfigPatches": _STRINGS, "containerdConfigPatchesJSON6902": _STRINGS,
}, required=("kind", "apiVersion"))


def _config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    return doc


def test_kind_config_matches_kinds_v1alpha4_schema() -> None:
    jsonschema.validate(_config(), KIND_V1ALPHA4_CLUSTER)


@pytest.mark.parametrize("path,bad", [
    (("nodes", 0, "extraMount"), []),  # misspelt field
    (("nodes", 1, "role"), "agent"),  # not a role kind knows
    (("nodes", 0, "extraMounts", 0, "propagation"), "rshared"),  # Linux's word, not kind's
])
def test_the_schema_rejects_what_kind_would(path: tuple[Any, ...], bad: Any) -> None:
    doc = copy.deepcopy(_config())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, KIND_V1ALPHA4_CLUSTER)


def test_one_control_plane_one_worker_each_with_its_own_k3c_root() -> None:
    nodes = _config()["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker"]
    daemonset = yaml.safe_load((REPO / "manifests" / "base" / "daemonset.yaml").read_text())
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    root = volumes["root-dir"]["hostPath"]["path"]  # the node path the agent keeps its state in
    host_paths = []
    for node in nodes:
        mounts = {m["containerPath"]: m for m in node["extraMounts"]}
        assert root in mounts, node
        host_paths.append(mounts[root]["hostPath"])
    assert len(set(host_paths)) == len(nodes)  # two nodes' containerd never share a root
