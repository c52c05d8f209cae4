"""The official Python client and a real kopf operator against the embedded API server, plus durability."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import yaml

from tests.support.harness import APIServerProcess, RawClient
from tests.support.sample_crds import WIDGET_CRD

GROUP, VERSION, PLURAL = "test.k3c.io", "v1", "widgets"


@pytest.fixture(scope="module")
def k8s(apiserver):
    from kubernetes import client, config

    r = RawClient(apiserver).post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(WIDGET_CRD))
    assert r.status_code == 201, r.text
    api_client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    api_client.close()


def widget(name: str, size: int = 1) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}}


def test_python_client_crud(k8s):
    from kubernetes.client.rest import ApiException

    custom, core = k8s
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("py1", 2))
    assert created["spec"] == {"size": 2, "color": "red"}
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py1")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py1", {"spec": {"size": 3}})
    assert patched["spec"]["size"] == 3
    status = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "py1",
                                                          {"status": {"phase": "Ok"}})
    assert status["status"] == {"phase": "Ok"}
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert "py1" in [o["metadata"]["name"] for o in listed["items"]]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py1")
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "py1")
    assert err.value.status == 404
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert {"default", "kube-system"} <= set(names)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "pycm"}, "data": {"a": "1"}})
    assert cm.data == {"a": "1"}


def test_python_client_watch(k8s):
    from kubernetes import watch

    custom, _core = k8s
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for ev in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                           resource_version=rv, timeout_seconds=10):
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("pw"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "pw", {"spec": {"size": 5}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "pw")
    t.join(15)
    assert seen == [("ADDED", "pw"), ("MODIFIED", "pw"), ("DELETED", "pw")]


OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings, **_):
        settings.persistence.finalizer = "test.k3c.io/kopf-finalizer"
        settings.posting.level = 0

    @kopf.on.create("test.k3c.io", "v1", "widgets")
    def create_fn(spec, **_):
        return {"doubled": spec["size"] * 2}

    @kopf.on.delete("test.k3c.io", "v1", "widgets")
    def delete_fn(name, namespace, **_):
        import kubernetes
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().create_namespaced_config_map(
            namespace, {"metadata": {"name": "deleted-" + name}})
''')


def test_kopf_operator_finalizer_status_and_deletion(k8s, apiserver, tmp_path):
    custom, core = k8s
    op_file = tmp_path / "operator.py"
    op_file.write_text(OPERATOR)
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    log = open(tmp_path / "kopf.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-n", "default", str(op_file)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("kw", 21))
        obj = _wait(lambda: _get_if(custom, "kw", lambda o: "create_fn" in (o.get("status") or {})), 30,
                    tmp_path / "kopf.log")
        assert obj["status"]["create_fn"] == {"doubled": 42}
        assert "test.k3c.io/kopf-finalizer" in obj["metadata"]["finalizers"]
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "kw")
        _wait(lambda: _gone(custom, "kw"), 30, tmp_path / "kopf.log")
        cm = core.read_namespaced_config_map("deleted-kw", "default")
        assert cm.metadata.name == "deleted-kw"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _get_if(custom, name, pred):
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return obj if pred(obj) else None


def _gone(custom, name) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    except ApiException as err:
        return err.status == 404
    return False


def _wait(fn, timeout, log_path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout}s; operator log:\n{log_path.read_text()[-3000:]}")


def test_acknowledged_writes_survive_kill_9(tmp_path):
    srv = APIServerProcess(tmp_path / "data")
    srv.start()
    try:
        api = RawClient(srv)
        assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                        yaml.safe_load(WIDGET_CRD)).status_code == 201
        written = {}
        for i in range(50):
            r = api.post("/apis/test.k3c.io/v1/namespaces/default/widgets", widget(f"d{i}", i))
            assert r.status_code == 201
            written[f"d{i}"] = r.json()["metadata"]["resourceVersion"]
        last = api.patch("/apis/test.k3c.io/v1/namespaces/default/widgets/d7", {"spec": {"size": 77}},
                         "application/merge-patch+json").json()
        srv.kill9()
        srv.start()
        api = RawClient(srv)
        items = api.get("/apis/test.k3c.io/v1/namespaces/default/widgets").json()["items"]
        assert {o["metadata"]["name"] for o in items} == set(written)
        d7 = api.get("/apis/test.k3c.io/v1/namespaces/default/widgets/d7").json()
        assert d7["spec"]["size"] == 77 and d7["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"]
        new = api.post("/apis/test.k3c.io/v1/namespaces/default/widgets", widget("after")).json()
        assert int(new["metadata"]["resourceVersion"]) > int(last["metadata"]["resourceVersion"])
    finally:
        srv.stop()


def test_compacted_history_gives_410(tmp_path):
    srv = APIServerProcess(tmp_path / "data", extra_args=["--retain-revisions", "5", "--compact-interval", "0.2"])
    srv.start()
    try:
        api = RawClient(srv)
        first = api.post("/api/v1/namespaces/default/configmaps",
                         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c0"}}).json()
        for i in range(1, 20):
            api.put("/api/v1/namespaces/default/configmaps/c0",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c0"}, "data": {"i": str(i)}})
        time.sleep(1.0)
        rv = first["metadata"]["resourceVersion"]
        r = api.get("/api/v1/namespaces/default/configmaps", params={"watch": "1", "resourceVersion": rv})
        assert r.status_code == 410 and r.json()["reason"] == "Expired"
        assert api.get("/api/v1/namespaces/default/configmaps/c0").json()["data"] == {"i": "19"}
    finally:
        srv.stop()


def test_credentials_and_state_are_private(apiserver):
    data = apiserver.data_dir
    for path in [data / "kubeconfig.yaml", data / "state.db", data / "tls" / "admin.key", data / "tls" / "ca.key",
                 data / "tls" / "server.key", data / "tls" / "admin.token"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others: {oct(path.stat().st_mode)}"


def test_local_unix_socket_is_private_and_serves_the_api(apiserver):
    """The CLI's socket beside the kubeconfig: 0600 like the kubeconfig, plain HTTP, same API; over TCP
    the same request without credentials is still a 401."""
    import http.client
    import json
    import socket
    import ssl
    import stat

    from k3c import kubeclient

    sock_path = apiserver.data_dir / "k3c.sock"
    st = sock_path.stat()
    assert stat.S_ISSOCK(st.st_mode) and st.st_mode & 0o077 == 0, oct(st.st_mode)
    conn = kubeclient.load(str(apiserver.data_dir / "kubeconfig.yaml"))
    assert conn.socket_path == str(sock_path)

    def no_tls() -> ssl.SSLContext:
        raise AssertionError("no TLS context is built for the socket")

    client = kubeclient.Client(conn._replace(tls=no_tls))
    created = client.create("/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "via-socket"}})
    assert created["metadata"]["name"] == "via-socket"
    assert client.get("/api/v1/namespaces/default/configmaps/via-socket")["metadata"]["uid"]
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(sock_path))
    raw.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := raw.recv(65536):
        reply += chunk
    raw.close()
    assert reply.startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tcp = http.client.HTTPSConnection(conn.host, conn.port, context=ctx, timeout=10)
    tcp.request("GET", "/api/v1/namespaces/default/configmaps/via-socket")
    resp = tcp.getresponse()
    assert resp.status == 401 and json.loads(resp.read())["kind"] == "Status"
