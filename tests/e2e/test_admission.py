"""Validating admission webhooks, called by the embedded API server as kube-apiserver calls them.

A real API server process (with a Service mapped to the test's webhook, see
tests/support/webhook_apiserver.py), a real HTTPS webhook in the test process with a CA made here
(tests/support/webhookserver.py), and kubectl. What is checked is what kube-apiserver does: which requests
a configuration's rules and selectors match, the AdmissionReview it sends, how a denial reaches the client,
failurePolicy with a dead or slow webhook, caBundle verification, dry runs, and that webhook
configurations are never themselves subject to webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.harness import APIServerProcess, RawClient, free_port, run_kubectl
from tests.support.sample_crds import WIDGET_CRD
from tests.support.webhookserver import SLOW, WebhookServer, wait_reviews

VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
SERVICE = ("webhooks", "hook")  # the Service the API server maps to the test's webhook
HOOKED = {"admission.test.k3c.io/hooked": "yes"}


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path_factory.mktemp("webhook"), dns_names=(f"{SERVICE[1]}.{SERVICE[0]}.svc",))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookServer) -> Iterator[APIServerProcess]:
    srv = APIServerProcess(tmp_path_factory.mktemp("admission") / "data",
                           launcher=("tests.support.webhook_apiserver",),
                           extra_args=["--service", f"{SERVICE[0]}/{SERVICE[1]}=127.0.0.1:{webhook.port}"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: APIServerProcess) -> RawClient:
    c = RawClient(server)
    r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(WIDGET_CRD))
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 10
    while c.get("/apis/test.k3c.io/v1/widgets").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return c


_counter = iter(range(10_000))


@pytest.fixture
def ns(api: RawClient) -> str:
    """A fresh namespace carrying the label the configurations below select."""
    name = f"hooked-{next(_counter)}-{int(time.time() * 1000) % 100000}"
    r = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": name, "labels": HOOKED}})
    assert r.status_code == 201, r.text
    return name


def _rule(operations: list[str], resources: list[str], groups: list[str] | None = None,
          versions: list[str] | None = None, scope: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"operations": operations, "apiGroups": groups or [""], "apiVersions": versions or ["v1"],
                            "resources": resources}
    if scope:
        rule["scope"] = scope
    return rule


def _hook(name: str, *, url: str | None = None, service: dict[str, Any] | None = None, ca: str | None = None,
          rules: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    client: dict[str, Any] = {"url": url} if url else {"service": service}
    if ca is not None:
        client["caBundle"] = ca
    hook = {"name": name, "clientConfig": client, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": HOOKED},
            "rules": rules or [_rule(["CREATE"], ["configmaps"])], **extra}
    return {k: v for k, v in hook.items() if v is not None}


def _configure(api: RawClient, name: str, *hooks: dict[str, Any]) -> dict[str, Any]:
    """Create (or replace) a ValidatingWebhookConfiguration; returns it as stored."""
    body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": list(hooks)}
    current = api.get(f"{VWC}/{name}")
    if current.status_code == 200:
        body["metadata"]["resourceVersion"] = current.json()["metadata"]["resourceVersion"]
        r = api.put(f"{VWC}/{name}", body)
    else:
        r = api.post(VWC, body)
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
def configure(api: RawClient) -> Iterator[Any]:
    """``configure(name, *hooks)``; every configuration made is deleted after the test."""
    made: list[str] = []

    def make(name: str, *hooks: dict[str, Any]) -> dict[str, Any]:
        made.append(name)
        return _configure(api, name, *hooks)

    yield make
    for name in made:
        api.delete(f"{VWC}/{name}")


def _cm(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": {"k": "v"}}


def _create_cm(api: RawClient, ns: str, name: str, **kw: Any) -> Any:
    return api.post(f"/api/v1/namespaces/{ns}/configmaps", _cm(name, **kw))


# ------------------------------------------------------------------------------------------ the type


def test_configuration_is_a_served_cluster_scoped_type_with_kubes_defaults(api: RawClient, webhook: WebhookServer,
                                                                           configure: Any) -> None:
    resources = api.get("/apis/admissionregistration.k8s.io/v1").json()["resources"]
    entry = next(r for r in resources if r["name"] == "validatingwebhookconfigurations")
    assert entry["kind"] == "ValidatingWebhookConfiguration" and entry["namespaced"] is False
    assert {"create", "delete", "get", "list", "patch", "update", "watch"} <= set(entry["verbs"])
    stored = configure("defaults.test", _hook("defaults.hooks.test.k3c.io", url=webhook.url("allow"),
                                              ca=webhook.ca_bundle, namespaceSelector=None))
    hook = stored["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 10 and hook["objectSelector"] == {}
    assert hook["rules"][0]["scope"] == "*"


@pytest.mark.parametrize("change, field", [
    ({"clientConfig": {"url": "http://127.0.0.1:1/x"}}, "webhooks[0].clientConfig.url"),
    ({"timeoutSeconds": 31}, "webhooks[0].timeoutSeconds"),
    ({"sideEffects": "Some"}, "webhooks[0].sideEffects"),
    ({"admissionReviewVersions": ["v2"]}, "webhooks[0].admissionReviewVersions"),
    ({"name": "short"}, "webhooks[0].name"),
    ({"clientConfig": {"url": "https://127.0.0.1:1/x", "service": {"namespace": "a", "name": "b"}}},
     "webhooks[0].clientConfig"),
    ({"failurePolicy": "Sometimes"}, "webhooks[0].failurePolicy"),
])
def test_invalid_configuration_is_refused_422(api: RawClient, change: dict[str, Any], field: str) -> None:
    hook = {**_hook("bad.hooks.test.k3c.io", url="https://127.0.0.1:1/x"), **change}
    body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "invalid.test"}, "webhooks": [hook]}
    r = api.post(VWC, body)
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "Invalid" and field in r.json()["message"], r.text


def test_kubectl_applies_and_gets_a_configuration(server: APIServerProcess, kubectl: str, webhook: WebhookServer,
                                                  api: RawClient) -> None:
    doc = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "kubectl.test"},
           "webhooks": [_hook("kubectl.hooks.test.k3c.io", url=webhook.url("allow"), ca=webhook.ca_bundle)]}
    try:
        run_kubectl(kubectl, server.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(doc))
        doc["webhooks"][0]["timeoutSeconds"] = 5
        run_kubectl(kubectl, server.kubeconfig, "apply", "-f", "-", input=yaml.safe_dump(doc))
        out = run_kubectl(kubectl, server.kubeconfig, "get", "validatingwebhookconfigurations", "kubectl.test",
                          "-o", "jsonpath={.webhooks[0].timeoutSeconds}").stdout
        assert out == "5"
        table = run_kubectl(kubectl, server.kubeconfig, "get", "validatingwebhookconfiguration").stdout.splitlines()
        assert table[0].split() == ["NAME", "WEBHOOKS", "AGE"]
        assert any(line.split()[:2] == ["kubectl.test", "1"] for line in table[1:])
        explained = run_kubectl(kubectl, server.kubeconfig, "explain",
                                "validatingwebhookconfigurations.webhooks.timeoutSeconds").stdout
        assert "Seconds to wait for an answer" in explained
    finally:
        api.delete(f"{VWC}/kubectl.test")


# ------------------------------------------------------------------------------------------ matching


def test_denial_worded_like_kube_apiserver_and_rules_and_selectors_match(api: RawClient, ns: str,
                                                                         webhook: WebhookServer,
                                                                         configure: Any) -> None:
    configure("deny.test", _hook("deny.hooks.test.k3c.io", url=webhook.url("deny-prefixed"), ca=webhook.ca_bundle))
    r = _create_cm(api, ns, "deny-me")
    assert r.status_code == 400, r.text  # the webhook gave no code
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["message"] == ('admission webhook "deny.hooks.test.k3c.io" denied the request: '
                               "names starting with deny- are refused here")
    assert api.get(f"/api/v1/namespaces/{ns}/configmaps/deny-me").status_code == 404  # nothing stored
    assert _create_cm(api, ns, "fine").status_code == 201
    # no match: another resource, another operation, a namespace without the label
    assert api.post(f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret",
                                                           "metadata": {"name": "deny-me"}}).status_code == 201
    plain = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": f"plain-{ns}"}})
    assert plain.status_code == 201
    assert _create_cm(api, f"plain-{ns}", "deny-me").status_code == 201
    fine = api.get(f"/api/v1/namespaces/{ns}/configmaps/fine").json()
    fine["metadata"]["name"] = "fine"
    assert api.put(f"/api/v1/namespaces/{ns}/configmaps/fine", {**fine, "data": {"k": "w"}}).status_code == 200


def test_object_selector_and_scope(api: RawClient, ns: str, webhook: WebhookServer, configure: Any) -> None:
    configure("objsel.test", _hook("objsel.hooks.test.k3c.io", url=webhook.url("deny-prefixed"),
                                   ca=webhook.ca_bundle, objectSelector={"matchExpressions": [
                                       {"key": "guarded", "operator": "In", "values": ["true"]}]}))
    assert _create_cm(api, ns, "deny-unguarded").status_code == 201
    assert _create_cm(api, ns, "deny-guarded", labels={"guarded": "true"}).status_code == 400
    configure("scope.test", _hook("scope.hooks.test.k3c.io", url=webhook.url("deny-prefixed"),
                                  ca=webhook.ca_bundle, namespaceSelector={},
                                  rules=[_rule(["CREATE"], ["*"], scope="Cluster")]))
    # namespaced objects are out of a Cluster-scoped rule; a Namespace is in it
    assert _create_cm(api, ns, "deny-namespaced").status_code == 201
    r = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deny-ns"}})
    assert r.status_code == 400 and "scope.hooks.test.k3c.io" in r.json()["message"]


def test_the_review_is_what_kube_apiserver_sends(api: RawClient, ns: str, webhook: WebhookServer,
                                                 configure: Any) -> None:
    configure("record.test", _hook("record.hooks.test.k3c.io", url=webhook.url("record"), ca=webhook.ca_bundle,
                                   rules=[_rule(["*"], ["configmaps"])]))
    before = len(webhook.reviews["record"])
    created = _create_cm(api, ns, "seen").json()
    path = f"/api/v1/namespaces/{ns}/configmaps/seen"
    assert api.patch(path, {"data": {"k": "patched"}}, "application/merge-patch+json").status_code == 200
    assert api.delete(path).status_code == 200
    assert api.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", _cm("dry")).status_code == 201
    reviews = webhook.reviews["record"][before:]
    assert len(reviews) == 4
    assert all(r["apiVersion"] == "admission.k8s.io/v1" and r["kind"] == "AdmissionReview" for r in reviews)
    create, update, delete, dry = (r["request"] for r in reviews)
    assert len({create["uid"], update["uid"], delete["uid"], dry["uid"]}) == 4
    for req in (create, update, delete):
        assert req["kind"] == req["requestKind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
        assert req["resource"] == req["requestResource"] == {"group": "", "version": "v1", "resource": "configmaps"}
        assert (req["name"], req["namespace"]) == ("seen", ns) and "subResource" not in req
        assert req["userInfo"]["username"] == "admin" and "system:masters" in req["userInfo"]["groups"]
        assert req["dryRun"] is False
    assert create["operation"] == "CREATE" and create["oldObject"] is None
    assert create["object"]["data"] == {"k": "v"} and create["object"]["metadata"]["uid"] == created["metadata"]["uid"]
    assert create["options"]["kind"] == "CreateOptions" and create["options"]["apiVersion"] == "meta.k8s.io/v1"
    assert update["operation"] == "UPDATE" and update["options"]["kind"] == "UpdateOptions"
    assert (update["object"]["data"], update["oldObject"]["data"]) == ({"k": "patched"}, {"k": "v"})
    assert delete["operation"] == "DELETE" and delete["object"] is None
    assert delete["oldObject"]["data"] == {"k": "patched"} and delete["options"]["kind"] == "DeleteOptions"
    assert dry["dryRun"] is True and dry["name"] == "dry"


def test_status_subresource_is_matched_only_by_its_own_rule(api: RawClient, ns: str, webhook: WebhookServer,
                                                            configure: Any) -> None:
    configure("status.test", _hook("status.hooks.test.k3c.io", url=webhook.url("record-status"),
                                   ca=webhook.ca_bundle, rules=[_rule(["UPDATE"], ["widgets/status"],
                                                                      ["test.k3c.io"], ["*"])]))
    base = f"/apis/test.k3c.io/v1/namespaces/{ns}/widgets"
    r = api.post(base, {"apiVersion": "test.k3c.io/v1", "kind": "Widget", "metadata": {"name": "w"},
                        "spec": {"size": 1}})
    assert r.status_code == 201, r.text
    assert api.patch(f"{base}/w", {"spec": {"size": 2}}, "application/merge-patch+json").status_code == 200
    assert webhook.reviews["record-status"] == []
    r = api.patch(f"{base}/w/status", {"status": {"phase": "Ready"}}, "application/merge-patch+json")
    assert r.status_code == 200, r.text
    (req,) = wait_reviews(webhook, "record-status", 1)
    assert req["subResource"] == "status" and req["requestSubResource"] == "status"
    assert req["resource"] == {"group": "test.k3c.io", "version": "v1", "resource": "widgets"}
    assert req["object"]["status"] == {"phase": "Ready"}


def test_code_reason_and_warnings_of_the_webhook_reach_the_client(api: RawClient, ns: str, webhook: WebhookServer,
                                                                  configure: Any) -> None:
    configure("codes.test", _hook("conflict.hooks.test.k3c.io", url=webhook.url("conflict"), ca=webhook.ca_bundle,
                                  rules=[_rule(["DELETE"], ["configmaps"])]),
              _hook("warn.hooks.test.k3c.io", url=webhook.url("warn"), ca=webhook.ca_bundle))
    r = _create_cm(api, ns, "used")
    assert r.status_code == 201 and "mind the gap" in r.headers.get("Warning", "")
    r = api.delete(f"/api/v1/namespaces/{ns}/configmaps/used")
    assert r.status_code == 409, r.text
    assert (r.json()["reason"], r.json()["message"]) == (
        "Conflict", 'admission webhook "conflict.hooks.test.k3c.io" denied the request: it is in use')
    assert api.get(f"/api/v1/namespaces/{ns}/configmaps/used").status_code == 200


def test_deletecollection_asks_for_each_object(api: RawClient, ns: str, webhook: WebhookServer,
                                               configure: Any) -> None:
    for name in ("keep-a", "deny-b", "keep-c"):
        assert _create_cm(api, ns, name).status_code == 201
    configure("collection.test", _hook("collection.hooks.test.k3c.io", url=webhook.url("deny-prefixed"),
                                       ca=webhook.ca_bundle, rules=[_rule(["DELETE"], ["configmaps"])]))
    r = api.delete(f"/api/v1/namespaces/{ns}/configmaps")
    assert r.status_code == 400 and "collection.hooks.test.k3c.io" in r.json()["message"], r.text
    left = [i["metadata"]["name"] for i in api.get(f"/api/v1/namespaces/{ns}/configmaps").json()["items"]]
    assert left == ["deny-b"]


# ------------------------------------------------------------------------------------------ failures


def test_dead_webhook_fails_closed_or_open_by_failure_policy(api: RawClient, ns: str, configure: Any) -> None:
    dead = f"https://127.0.0.1:{free_port()}/nobody"
    configure("dead.test", _hook("dead.hooks.test.k3c.io", url=dead))
    r = _create_cm(api, ns, "blocked")
    assert r.status_code == 500, r.text
    assert r.json()["reason"] == "InternalError"
    assert r.json()["message"].startswith('Internal error occurred: failed calling webhook "dead.hooks.test.k3c.io": ')
    configure("dead.test", _hook("dead.hooks.test.k3c.io", url=dead, failurePolicy="Ignore"))
    assert _create_cm(api, ns, "let-through").status_code == 201


def test_slow_webhook_times_out(api: RawClient, ns: str, webhook: WebhookServer, configure: Any) -> None:
    configure("slow.test", _hook("slow.hooks.test.k3c.io", url=webhook.url("slow"), ca=webhook.ca_bundle,
                                 timeoutSeconds=1))
    started = time.monotonic()
    r = _create_cm(api, ns, "slowpoke")
    assert time.monotonic() - started < SLOW - 0.5
    assert r.status_code == 500 and "failed calling webhook" in r.json()["message"], r.text
    assert "timeout" in r.json()["message"] or "deadline" in r.json()["message"]
    assert webhook.received("slow")[-1]["name"] == "slowpoke"
    configure("slow.test", _hook("slow.hooks.test.k3c.io", url=webhook.url("slow"), ca=webhook.ca_bundle,
                                 timeoutSeconds=1, failurePolicy="Ignore"))
    started = time.monotonic()
    assert _create_cm(api, ns, "slowpoke").status_code == 201
    assert time.monotonic() - started < SLOW - 0.5


def test_ca_bundle_is_verified(api: RawClient, ns: str, webhook: WebhookServer, configure: Any,
                               tmp_path: Path) -> None:
    other = WebhookServer(tmp_path / "other")  # its CA only, never started
    configure("ca.test", _hook("ca.hooks.test.k3c.io", url=webhook.url("deny-prefixed"), ca=other.ca_bundle))
    r = _create_cm(api, ns, "unverified")
    assert r.status_code == 500 and "failed calling webhook" in r.json()["message"]
    assert "certificate" in r.json()["message"].lower(), r.text
    assert webhook.received("deny-prefixed") == [] or all(
        q["name"] != "unverified" for q in webhook.received("deny-prefixed"))
    configure("ca.test", _hook("ca.hooks.test.k3c.io", url=webhook.url("deny-prefixed"), ca=webhook.ca_bundle))
    assert _create_cm(api, ns, "verified").status_code == 201


def test_wrong_response_uid_is_a_failed_call(api: RawClient, ns: str, webhook: WebhookServer,
                                             configure: Any) -> None:
    configure("uid.test", _hook("uid.hooks.test.k3c.io", url=webhook.url("wrong-uid"), ca=webhook.ca_bundle))
    r = _create_cm(api, ns, "mismatch")
    assert r.status_code == 500 and "uid" in r.json()["message"], r.text


def test_service_client_config_goes_through_the_resolver(api: RawClient, ns: str, webhook: WebhookServer,
                                                         configure: Any) -> None:
    service = {"namespace": SERVICE[0], "name": SERVICE[1], "path": "/deny-prefixed", "port": 443}
    configure("svc.test", _hook("svc.hooks.test.k3c.io", service=service, ca=webhook.ca_bundle))
    assert _create_cm(api, ns, "deny-by-service").status_code == 400
    assert _create_cm(api, ns, "ok-by-service").status_code == 201
    configure("svc.test", _hook("svc.hooks.test.k3c.io", service={**service, "name": "unknown"},
                                ca=webhook.ca_bundle))
    r = _create_cm(api, ns, "nowhere")
    assert r.status_code == 500 and 'service "webhooks/unknown"' in r.json()["message"], r.text


def test_dry_run_calls_only_side_effect_free_webhooks(api: RawClient, ns: str, webhook: WebhookServer,
                                                      configure: Any) -> None:
    configure("dry.test", _hook("dry.hooks.test.k3c.io", url=webhook.url("deny-prefixed"), ca=webhook.ca_bundle,
                                sideEffects="NoneOnDryRun"))
    r = api.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", _cm("deny-dry"))
    assert r.status_code == 400, r.text
    assert webhook.received("deny-prefixed")[-1]["dryRun"] is True
    assert api.post(f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", _cm("dry-ok")).status_code == 201
    assert api.get(f"/api/v1/namespaces/{ns}/configmaps/dry-ok").status_code == 404


def test_webhook_configurations_are_never_admitted_by_webhooks(api: RawClient, configure: Any) -> None:
    """A broken catch-all configuration must not lock the admin out of fixing it (kube-apiserver exempts them)."""
    dead = f"https://127.0.0.1:{free_port()}/nobody"
    configure("catchall.test", _hook("catchall.hooks.test.k3c.io", url=dead, namespaceSelector={},
                                     rules=[_rule(["*"], ["*/*"], ["*"], ["*"])]))
    assert api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "locked-out"}}).status_code == 500
    r = api.delete(f"{VWC}/catchall.test")
    assert r.status_code == 200, r.text


def test_denial_through_kubectl(server: APIServerProcess, kubectl: str, api: RawClient, ns: str,
                                webhook: WebhookServer, configure: Any) -> None:
    configure("kubectl-deny.test", _hook("kubectl-deny.hooks.test.k3c.io", url=webhook.url("deny-prefixed"),
                                         ca=webhook.ca_bundle))
    cp = run_kubectl(kubectl, server.kubeconfig, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(_cm("deny-k")),
                     check=False)
    assert cp.returncode != 0
    assert ('admission webhook "kubectl-deny.hooks.test.k3c.io" denied the request: names starting with deny- '
            "are refused here") in cp.stderr, cp.stderr
    cp = run_kubectl(kubectl, server.kubeconfig, "create", "configmap", "ok-k", "-n", ns, "--from-literal=a=b")
    assert cp.returncode == 0
