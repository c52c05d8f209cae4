"""OpenAPI v3 documents: what kubectl explain, field-validation detection and apply read from them."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest

from k3c.apiserver import openapi
from k3c.apiserver.resources import BUILTINS, ResourceType, from_crd
from tests.support.sample_crds import LOCALCONTAINER_CRD

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
LC_GVK = {"group": "k3c.io", "kind": "LocalContainer", "version": "v1alpha1"}

CLUSTER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "images.k3c.io"},
    "spec": {"group": "k3c.io", "scope": "Cluster",
             "names": {"plural": "images", "singular": "image", "kind": "Image"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"ref": {"type": "string"}}}}}}}]},
}


def types(crds=(LOCALCONTAINER_CRD, CLUSTER_CRD)) -> list[ResourceType]:
    out = list(BUILTINS)
    for c in crds:
        out += from_crd(c)
    return out


def lc_doc(ts=None) -> dict:
    return openapi.document("apis/k3c.io/v1alpha1", ts or types())


def resolve(doc: dict, schema: dict) -> dict:
    """Follow `$ref` and single-element `allOf`, as kubectl's explain and patch-meta code do."""
    while True:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            schema = doc["components"]["schemas"][name]
        elif schema.get("allOf") and not schema.get("properties"):
            schema = schema["allOf"][0]
        else:
            return schema


def explain(doc: dict, group: str, version: str, plural: str, field_path: list[str]) -> dict:
    """A miniature of kubectl's explain template: GVK from the operation, schema by GVK, then fields."""
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    gvk = None
    for p in (f"{prefix}/{plural}", f"{prefix}/namespaces/{{namespace}}/{plural}"):
        item = doc["paths"].get(p)
        if item and "get" in item:
            gvk = item["get"]["x-kubernetes-group-version-kind"]
            break
    assert gvk is not None, "GVR not found in OpenAPI schema"
    matches = [s for s in doc["components"]["schemas"].values() if gvk in s.get("x-kubernetes-group-version-kind", [])]
    assert len(matches) == 1
    schema = matches[0]
    for f in field_path:
        schema = resolve(doc, schema)
        if "items" in schema:
            schema = resolve(doc, schema["items"])
        assert f in schema.get("properties", {}), f"field {f!r} does not exist"
        schema = schema["properties"][f]
    schema = resolve(doc, schema)
    if "items" in schema:
        schema = resolve(doc, schema["items"])
    return schema


def supports_field_validation(doc: dict, gvk: dict) -> bool:
    """cli-runtime's supportsQueryParamV3, strict: every PATCH operation for the GVK lists the parameter."""
    found = False
    for item in doc["paths"].values():
        op = item.get("patch")
        if not op or op.get("x-kubernetes-group-version-kind") != gvk:
            continue
        found = True
        if not any(p["name"] == "fieldValidation" and p["in"] == "query" for p in op["parameters"]):
            return False
    return found


# ---------------------------------------------------------------------------------------------- index


def test_index_lists_every_group_version_with_a_hash():
    idx = openapi.index(types())
    assert set(idx["paths"]) == {
        "api/v1", "apis/apiextensions.k8s.io/v1", "apis/k3c.io/v1alpha1", "apis/apps/v1", "apis/batch/v1",
        "apis/networking.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1", "apis/apiregistration.k8s.io/v1",
        "apis/admissionregistration.k8s.io/v1", "apis/authentication.k8s.io/v1", "apis/authorization.k8s.io/v1"}
    for gv, entry in idx["paths"].items():
        m = re.fullmatch(r"/openapi/v3/(.+)\?hash=([0-9A-F]{128})", entry["serverRelativeURL"])
        assert m and m.group(1) == gv
        doc = openapi.document(gv, types())
        assert m.group(2) == hashlib.sha512(openapi.serialize(doc)).hexdigest().upper()
        assert m.group(2) == openapi.document_hash(doc)


def test_hash_is_stable_and_changes_with_the_schema():
    before = openapi.index(types())["paths"]
    assert openapi.index(types())["paths"] == before
    crd = copy.deepcopy(LOCALCONTAINER_CRD)
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["workdir"] = {"type": "string"}
    after = openapi.index(types((crd, CLUSTER_CRD)))["paths"]
    assert after["apis/k3c.io/v1alpha1"] != before["apis/k3c.io/v1alpha1"]
    assert after["api/v1"] == before["api/v1"]


def test_index_and_document_are_pure():
    ts = types()
    snapshot = copy.deepcopy([t.schema for t in ts])
    d1 = lc_doc(ts)
    d1["components"]["schemas"]["io.k3c.v1alpha1.LocalContainer"]["properties"].clear()
    assert lc_doc(ts) != d1
    assert [t.schema for t in ts] == snapshot
    json.dumps(openapi.index(ts))


