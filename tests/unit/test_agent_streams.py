"""The node agent's pieces that need no process: stream URLs, the front proxy's word, reviews, peers, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from k3c import api
from k3c.aggregated import authn, routes
from k3c.aggregated.authz import review
from k3c.aggregated.peers import address_of
from k3c.aggregated.reader import _after
from k3c.apiserver import errors
from k3c.apiserver.subresources import User
from k3c.daemon.agent import in_cluster_kubeconfig
from k3c.daemon.supervisor import DaemonError


def test_a_stream_url_names_the_parent_and_its_subresource() -> None:
    t = routes.parse(["namespaces", "ns1", "localcontainers", "web", "exec"])
    assert (t.resource, t.namespace, t.name, t.subresource) == (api.LOCAL_CONTAINERS, "ns1", "web", "exec")
    assert t.parent_path == "/apis/k3c.io/v1alpha1/namespaces/ns1/localcontainers/web/exec"
    assert api.streams_path(api.LOCAL_CONTAINERS, "ns1", "web", "exec") == \
        "/apis/streams.k3c.io/v1alpha1/namespaces/ns1/localcontainers/web/exec"
    image = routes.parse(["images", "-", "save"])
    assert (image.namespace, image.name, routes.names_an_object(image)) == (None, "-", False)


@pytest.mark.parametrize("parts", [["localcontainers", "web", "exec"],  # namespaced without a namespace
                                   ["namespaces", "ns", "images", "x", "save"],  # cluster-scoped in one
                                   ["namespaces", "ns", "volumes", "v", "log"],  # no streams
                                   ["namespaces", "ns", "localcontainers", "web"]])
def test_other_urls_are_not_found(parts: list[str]) -> None:
    with pytest.raises(errors.APIError) as err:
        routes.parse(parts)
    assert err.value.code == 404


def test_names_that_could_name_no_object_are_bad_requests() -> None:
    with pytest.raises(errors.APIError) as err:
        routes.parse(["namespaces", "..", "localcontainers", "web", "log"])
    assert err.value.code == 400


def test_a_websocket_exec_is_authorized_as_create_on_the_parents_group() -> None:
    t = routes.parse(["namespaces", "ns1", "localcontainers", "web", "exec"])
    info = t.request_info("GET", MultiDict(), websocket=True)
    assert (info.verb, info.group, info.resource, info.subresource, info.name, info.namespace) == \
        ("create", "k3c.io", "localcontainers", "exec", "web", "ns1")
    assert t.request_info("GET", MultiDict(), websocket=False).verb == "get"


def test_the_review_carries_the_user_and_the_attributes() -> None:
    t = routes.parse(["namespaces", "ns1", "localcontainers", "web", "log"])
    user = User("jane", ("devs", "system:authenticated"), "u-1", (("scopes", ("a", "b")),))
    doc = review(user, t.request_info("GET", MultiDict(), False))
    assert doc["kind"] == "SubjectAccessReview" and doc["apiVersion"] == "authorization.k8s.io/v1"
    assert doc["spec"] == {
        "user": "jane", "groups": ["devs", "system:authenticated"], "uid": "u-1", "extra": {"scopes": ["a", "b"]},
        "resourceAttributes": {"verb": "get", "group": "k3c.io", "version": "v1alpha1", "resource": "localcontainers",
                               "subresource": "log", "name": "web", "namespace": "ns1"}}


def test_the_front_proxys_configuration_comes_from_the_configmap() -> None:
    cfg = authn.RequestHeaderConfig.from_configmap({
        "requestheader-client-ca-file": "PEM", "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
        "requestheader-username-headers": json.dumps(["X-User"]), "requestheader-group-headers": "[]"})
    assert cfg is not None
    assert (cfg.allowed_names, cfg.username_headers, cfg.group_headers) == \
        (("front-proxy-client",), ("X-User",), ("X-Remote-Group",))
    assert authn.RequestHeaderConfig.from_configmap({"client-ca-file": "PEM"}) is None


def test_the_user_is_read_from_the_headers_as_kube_sends_them() -> None:
    headers = CIMultiDictProxy(CIMultiDict([
        ("X-Remote-User", "jane"), ("X-Remote-Uid", "u-1"), ("X-Remote-Group", "devs"),
        ("X-Remote-Group", "system:authenticated"), ("X-Remote-Extra-Authentication.kubernetes.io%2Fcredential-id",
                                                     "JTI=1")]))
    user = authn._from_headers(headers, ("X-Remote-User",), ("X-Remote-Uid",), ("X-Remote-Group",),
                               ("X-Remote-Extra-",))
    assert user == User("jane", ("devs", "system:authenticated"), "u-1",
                        (("authentication.kubernetes.io/credential-id", ("JTI=1",)),))
    nobody = authn._from_headers(CIMultiDictProxy(CIMultiDict()), ("X-Remote-User",), (), (), ())
    assert nobody == authn.ANONYMOUS


def test_a_peer_is_found_by_its_node_name() -> None:
    endpoints = {"subsets": [
        {"addresses": [{"ip": "10.0.0.1", "nodeName": "a"}], "ports": [{"name": "https", "port": 6444}]},
        {"addresses": [{"ip": "10.0.0.2", "nodeName": "b"}, {"ip": "10.0.0.3", "nodeName": "c"}],
         "ports": [{"name": "metrics", "port": 9000}, {"name": "https", "port": 7444}]}]}
    assert address_of(endpoints, "a") == ("10.0.0.1", 6444)
    assert address_of(endpoints, "c") == ("10.0.0.3", 7444)
    assert address_of(endpoints, "z") is None
    assert address_of({}, "a") is None


def test_written_after_compares_resource_versions_as_numbers() -> None:
    obj = {"metadata": {"resourceVersion": "120"}}
    assert _after(obj, "99") and not _after(obj, "120") and not _after(obj, "200")
    assert _after({"metadata": {"resourceVersion": "opaque"}}, "5")


def test_the_in_cluster_config_is_a_kubeconfig_reading_the_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t0\n")
    (tmp_path / "ca.crt").write_text("CA")
    (tmp_path / "namespace").write_text("k3c-system")
    doc = in_cluster_kubeconfig(tmp_path, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    cluster = doc["clusters"][0]["cluster"]  # type: ignore[index]
    assert cluster == {"server": "https://[fd00::1]:443", "certificate-authority": str(tmp_path / "ca.crt")}
    assert doc["users"][0]["user"] == {"tokenFile": str(tmp_path / "token")}  # type: ignore[index]
    with pytest.raises(DaemonError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_kubeconfig(tmp_path, {})
    with pytest.raises(DaemonError, match="no ServiceAccount token"):
        in_cluster_kubeconfig(tmp_path / "nothing", {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"})


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    import os

    from k3c import kubeclient

    (tmp_path / "token").write_text("first\n")
    (tmp_path / "kc.yaml").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    conn = kubeclient.load(str(tmp_path / "kc.yaml"))
    assert conn.bearer() == "first"
    (tmp_path / "token").write_text("second\n")
    os.utime(tmp_path / "token", (1, 1))  # a different mtime, as the kubelet's atomic swap gives
    assert conn.bearer() == "second"


def test_the_kubelets_runtime_is_read_from_their_command_lines(tmp_path: Path) -> None:
    from k3c.daemon.noderuntime import CONTAINERD_SOCKET, K3S_SOCKET, kubelet_endpoints

    def process(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    process(1, "/sbin/init")
    process(10, "/usr/bin/kubelet", "--container-runtime-endpoint", "unix:///run/a/containerd.sock")
    assert kubelet_endpoints(tmp_path) == {"/run/a/containerd.sock"}
    process(11, "kubelet", "--v=2")  # the kubelet's default endpoint
    process(12, "/usr/local/bin/k3s", "agent", "--server", "https://x:6443")  # k3s's in-process kubelet
    process(13, "/usr/local/bin/k3s", "kubectl", "get", "pods")  # not a node
    assert kubelet_endpoints(tmp_path) == {"/run/a/containerd.sock", CONTAINERD_SOCKET, K3S_SOCKET}
