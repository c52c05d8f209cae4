"""GET /openapi/v2: the protobuf Swagger document kubectl 1.27/1.28 need before apply/create/edit/explain."""

from __future__ import annotations

import json

import pytest
import yaml
from harness import WIDGET_CRD, RawClient, kubectl_versions, run_kubectl

from k3c.apiserver import openapi_v2
from k3c.apiserver.proto import openapiv2_pb2 as pb
from k3c.apiserver.resources import BUILTINS, ResourceType, from_crd

GVK = "x-kubernetes-group-version-kind"


def _types() -> list[ResourceType]:
    return list(BUILTINS) + from_crd(yaml.safe_load(WIDGET_CRD))


def _parse(types: list[ResourceType]) -> pb.Document:
    doc = pb.Document()
    doc.ParseFromString(openapi_v2.document(types))
    return doc


def _ext(extensions, name: str):
    for e in extensions:
        if e.name == name:
            return yaml.safe_load(e.value.yaml)
    return None


def supports_query_param(doc: pb.Document, group: str, version: str, kind: str, param: str) -> bool:
    """cli-runtime's supportsQueryParam: the first PATCH for the GVK decides; raises when there is none."""
    for named in doc.paths.path:
        op = named.value.patch
        if not named.value.HasField("patch"):
            continue
        gvk = _ext(op.vendor_extension, GVK)
        if gvk != {"group": group, "kind": kind, "version": version}:
            continue
        return any(p.parameter.non_body_parameter.query_parameter_sub_schema.name == param for p in op.parameters)
    raise LookupError(f"path not found for {group}/{version} {kind}")


def _schemas(s: pb.Schema):
    yield s
    for p in s.properties.additional_properties:
        yield from _schemas(p.value)
    if s.additional_properties.HasField("schema"):
        yield from _schemas(s.additional_properties.schema)
    for i in s.items.schema:
        yield from _schemas(i)
    for a in s.all_of:
        yield from _schemas(a)


def test_document_parses_and_field_validation_is_found():
    types = _types()
    doc = _parse(types)
    assert doc.swagger == "2.0"
    for rt in types:
        assert supports_query_param(doc, rt.group, rt.version, rt.kind, "fieldValidation"), rt.kind
    with pytest.raises(LookupError):
        supports_query_param(doc, "test.k3c.io", "v1", "Gadget", "fieldValidation")

    paths = {p.name: p.value for p in doc.paths.path}
    patch = paths["/apis/test.k3c.io/v1/namespaces/{namespace}/widgets/{name}"].patch
    names = {p.parameter.non_body_parameter.query_parameter_sub_schema.name for p in patch.parameters}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names
    assert paths["/api/v1/namespaces/{namespace}/configmaps/{name}"].HasField("patch")
    assert paths["/api/v1/namespaces/{name}"].HasField("patch")  # cluster-scoped form


def test_definitions_parse_as_kube_openapi_requires():
    doc = _parse(_types())
    defs = {d.name: d.value for d in doc.definitions.additional_properties}
    by_gvk = {}
    for name, s in defs.items():
        for g in _ext(s.vendor_extension, GVK) or []:
            by_gvk[(g["group"], g["version"], g["kind"])] = name
        for node in _schemas(s):
            ref = node._ref
            if ref:
                assert ref.startswith("#/definitions/") and ref[len("#/definitions/"):] in defs, ref
            assert len(node.type.value) <= 1
            assert set(node.type.value) <= {"string", "number", "integer", "boolean", "object", "array"}
            if list(node.type.value) == ["array"]:
                assert len(node.items.schema) == 1, name
    widget = defs[by_gvk[("test.k3c.io", "v1", "Widget")]]
    assert widget.description == "A widget for tests."
    props = {p.name: p.value for p in widget.properties.additional_properties}
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(props)
    spec = {p.name: p.value for p in props["spec"].properties.additional_properties}
    assert list(spec["size"].type.value) == ["integer"] and spec["size"].maximum == 100
    assert [yaml.safe_load(e.yaml) for e in spec["color"].enum] == ["red", "green", "blue"]
    assert ("", "v1", "ConfigMap") in by_gvk and ("", "v1", "Namespace") in by_gvk


def test_memoised_and_keyed_on_content():
    types = _types()
    first = openapi_v2.document(types)
    assert openapi_v2.document(_types()) is first  # equal content, new objects: cache hit
    changed = from_crd(yaml.safe_load(WIDGET_CRD))
    changed[0].schema["properties"]["spec"]["properties"]["weight"] = {"type": "number"}
    other = openapi_v2.document(list(BUILTINS) + changed)
    assert other != first and b"weight" in other


def test_negotiation():
    types = _types()
    body, ctype = openapi_v2.negotiate("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", types)
    assert ctype == openapi_v2.PROTOBUF and body == openapi_v2.document(types)
    body, ctype = openapi_v2.negotiate("application/json, */*", types)
    assert ctype == "application/json" and json.loads(body)["swagger"] == "2.0"


# --------------------------------------------------------------------------------------------------
# Against a real server
# --------------------------------------------------------------------------------------------------


def test_served_over_http(apiserver):
    client = RawClient(apiserver)
    r = client.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == openapi_v2.PROTOBUF
    doc = pb.Document()
    doc.ParseFromString(r.content)
    assert supports_query_param(doc, "", "v1", "ConfigMap", "fieldValidation")
    r = client.get("/openapi/v2", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["swagger"] == "2.0"


@pytest.fixture
def kubectl_127():
    path = kubectl_versions().get("1.27")
    if path is None:
        pytest.skip("kubectl 1.27 not installed")
    return path


CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: oa2-cm, namespace: default}
data: {a: b}
"""


def _widget(name: str, spec: str) -> str:
    return f"apiVersion: test.k3c.io/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"


def test_kubectl_127_validating_commands(apiserver, kubectl_127, tmp_path):
    def kubectl(*args, **kw):
        return run_kubectl(kubectl_127, apiserver.kubeconfig, "--cache-dir", str(tmp_path / "cache"), *args, **kw)

    crd = tmp_path / "crd.yaml"
    crd.write_text(WIDGET_CRD)
    kubectl("apply", "-f", str(crd))
    kubectl("wait", "--for=condition=established", "--timeout=10s", "crd/widgets.test.k3c.io")
    out = kubectl("apply", "-f", "-", input=_widget("oa2-w1", "{size: 3}")).stdout
    assert "widget.test.k3c.io/oa2-w1 created" in out
    out = kubectl("create", "-f", "-", input=CONFIGMAP).stdout
    assert "configmap/oa2-cm created" in out
    bad = kubectl("apply", "-f", "-", input=_widget("oa2-w2", "{size: 3, bogus: 1}"), check=False)
    assert bad.returncode != 0
    assert 'unknown field "spec.bogus"' in bad.stderr
    assert "error validating data" not in bad.stderr
    explained = kubectl("explain", "widgets.spec.size").stdout
    assert "How big" in explained
