"""GET /openapi/v2 from a real server: the protobuf Swagger document kubectl 1.27/1.28 need before
apply/create/edit/explain, and those commands against it."""

from __future__ import annotations

import pytest

from k3c.apiserver import openapi_v2
from k3c.apiserver.proto import openapiv2_pb2 as pb
from tests.support.harness import RawClient, kubectl_versions, run_kubectl
from tests.support.sample_crds import WIDGET_CRD
from tests.support.swagger import supports_query_param


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
