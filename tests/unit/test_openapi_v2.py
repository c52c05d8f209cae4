"""The protobuf OpenAPI v2 (Swagger) document kubectl 1.27/1.28 need before apply/create/edit/explain."""

from __future__ import annotations

import json

import pytest
import yaml

from k3c.apiserver import openapi_v2
from k3c.apiserver.proto import openapiv2_pb2 as pb
from k3c.apiserver.resources import BUILTINS, ResourceType, from_crd
from tests.support.sample_crds import WIDGET_CRD
from tests.support.swagger import GVK, supports_query_param, vendor_extension


def _types() -> list[ResourceType]:
    return list(BUILTINS) + from_crd(yaml.safe_load(WIDGET_CRD))


def _parse(types: list[ResourceType]) -> pb.Document:
    doc = pb.Document()
    doc.ParseFromString(openapi_v2.document(types))
    return doc


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
    for rt in (t for t in types if "patch" in t.verbs):  # (the reviews are created only)
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
        for g in vendor_extension(s.vendor_extension, GVK) or []:
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
