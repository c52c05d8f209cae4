"""Tests for k3c.apiserver.protobuf: the Kubernetes protobuf body codec.

The fixtures under tests/support/fixtures/protobuf/ are real request bodies: `*-1.3x.bin` were sent by
kubectl 1.32/1.33 (Content-Type application/vnd.kubernetes.protobuf), `*-1.31.json` by kubectl 1.31 (which
still sends JSON) for the same command.  Decoding the protobuf capture must give the JSON capture's dict.
"""

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from k3c.apiserver.proto import k8s_core_v1_pb2, k8s_runtime_pb2
from k3c.apiserver.protobuf import MAGIC, PROTOBUF, decode, encode

FIXTURES = Path(__file__).parents[1] / "support" / "fixtures" / "protobuf"

OBJECT_META = {
    "name": "demo",
    "generateName": "demo-",
    "namespace": "team-a",
    "selfLink": "/api/v1/namespaces/team-a/configmaps/demo",
    "uid": "5f0c1a9e-0000-4000-8000-000000000001",
    "resourceVersion": "42",
    "generation": 3,
    "creationTimestamp": "2024-01-01T00:00:00Z",
    "deletionTimestamp": "2024-02-29T23:59:59Z",
    "deletionGracePeriodSeconds": 0,
    "labels": {"app": "demo", "tier": ""},
    "annotations": {"note": "héllo ✓"},
    "ownerReferences": [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ],
    "finalizers": ["k3c.dev/cleanup", "kubernetes"],
    "managedFields": [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-01-01T00:00:01Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:a": {}}},
            "subresource": "status",
        }
    ],
}

ROUND_TRIPS: dict[str, dict[str, Any]] = {
    "namespace": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "foo", "labels": {"kubernetes.io/metadata.name": "foo"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {
            "phase": "Terminating",
            "conditions": [
                {
                    "type": "NamespaceDeletionContentFailure",
                    "status": "False",
                    "lastTransitionTime": "2024-05-06T07:08:09Z",
                    "reason": "ContentDeleted",
                    "message": "All content successfully deleted",
                }
            ],
        },
    },
    "empty namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bare"}, "spec": {}},
    "configmap": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": OBJECT_META,
        "data": {"a": "b", "empty": "", "multi": "line 1\nline 2\n"},
        "binaryData": {"blob": base64.b64encode(b"\x00\xff\xfe binary").decode()},
        "immutable": False,
    },
    "secret": {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default"},
        "data": {"user": "YWRtaW4=", "empty": ""},
        "stringData": {"password": "hunter2"},
        "type": "kubernetes.io/basic-auth",
        "immutable": True,
    },
    "event": {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "pod-a.17a", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "namespace": "default",
            "name": "pod-a",
            "uid": "u-2",
            "apiVersion": "v1",
            "resourceVersion": "7",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "Pulled",
        "message": "Container image pulled",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:05:00Z",
        "count": 5,
        "type": "Normal",
        "eventTime": "2024-01-01T00:00:00.123456Z",
        "series": {"count": 2, "lastObservedTime": "2024-01-01T00:05:00.000001Z"},
        "action": "Pulling",
        "related": {"kind": "Node", "name": "node-1"},
        "reportingComponent": "k3c",
        "reportingInstance": "k3c-node-1",
    },
    "minimal event": {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {},
        "source": {},
    },
    "delete options": {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u-3", "resourceVersion": "9"},
        "orphanDependents": False,
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
        "ignoreStoreReadErrorWithClusterBreakingPotential": False,
    },
    "delete options of another group": {
        "apiVersion": "apps/v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    },
}


@pytest.mark.parametrize("obj", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(obj: dict[str, Any]) -> None:
    body = encode(obj)
    assert body.startswith(MAGIC)
    assert decode(body) == obj


def test_encode_is_deterministic_and_skips_nulls() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "creationTimestamp": None}}
    assert encode(obj) == encode(json.loads(json.dumps(obj)))
    assert decode(encode(obj)) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}


def test_times_are_normalised_to_utc() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"creationTimestamp": "2024-01-01T02:00:00+02:00"},
    }
    assert decode(encode(obj))["metadata"] == {"creationTimestamp": "2024-01-01T00:00:00Z"}


def _envelope(api_version: str, kind: str, raw: bytes, **extra: str) -> bytes:
    unknown = k8s_runtime_pb2.Unknown(
        typeMeta=k8s_runtime_pb2.TypeMeta(apiVersion=api_version, kind=kind), raw=raw, **extra
    )
    return MAGIC + unknown.SerializeToString()


def test_go_style_zero_values_are_left_out() -> None:
    """Go's encoder writes plain (non-pointer) fields even when zero; JSON omits them."""
    event = k8s_core_v1_pb2.Event()
    event.metadata.name = "e"
    event.metadata.namespace = ""
    event.metadata.generation = 0
    event.metadata.creationTimestamp.SetInParent()
    event.involvedObject.SetInParent()
    event.source.SetInParent()
    event.eventTime.SetInParent()
    event.count = 0
    event.reason = ""
    decoded = decode(_envelope("v1", "Event", event.SerializeToString(), contentType=""))
    assert decoded == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {},
        "source": {},
    }


def _fixture_pair(protobuf_name: str, json_name: str) -> tuple[bytes, dict[str, Any]]:
    body = (FIXTURES / protobuf_name).read_bytes()
    json_form = json.loads((FIXTURES / json_name).read_text())
    json_form["metadata"].pop("creationTimestamp")  # JSON says null; decode() leaves unset fields out
    return body, json_form


