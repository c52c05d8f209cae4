"""Identities and RBAC on the embedded API server, through kubectl and the official Python client.

ServiceAccount tokens (TokenRequest and token Secrets), client-certificate users, the RBAC authorizer with
kube's bootstrap roles and ClusterRole aggregation, impersonation, the review kinds, and the
extension-apiserver-authentication ConfigMap.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from k3c.apiserver import certs
from tests.support.harness import REPO, APIServerProcess, RawClient, run_kubectl, wait_until

NS = "authns"


def token_kubeconfig(server: APIServerProcess, path: Path, token: str) -> Path:
    """A kubeconfig presenting only ``token`` (the admin one also carries the admin's client certificate)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server.url,
                                               "certificate-authority": str(server.data_dir / "tls" / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": NS}}],
    }))
    return path


def cert_kubeconfig(server: APIServerProcess, path: Path, user: str, groups: tuple[str, ...]) -> Path:
    material = certs.ensure(server.data_dir, ["127.0.0.1"])
    cert, key = certs.issue_client(material, user, groups)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server.url,
                                               "certificate-authority": str(server.data_dir / "tls" / "ca.crt")}}],
        "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(cert).decode(),
                                         "client-key-data": base64.b64encode(key).decode()}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": NS}}],
    }))
    return path


