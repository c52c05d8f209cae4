"""The RBAC authorizer's rule matching and the request attributes it is asked about (kube's semantics)."""

from __future__ import annotations

from multidict import MultiDict

from k3c.apiserver import requestinfo
from k3c.apiserver.rbac import Binding, Rule, forbidden
from k3c.apiserver.requestinfo import RequestInfo
from k3c.apiserver.subresources import User


def info(method: str, path: str, websocket: bool = False, **query: str) -> RequestInfo:
    return requestinfo.parse(method, path, MultiDict(query), websocket)


def test_request_info_reads_verbs_like_kube():
    assert info("GET", "/apis/k3c.io/v1alpha1/namespaces/n/localcontainers") == RequestInfo(
        "list", "/apis/k3c.io/v1alpha1/namespaces/n/localcontainers", True, "k3c.io", "v1alpha1", "n",
        "localcontainers")
    assert info("GET", "/api/v1/namespaces/n/pods", watch="true").verb == "watch"
    assert info("GET", "/api/v1/watch/namespaces/n/pods").verb == "watch"
    assert info("DELETE", "/api/v1/namespaces/n/pods").verb == "deletecollection"
    assert info("GET", "/api/v1/namespaces/n/pods", fieldSelector="metadata.name=p").name == "p"
    one = info("GET", "/apis/k3c.io/v1alpha1/namespaces/n/localcontainers/c/exec", websocket=True)
    assert (one.verb, one.resource, one.subresource, one.name) == ("create", "localcontainers", "exec", "c")
    assert info("GET", "/apis/k3c.io/v1alpha1/namespaces/n/localcontainers/c/log").verb == "get"
    ns = info("GET", "/api/v1/namespaces/n")
    assert (ns.resource, ns.name, ns.namespace) == ("namespaces", "n", "n")
    assert info("GET", "/apis").resource_request is False
    assert info("GET", "/healthz") == RequestInfo("get", "/healthz")


def test_rules_match_as_kubes_rule_allows():
    rule = Rule(("get", "list"), ("k3c.io",), ("localcontainers", "images/save"))
    assert rule.allows(RequestInfo("get", "", True, "k3c.io", "v1", "n", "localcontainers", "", "x"))
    assert not rule.allows(RequestInfo("get", "", True, "k3c.io", "v1", "n", "localcontainers", "log", "x"))
    assert rule.allows(RequestInfo("get", "", True, "k3c.io", "v1", "", "images", "save", "i"))
    assert not rule.allows(RequestInfo("delete", "", True, "k3c.io", "v1", "n", "localcontainers", "", "x"))
    assert not rule.allows(RequestInfo("get", "", True, "", "v1", "n", "localcontainers", "", "x"))
    named = Rule(("get",), ("",), ("configmaps",), ("only",))
    assert named.allows(RequestInfo("get", "", True, "", "v1", "n", "configmaps", "", "only"))
    assert not named.allows(RequestInfo("list", "", True, "", "v1", "n", "configmaps"))
    sub = Rule(("*",), ("*",), ("*/exec",))
    assert sub.allows(RequestInfo("create", "", True, "k3c.io", "v1", "n", "localcontainers", "exec", "c"))
    url = Rule(("get",), non_resource_urls=("/apis/*", "/healthz"))
    assert url.allows(RequestInfo("get", "/apis/k3c.io")) and url.allows(RequestInfo("get", "/healthz"))
    assert not url.allows(RequestInfo("get", "/healthz/ping"))


def test_subjects_match_users_groups_and_service_accounts():
    binding = Binding.of({"metadata": {"name": "b", "namespace": "n"},
                          "roleRef": {"kind": "ClusterRole", "name": "view"},
                          "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Group", "name": "devs"}]})
    assert binding.subject_for(User("system:serviceaccount:n:sa")) is not None
    assert binding.subject_for(User("system:serviceaccount:m:sa")) is None
    assert binding.subject_for(User("alice", ("devs",))) is not None
    assert binding.subject_for(User("alice")) is None


def test_forbidden_is_worded_as_kube_apiserver():
    user = User("system:serviceaccount:ns:sa")
    a = RequestInfo("get", "", True, "k3c.io", "v1alpha1", "ns", "localcontainers", "", "x")
    err = forbidden(user, a, "")
    assert (err.code, err.message) == (403, 'localcontainers.k3c.io "x" is forbidden: User "system:serviceaccount:'
                                            'ns:sa" cannot get resource "localcontainers" in API group "k3c.io" in the '
                                            'namespace "ns"')
    listing = forbidden(user, RequestInfo("list", "", True, "", "v1", "", "namespaces"), "")
    assert listing.message == ('namespaces is forbidden: User "system:serviceaccount:ns:sa" cannot list resource '
                               '"namespaces" in API group "" at the cluster scope')
    path = forbidden(user, RequestInfo("get", "/metrics"), "")
    assert path.message == 'forbidden: User "system:serviceaccount:ns:sa" cannot get path "/metrics"'