def test_document_lookup_forms_and_unknown_group_version():
    ts = types()
    assert openapi.document("/openapi/v3/apis/k3c.io/v1alpha1?hash=AB", ts) == lc_doc(ts)
    with pytest.raises(KeyError):
        openapi.document("apis/nope.io/v1", ts)


# ------------------------------------------------------------------------------------ paths/operations


def test_namespaced_crd_paths_and_operations():
    doc = lc_doc()
    assert doc["openapi"] == "3.0.0" and doc["info"]["title"]
    base = "/apis/k3c.io/v1alpha1"
    ns = f"{base}/namespaces/{{namespace}}/localcontainers"
    assert set(doc["paths"]) >= {f"{base}/localcontainers", ns, f"{ns}/{{name}}", f"{ns}/{{name}}/status"}
    assert set(doc["paths"][ns]) >= {"get", "post", "delete"}
    assert set(doc["paths"][f"{ns}/{{name}}"]) >= {"get", "put", "patch", "delete"}
    assert set(doc["paths"][f"{ns}/{{name}}/status"]) >= {"get", "put", "patch"}
    actions = {doc["paths"][ns]["get"]["x-kubernetes-action"], doc["paths"][ns]["post"]["x-kubernetes-action"],
               doc["paths"][ns]["delete"]["x-kubernetes-action"]}
    assert actions == {"list", "post", "deletecollection"}
    for path, item in doc["paths"].items():
        if "localcontainers" not in path:
            continue
        for verb in ("get", "post", "put", "patch", "delete"):
            if verb in item:
                assert item[verb]["x-kubernetes-group-version-kind"] == LC_GVK, (path, verb)
                assert item[verb]["operationId"]
    assert doc["paths"][ns]["get"]["operationId"] == "listK3cIoV1alpha1NamespacedLocalContainer"
    assert doc["paths"][f"{ns}/{{name}}/status"]["patch"]["operationId"] == \
        "patchK3cIoV1alpha1NamespacedLocalContainerStatus"
    path_params = {p["name"] for p in doc["paths"][f"{ns}/{{name}}"]["parameters"] if p["in"] == "path"}
    assert path_params == {"name", "namespace"}


def test_cluster_scoped_crd_has_no_namespaced_paths():
    doc = lc_doc()
    image_paths = [p for p in doc["paths"] if "/images" in p]
    assert sorted(image_paths) == ["/apis/k3c.io/v1alpha1/images", "/apis/k3c.io/v1alpha1/images/{name}"]


@pytest.mark.parametrize("verb", ["patch", "post", "put"])
def test_write_operations_carry_field_validation_dry_run_field_manager(verb):
    doc = openapi.document("api/v1", types())
    doc2 = lc_doc()
    seen = 0
    for d in (doc, doc2):
        for item in d["paths"].values():
            if verb not in item:
                continue
            seen += 1
            names = {p["name"]: p for p in item[verb]["parameters"]}
            for q in ("fieldValidation", "dryRun", "fieldManager"):
                assert names[q]["in"] == "query"
            if verb == "patch":
                assert "force" in names
    assert seen >= 4


def test_field_validation_detection_like_kubectl():
    ts = types()
    assert supports_field_validation(lc_doc(ts), LC_GVK)
    core = openapi.document("api/v1", ts)
    for kind in ("Namespace", "ConfigMap", "Secret", "Event"):
        assert supports_field_validation(core, {"group": "", "kind": kind, "version": "v1"}), kind