def whoami(kubectl: str, kubeconfig: Path) -> dict:
    """The SelfSubjectReview's userInfo (``kubectl auth whoami`` of 1.27 only knows the beta kind)."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    done = run_kubectl(kubectl, kubeconfig, "create", "--validate=false", "-f", "-", "-o", "json",
                       input=json.dumps(review))
    return json.loads(done.stdout)["status"]["userInfo"]


@pytest.fixture(scope="module")
def cluster(apiserver, tmp_path_factory):
    """The k3c CRDs, a namespace and a ServiceAccount ``bot`` bound to ``view`` there."""
    kc = apiserver.kubeconfig
    kubectl = "kubectl"
    run_kubectl(kubectl, kc, "apply", "-f", str(REPO / "crds"))
    run_kubectl(kubectl, kc, "create", "namespace", NS)
    run_kubectl(kubectl, kc, "-n", NS, "create", "serviceaccount", "bot")
    run_kubectl(kubectl, kc, "-n", NS, "create", "rolebinding", "bot-view", "--clusterrole", "view",
                f"--serviceaccount={NS}:bot")
    token = run_kubectl(kubectl, kc, "-n", NS, "create", "token", "bot").stdout.strip()
    return apiserver, token_kubeconfig(apiserver, tmp_path_factory.mktemp("sa") / "kubeconfig", token), token


def test_service_account_token_is_its_user_and_rbac_decides(cluster, kubectl):
    server, sa_kc, _token = cluster
    info = whoami(kubectl, sa_kc)
    assert info["username"] == f"system:serviceaccount:{NS}:bot"
    assert info["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    assert run_kubectl(kubectl, sa_kc, "auth", "can-i", "list", "configmaps").stdout.strip() == "yes"
    no = run_kubectl(kubectl, sa_kc, "auth", "can-i", "create", "configmaps", check=False)
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    run_kubectl(kubectl, sa_kc, "get", "configmaps")
    denied = run_kubectl(kubectl, sa_kc, "get", "localcontainers.k3c.io", "x", check=False)
    assert denied.returncode == 1
    assert (f'Error from server (Forbidden): localcontainers.k3c.io "x" is forbidden: User '
            f'"system:serviceaccount:{NS}:bot" cannot get resource "localcontainers" in API group "k3c.io" in the '
            f'namespace "{NS}"') in denied.stderr
    other = run_kubectl(kubectl, sa_kc, "get", "configmaps", "-n", "default", check=False)
    assert "cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\"" in other.stderr


def test_forbidden_is_kubes_status(cluster):
    server, _kc, token = cluster
    r = RawClient(server, token=token).get(f"/apis/k3c.io/v1alpha1/namespaces/{NS}/localcontainers/x")
    assert r.status_code == 403
    assert r.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": f'localcontainers.k3c.io "x" is forbidden: User "system:serviceaccount:{NS}:bot" cannot get '
                   f'resource "localcontainers" in API group "k3c.io" in the namespace "{NS}"',
        "details": {"name": "x", "group": "k3c.io", "kind": "localcontainers"}}
    assert RawClient(server, token=token + "x").get("/api").status_code == 401
    assert RawClient(server, token=None).get("/api").status_code == 401


def test_aggregated_view_role_takes_a_crds_rules(cluster, kubectl):
    """A ClusterRole labelled aggregate-to-view adds its rules to view (and so to edit and admin)."""
    server, sa_kc, _token = cluster
    kc = server.kubeconfig
    assert run_kubectl(kubectl, sa_kc, "auth", "can-i", "list", "localcontainers.k3c.io", check=False).returncode == 1
    run_kubectl(kubectl, kc, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "lc-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["k3c.io"], "resources": ["localcontainers"], "verbs": ["get", "list", "watch"]}]}))
    wait_until(lambda: run_kubectl(kubectl, sa_kc, "auth", "can-i", "list", "localcontainers.k3c.io",
                                   check=False).returncode == 0, 10, "view to aggregate lc-view")
    for role in ("view", "edit", "admin"):
        rules = json.loads(run_kubectl(kubectl, kc, "get", "clusterrole", role, "-o", "json").stdout)["rules"]
        assert {"apiGroups": ["k3c.io"], "resources": ["localcontainers"], "verbs": ["get", "list", "watch"]} in rules
    assert run_kubectl(kubectl, sa_kc, "get", "localcontainers.k3c.io").returncode == 0
    run_kubectl(kubectl, kc, "delete", "clusterrole", "lc-view")
    wait_until(lambda: run_kubectl(kubectl, sa_kc, "auth", "can-i", "list", "localcontainers.k3c.io",
                                   check=False).returncode == 1, 10, "view to drop lc-view's rules")


def test_admin_impersonates_and_others_may_not(cluster, kubectl):
    server, sa_kc, _token = cluster
    kc = server.kubeconfig
    sa = f"system:serviceaccount:{NS}:bot"
    assert run_kubectl(kubectl, kc, "-n", NS, "auth", "can-i", "list", "configmaps", "--as", sa).stdout.strip() == "yes"
    assert run_kubectl(kubectl, kc, "-n", NS, "auth", "can-i", "delete", "configmaps", "--as", sa,
                       check=False).stdout.strip() == "no"
    as_sa = run_kubectl(kubectl, kc, "-n", NS, "get", "secrets", "--as", sa, check=False)
    assert f'User "{sa}" cannot list resource "secrets"' in as_sa.stderr
    nope = run_kubectl(kubectl, sa_kc, "get", "configmaps", "--as", "someone", check=False)
    assert (f'users "someone" is forbidden: User "{sa}" cannot impersonate resource "users" in API group "" at the '
            "cluster scope") in nope.stderr


def test_client_certificate_user_and_group(cluster, kubectl, tmp_path):
    server, _kc, _token = cluster
    kc = server.kubeconfig
    alice = cert_kubeconfig(server, tmp_path / "alice", "alice", ("devs",))
    who = whoami(kubectl, alice)
    assert (who["username"], who["groups"]) == ("alice", ["devs", "system:authenticated"])
    assert run_kubectl(kubectl, alice, "get", "secrets", check=False).returncode == 1
    run_kubectl(kubectl, kc, "-n", NS, "create", "rolebinding", "devs-edit", "--clusterrole", "edit", "--group", "devs")
    run_kubectl(kubectl, alice, "create", "configmap", f"alice-{Path(kubectl).name}")
    run_kubectl(kubectl, alice, "get", "secrets")
    run_kubectl(kubectl, kc, "-n", NS, "delete", "rolebinding", "devs-edit")


def test_token_secret_lives_and_dies_with_its_service_account(cluster, kubectl):
    server, _kc, _token = cluster
    kc = server.kubeconfig
    run_kubectl(kubectl, kc, "-n", NS, "create", "serviceaccount", "legacy")
    run_kubectl(kubectl, kc, "-n", NS, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "legacy-token", "annotations": {"kubernetes.io/service-account.name": "legacy"}}}))

    def token() -> str:
        out = run_kubectl(kubectl, kc, "-n", NS, "get", "secret", "legacy-token", "-o", "jsonpath={.data.token}",
                          check=False).stdout
        return base64.b64decode(out).decode() if out else ""

    legacy = wait_until(token, 10, "the token controller to fill the Secret")
    r = RawClient(server, token=legacy).post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                             {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert r.status_code == 201 and r.json()["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:legacy"
    run_kubectl(kubectl, kc, "-n", NS, "delete", "serviceaccount", "legacy")
    assert RawClient(server, token=legacy).get("/api").status_code == 401
    wait_until(lambda: not token(), 10, "the token Secret to go with its ServiceAccount")


def test_reviews_answer_for_others(cluster, kubectl):
    """What an aggregated API server asks: TokenReview and SubjectAccessReview, allowed by system:auth-delegator."""
    server, _kc, token = cluster
    kc = server.kubeconfig
    name = f"delegate-{Path(kubectl).name}".replace(".", "-")
    run_kubectl(kubectl, kc, "-n", NS, "create", "serviceaccount", name)
    run_kubectl(kubectl, kc, "create", "clusterrolebinding", name, "--clusterrole", "system:auth-delegator",
                f"--serviceaccount={NS}:{name}")
    delegate = RawClient(server, token=run_kubectl(kubectl, kc, "-n", NS, "create", "token", name).stdout.strip())
    bot = RawClient(server, token=token)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    assert bot.post("/apis/authentication.k8s.io/v1/tokenreviews", review).status_code == 403
    answer = delegate.post("/apis/authentication.k8s.io/v1/tokenreviews", review)
    assert answer.status_code == 201, answer.text
    status = answer.json()["status"]
    assert status["authenticated"] is True and status["user"]["username"] == f"system:serviceaccount:{NS}:bot"
    assert status["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    bad = delegate.post("/apis/authentication.k8s.io/v1/tokenreviews", {**review, "spec": {"token": "nope"}})
    assert bad.json()["status"].get("authenticated") in (None, False)

    def sar(verb: str, resource: str, user: str, groups: list[str], group: str = "k3c.io") -> dict:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, "resourceAttributes": {
                    "namespace": NS, "verb": verb, "group": group, "resource": resource}}}
        r = delegate.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        assert r.status_code == 201, r.text
        return r.json()["status"]

    sa_groups = ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    assert sar("create", "localcontainers", f"system:serviceaccount:{NS}:bot", sa_groups)["allowed"] is False
    allowed = sar("list", "configmaps", f"system:serviceaccount:{NS}:bot", sa_groups, group="")
    assert allowed == {"allowed": True, "reason": f'RBAC: allowed by RoleBinding "bot-view/{NS}" of ClusterRole "view" '
                                                 f'to ServiceAccount "bot/{NS}"'}
    assert sar("delete", "localcontainers", "root", ["system:masters"])["allowed"] is True


def test_python_client_with_a_service_account_token(cluster):
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    _server, sa_kc, _token = cluster
    api_client = config.new_client_from_config(config_file=str(sa_kc))
    try:
        core = client.CoreV1Api(api_client)
        assert isinstance(core.list_namespaced_config_map(NS).items, list)
        with pytest.raises(ApiException) as err:
            core.read_namespaced_secret("whatever", NS)
        assert err.value.status == 403
        assert json.loads(err.value.body)["reason"] == "Forbidden"
    finally:
        api_client.close()


def test_extension_apiserver_authentication_configmap(apiserver, kubectl):
    cm = json.loads(run_kubectl(kubectl, apiserver.kubeconfig, "-n", "kube-system", "get", "configmap",
                                "extension-apiserver-authentication", "-o", "json").stdout)
    data = cm["data"]
    assert data["client-ca-file"] == (apiserver.data_dir / "tls" / "ca.crt").read_text()
    assert data["requestheader-client-ca-file"].startswith("-----BEGIN CERTIFICATE-----")
    assert data["requestheader-client-ca-file"] != data["client-ca-file"]
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]
    reader = run_kubectl(kubectl, apiserver.kubeconfig, "-n", "kube-system", "get", "role",
                         "extension-apiserver-authentication-reader", "-o", "json")
    assert json.loads(reader.stdout)["rules"][0]["resourceNames"] == ["extension-apiserver-authentication"]