@pytest.mark.parametrize(
    ("protobuf_name", "json_name"),
    [
        ("namespace-1.33.bin", "namespace-1.31.json"),
        ("configmap-1.33.bin", "configmap-1.31.json"),
        ("secret-basic-auth-1.32.bin", "secret-basic-auth-1.31.json"),
    ],
)
def test_kubectl_capture_decodes_like_its_json_form(protobuf_name: str, json_name: str) -> None:
    body, json_form = _fixture_pair(protobuf_name, json_name)
    assert decode(body) == json_form


def test_kubectl_configmap_capture_content() -> None:
    # kubectl 1.33 create configmap cm1 -n default --from-literal a=b --from-file=txt.txt --from-file=bin.dat
    assert decode((FIXTURES / "configmap-1.33.bin").read_bytes()) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm1", "namespace": "default"},
        "data": {"a": "b", "txt.txt": "text file\n"},
        "binaryData": {"bin.dat": base64.b64encode(b"hello\x00\xff\xfebin").decode()},
    }


def test_kubectl_namespace_capture_re_encodes_to_a_decodable_body() -> None:
    decoded = decode((FIXTURES / "namespace-1.33.bin").read_bytes())
    assert decode(encode(decoded)) == decoded


def test_content_type_constant() -> None:
    assert PROTOBUF == "application/vnd.kubernetes.protobuf"


def _namespace_with_fields_v1(raw: bytes) -> bytes:
    namespace = k8s_core_v1_pb2.Namespace()
    namespace.metadata.managedFields.add().fieldsV1.Raw = raw
    return namespace.SerializeToString()


def _configmap_with_data_key(key: bytes) -> bytes:
    configmap = k8s_core_v1_pb2.ConfigMap()
    configmap.data["k"] = "v"
    return configmap.SerializeToString().replace(b"k", key)


_GOOD_NAMESPACE = encode({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ok"}})

MALFORMED: dict[str, bytes] = {
    "empty body": b"",
    "json body": b'{"kind":"Namespace","apiVersion":"v1"}',
    "magic only": MAGIC,
    "wrong magic": b"k8s\x01" + _GOOD_NAMESPACE[4:],
    "truncated envelope": _GOOD_NAMESPACE[:-3],
    "garbage envelope": MAGIC + b"\xff\xff\xff\xff",
    "garbage object": _envelope("v1", "Namespace", b"\x0a\xff\x01"),
    "unsupported kind": _envelope("v1", "Pod", b""),
    "events.k8s.io event": _envelope("events.k8s.io/v1", "Event", b""),
    "no type meta": MAGIC + k8s_runtime_pb2.Unknown(raw=b"").SerializeToString(),
    "compressed": _envelope("v1", "Namespace", b"", contentEncoding="gzip"),
    "json inside envelope": _envelope("v1", "Namespace", b"{}", contentType="application/json"),
    "invalid utf-8 name": _envelope("v1", "Namespace", b"\x0a\x05\x0a\x03\xff\xfe\x00"),
    "invalid utf-8 map key": _envelope("v1", "ConfigMap", _configmap_with_data_key(b"\xff")),
    "bad fieldsV1 json": _envelope("v1", "Namespace", _namespace_with_fields_v1(b"{")),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_raises_value_error(body: bytes) -> None:
    with pytest.raises(ValueError) as info:
        decode(body)
    assert "\n" not in str(info.value)


BAD_OBJECTS: dict[str, Any] = {
    "no kind": {"apiVersion": "v1", "metadata": {}},
    "unsupported kind": {"apiVersion": "v1", "kind": "Pod"},
    "unknown field": {"apiVersion": "v1", "kind": "ConfigMap", "spec": {}},
    "unknown nested field": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"nmae": "x"}},
    "bad base64": {"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}},
    "wrong scalar type": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generation": "1"}},
    "bool for int": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generation": True}},
    "string for bool": {"apiVersion": "v1", "kind": "Secret", "immutable": "yes"},
    "number in string map": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}},
    "out of range": {"apiVersion": "v1", "kind": "Event", "count": 2**40},
    "list for map": {"apiVersion": "v1", "kind": "ConfigMap", "data": ["a"]},
    "map for list": {"apiVersion": "v1", "kind": "Namespace", "spec": {"finalizers": {"a": 1}}},
    "bad time": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"creationTimestamp": "yesterday"}},
    "naive time": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"creationTimestamp": "2024-01-01T00:00:00"},
    },
    "string for object": {"apiVersion": "v1", "kind": "Namespace", "metadata": "foo"},
}


@pytest.mark.parametrize("obj", BAD_OBJECTS.values(), ids=BAD_OBJECTS.keys())
def test_encode_rejects_bad_objects(obj: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        encode(obj)


@pytest.mark.parametrize("obj", [
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
     "spec": {"resourceAttributes": {"namespace": "ns", "verb": "list", "resource": "configmaps"}}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
     "spec": {"user": "bob", "groups": ["a", "b"], "nonResourceAttributes": {"path": "/api", "verb": "get"}}},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "ns"}},
    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
     "spec": {"audiences": ["x"], "expirationSeconds": 3600,
              "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": "u"}}},
    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "t", "audiences": ["a"]}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"},
     "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}],
     "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}, "matchExpressions": [
         {"key": "k", "operator": "In", "values": ["v"]}]}]}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "n"},
     "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "n"}],
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "automountServiceAccountToken": False},
])
def test_review_kinds_round_trip(obj: dict[str, Any]) -> None:
    """kubectl sends the reviews (``auth can-i``), TokenRequests, RBAC objects and ServiceAccounts as protobuf."""
    assert decode(encode(obj)) == obj