def test_patch_content_types():
    core = openapi.document("api/v1", types())
    cm_patch = core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert set(cm_patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json"}
    lc_patch = lc_doc()["paths"]["/apis/k3c.io/v1alpha1/namespaces/{namespace}/localcontainers/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in lc_patch["requestBody"]["content"]
    assert "application/apply-patch+yaml" in lc_patch["requestBody"]["content"]


# ------------------------------------------------------------------------------------------- schemas


def test_kind_and_list_schemas_with_gvk_extension():
    schemas = lc_doc()["components"]["schemas"]
    lc = schemas["io.k3c.v1alpha1.LocalContainer"]
    assert lc["x-kubernetes-group-version-kind"] == [LC_GVK]
    assert lc["type"] == "object"
    assert lc["description"].startswith("LocalContainer is")
    assert lc["properties"]["metadata"]["allOf"] == [{"$ref": f"#/components/schemas/{META}ObjectMeta"}]
    assert lc["properties"]["apiVersion"]["type"] == "string" and lc["properties"]["kind"]["type"] == "string"
    assert lc["properties"]["spec"]["required"] == ["image"]
    lst = schemas["io.k3c.v1alpha1.LocalContainerList"]
    assert lst["x-kubernetes-group-version-kind"] == [dict(LC_GVK, kind="LocalContainerList")]
    assert lst["properties"]["items"]["items"] == {"$ref": "#/components/schemas/io.k3c.v1alpha1.LocalContainer"}
    assert "io.k3c.v1alpha1.Image" in schemas


def test_crd_schema_is_published_the_kube_way():
    spec = lc_doc()["components"]["schemas"]["io.k3c.v1alpha1.LocalContainer"]["properties"]["spec"]
    # int-or-string keeps its anyOf, embedded resources get TypeMeta/ObjectMeta properties
    assert spec["properties"]["memory"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    sidecar = spec["properties"]["sidecar"]
    assert {"apiVersion", "kind", "metadata"} <= set(sidecar["properties"])
    assert set(sidecar["required"]) == {"apiVersion", "kind"}


def test_every_ref_resolves_and_meta_schemas_are_present():
    for gv in openapi.index(types())["paths"]:
        doc = openapi.document(gv, types())
        schemas = doc["components"]["schemas"]
        refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)))
        assert refs <= set(schemas), refs - set(schemas)
        create_only = gv.endswith(("authentication.k8s.io/v1", "authorization.k8s.io/v1"))  # the reviews
        for name in ("ObjectMeta", "ListMeta", "ManagedFieldsEntry", "OwnerReference", "Time", "Status",
                     "DeleteOptions", "Patch"):
            assert META + name in schemas or create_only, (gv, name)
    doc = lc_doc()
    assert doc["components"]["schemas"][META + "Status"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Status", "version": "v1"}]


def test_core_schemas_are_named_like_kube_apiserver():
    schemas = openapi.document("api/v1", types())["components"]["schemas"]
    for kind in ("Namespace", "ConfigMap", "Secret", "Event"):
        s = schemas[f"io.k8s.api.core.v1.{kind}"]
        assert s["x-kubernetes-group-version-kind"] == [{"group": "", "kind": kind, "version": "v1"}]
        assert f"io.k8s.api.core.v1.{kind}List" in schemas
    assert set(schemas["io.k8s.api.core.v1.ConfigMap"]["properties"]) == {
        "apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
    assert openapi.model_name("k3c.io", "v1alpha1", "LocalContainer") == "io.k3c.v1alpha1.LocalContainer"
    assert openapi.model_name("", "v1", "ConfigMap") == "io.k8s.api.core.v1.ConfigMap"


def test_object_meta_has_strategic_merge_extensions():
    meta = openapi.document("api/v1", types())["components"]["schemas"][META + "ObjectMeta"]
    owners = meta["properties"]["ownerReferences"]
    assert owners["x-kubernetes-patch-merge-key"] == "uid"
    assert owners["x-kubernetes-patch-strategy"] == "merge"
    assert meta["properties"]["finalizers"]["x-kubernetes-patch-strategy"] == "merge"


# ------------------------------------------------------------------------------------ explain walk-throughs


def test_explain_resolves_metadata_and_nested_fields():
    doc = lc_doc()
    meta = explain(doc, "k3c.io", "v1alpha1", "localcontainers", ["metadata"])
    assert {"name", "namespace", "labels", "ownerReferences", "managedFields"} <= set(meta["properties"])
    ports = explain(doc, "k3c.io", "v1alpha1", "localcontainers", ["spec", "ports"])
    assert set(ports["properties"]) == {"containerPort", "hostPort", "protocol"}
    owner = explain(doc, "k3c.io", "v1alpha1", "localcontainers", ["metadata", "ownerReferences"])
    assert set(owner["required"]) == {"apiVersion", "kind", "name", "uid"}
    with pytest.raises(AssertionError, match="does not exist"):
        explain(doc, "k3c.io", "v1alpha1", "localcontainers", ["spec", "nope"])


def test_explain_finds_namespaced_kinds_on_the_cluster_wide_path():
    # kubectl 1.27 reads the GVK only from GET /apis/<g>/<v>/<plural>; namespaced kinds must have it too.
    doc = lc_doc()
    assert doc["paths"]["/apis/k3c.io/v1alpha1/localcontainers"]["get"]["x-kubernetes-group-version-kind"] == LC_GVK
    core = openapi.document("api/v1", types())
    assert core["paths"]["/api/v1/configmaps"]["get"]["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap"
    status = explain(core, "", "v1", "namespaces", ["status"])
    assert status["properties"]["phase"]["enum"] == ["Active", "Terminating"]
