"""The ValidatingWebhookConfiguration k3c serves, held to Kubernetes' own API definitions.

k3c/apiserver/schemas/validatingwebhookconfiguration.yaml is written for k3c (a structural schema with
kube-apiserver's defaults); the definitions the ``kubernetes-validate`` package bundles are Kubernetes'
OpenAPI, per release. Every field and type must agree with 1.27 and 1.33 (the kubectl versions k3c is
tested with), save ``matchConditions`` (CEL), which k3c does not serve. kube's extra rules
(k3c.apiserver.webhookconfig.validate) are checked by what they refuse.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from k3c.apiserver import webhookconfig
from k3c.apiserver.resources import builtin_schema

NOT_SERVED = {"matchConditions"}


@cache
def _definitions(release: str) -> dict[str, Any]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{release}-local-strict"
    defs: dict[str, Any] = json.loads((root / "_definitions.json").read_text())["$defs"]
    return defs


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    return node


def _kube_type(node: dict[str, Any]) -> str:
    types = node.get("type", "object")
    types = [t for t in types if t != "null"] if isinstance(types, list) else [types]
    return types[0] if types else "object"


def _compare(ours: dict[str, Any], theirs: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    theirs = _resolve(theirs, defs)
    problems = []
    if ours.get("type", "object") != _kube_type(theirs):
        problems.append(f"{path}: type {ours.get('type')} != {_kube_type(theirs)}")
    if _kube_type(theirs) == "array":
        return problems + _compare(ours.get("items", {}), theirs.get("items", {}), defs, path + "[]")
    if "properties" in theirs:
        mine, kube = ours.get("properties", {}), {k: v for k, v in theirs["properties"].items() if k not in NOT_SERVED}
        problems += [f"{path}.{k}: missing" for k in sorted(set(kube) - set(mine))]
        problems += [f"{path}.{k}: not in Kubernetes" for k in sorted(set(mine) - set(kube))]
        for k in sorted(set(mine) & set(kube)):
            problems += _compare(mine[k], kube[k], defs, f"{path}.{k}")
    return problems


@pytest.mark.parametrize("release", ["1.27.0", "1.33.0"])
def test_schema_has_kubernetes_fields_and_types(release: str) -> None:
    defs = _definitions(release)
    theirs = defs["io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration"]
    ours = builtin_schema("validatingwebhookconfiguration")
    kube_top = {k for k in theirs["properties"] if k not in ("apiVersion", "kind", "metadata")}
    assert set(ours["properties"]) == kube_top
    assert _compare(ours["properties"]["webhooks"], theirs["properties"]["webhooks"], defs, "webhooks") == []


def _hook(**change: Any) -> dict[str, Any]:
    return {"webhooks": [{"name": "a.b.example.com", "clientConfig": {"url": "https://example.com/x"},
                          "sideEffects": "None", "admissionReviewVersions": ["v1"],
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["pods"]}], **change}]}


@pytest.mark.parametrize("change, message", [
    ({}, ""),
    ({"name": "ab.com"}, 'webhooks[0].name: Invalid value: "ab.com": should be a domain with at least three '
                         "segments separated by dots"),
    ({"clientConfig": {}}, "webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
    ({"clientConfig": {"url": "http://x.y/z"}},
     'webhooks[0].clientConfig.url: Unsupported value: "http": supported values: "https"'),
    ({"clientConfig": {"url": "https://u:p@x.y/z"}}, "user information is not permitted in the URL"),
    ({"clientConfig": {"url": "https://x.y/z?a=b"}}, "query parameters are not permitted in the URL"),
    ({"clientConfig": {"service": {"namespace": "n", "name": "s", "path": "x"}}},
     "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'"),
    ({"admissionReviewVersions": []}, "webhooks[0].admissionReviewVersions: Required value"),
    ({"admissionReviewVersions": ["v9"]}, "must include at least one of v1, v1beta1"),
    ({"rules": [{"operations": ["*", "CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["x"]}]},
     "webhooks[0].rules[0].operations: Invalid value"),
    ({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/*", "x"]}]},
     "if '*/*' is present, must not specify other resources"),
    ({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "Sometimes"}]}},
     "webhooks[0].objectSelector"),
])
def test_kube_rules_beyond_the_schema(change: dict[str, Any], message: str) -> None:
    causes = webhookconfig.validate(_hook(**change))
    text = "; ".join(f"{c.field}: {c.message}" for c in causes)
    if not message:
        assert causes == []
    else:
        assert message in text, text


def test_stored_configuration_becomes_webhook_records() -> None:
    import base64

    obj = _hook(clientConfig={"service": {"namespace": "n", "name": "s"}, "caBundle": base64.b64encode(b"PEM").decode()},
                namespaceSelector={"matchLabels": {"team": "a"}}, failurePolicy="Ignore", timeoutSeconds=3)
    obj["metadata"] = {"name": "cfg"}
    (hook,) = webhookconfig.webhooks_of(obj)
    assert (hook.configuration, hook.name, hook.url, hook.ca_bundle) == ("cfg", "a.b.example.com", None, b"PEM")
    assert hook.service == webhookconfig.ServiceRef("n", "s", "", 443)
    assert (hook.failure_policy, hook.timeout, hook.speaks_v1) == ("Ignore", 3, True)
    assert hook.namespace_selector.matches({"team": "a"}) and not hook.namespace_selector.matches({"team": "b"})
    assert hook.object_selector.empty()
