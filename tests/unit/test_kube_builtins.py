"""The built-ins served from Kubernetes' own schemas: schemas, merge keys, defaults, Service addresses,
printing and server-side apply's field ownership, as pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from k3c.apiserver import fieldmanager, kubedefaults, kubeschemas, openapi, openapi_v2, serviceips, tables
from k3c.apiserver.errors import APIError
from k3c.apiserver.resources import BUILTINS, STORED_ONLY, ResourceType

NOW = "2026-01-01T00:00:00Z"


def rtype(kind: str) -> ResourceType:
    return next(t for t in BUILTINS if t.kind == kind)


# ---------------------------------------------------------------------------------------------- schemas


def test_every_kube_schema_kind_has_its_definition_and_gvk():
    for t in BUILTINS:
        if not t.kube_schema:
            continue
        name = openapi.model_name(t.group, t.version, t.kind)
        d = kubeschemas.definition(name)
        assert d is not None, name
        assert {"group": t.group, "kind": t.kind, "version": t.version} in d["x-kubernetes-group-version-kind"]
        if "list" in t.verbs:  # (the reviews are created only, and kube has no list kind of them)
            assert kubeschemas.definition(openapi.model_name(t.group, t.version, t.list_kind)) is not None


def test_schemas_are_in_kube_apiservers_v3_form():
    spec = kubeschemas.definition("io.k8s.api.apps.v1.DeploymentSpec")
    assert spec["properties"]["replicas"] == {
        "description": spec["properties"]["replicas"]["description"], "format": "int32", "type": "integer"}
    assert spec["properties"]["template"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}]
    assert kubeschemas.definition("io.k8s.apimachinery.pkg.util.intstr.IntOrString")["format"] == "int-or-string"
    deploy = kubeschemas.definition("io.k8s.api.apps.v1.Deployment")
    assert "enum" not in deploy["properties"]["kind"]


def test_merge_keys_come_from_the_patch_extensions():
    keys = rtype("Deployment").strategic_merge_keys()
    assert keys["spec.template.spec.containers"] == "name"
    assert keys["spec.template.spec.containers.ports"] == "containerPort"
    assert keys["spec.template.spec.containers.env"] == "name"
    assert keys["spec.template.spec.volumes"] == "name"
    assert keys["metadata.finalizers"] == ""
    assert rtype("Service").strategic_merge_keys()["spec.ports"] == "port"


def test_openapi_documents_serve_the_kinds_with_strategic_merge():
    types = list(BUILTINS)
    apps = openapi.document("apis/apps/v1", types)
    schemas = apps["components"]["schemas"]
    deploy = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deploy["description"].startswith("apps/v1 Deployment is stored only: nothing runs it")
    assert "io.k8s.api.core.v1.PodSpec" in schemas and "io.k8s.api.apps.v1.DeploymentList" in schemas
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status" in apps["paths"]
    swagger = openapi_v2.swagger(types)
    assert swagger["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    assert "io.k8s.api.networking.v1.Ingress" in swagger["definitions"]


def test_stored_only_kinds_say_so():
    for t in STORED_ONLY:
        assert "stored-only" in t.categories
        warning = t.stored_only_warning()
        assert warning is not None and warning.startswith(f"{t.group_version} {t.kind} is stored only: nothing ")
    assert rtype("ConfigMap").stored_only_warning() is None


# --------------------------------------------------------------------------------------------- defaults


def test_deployment_defaults_fill_only_what_is_absent():
    obj = {"spec": {"replicas": None, "template": {"spec": {"containers": [
        {"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "c", "image": "x@sha256:" + "0" * 64, "imagePullPolicy": "Never"}]}}}}
    kubedefaults.apply("Deployment", obj)
    spec = obj["spec"]
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (1, 10, 600)
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"]) == ("Always", "ClusterFirst", 30)
    assert [c["imagePullPolicy"] for c in pod["containers"]] == ["Always", "IfNotPresent", "Never"]
    assert pod["containers"][1]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    again = {"spec": dict(spec)}
    kubedefaults.apply("Deployment", again)
    assert again["spec"] == spec  # idempotent: `kubectl diff` sees no change


def test_status_on_create_is_the_zero_value():
    deploy = {"spec": {}, "status": {"readyReplicas": 3}}
    kubedefaults.prepare_create("Deployment", deploy)
    assert deploy["status"] == {}
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    kubedefaults.prepare_create("Pod", pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}


# ------------------------------------------------------------------------------------ Service addresses


def svc(**spec) -> dict:
    out = {"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}], **spec}}
    return out


def test_cluster_ips_are_allocated_without_collision():
    stored: list[dict] = []
    for _ in range(50):
        s = svc()
        assert serviceips.allocate(s, None, stored) == []
        stored.append(s)
    ips = [s["spec"]["clusterIP"] for s in stored]
    assert len(set(ips)) == 50
    assert all(ipaddress.ip_address(ip) in serviceips.SERVICE_CIDR for ip in ips)
    assert stored[0]["spec"]["clusterIPs"] == [ips[0]] and stored[0]["spec"]["ipFamilies"] == ["IPv4"]
    taken = svc(clusterIP=ips[0])
    causes = serviceips.allocate(taken, None, stored)
    assert causes and "provided IP is already allocated" in causes[0].message
    outside = serviceips.allocate(svc(clusterIP="192.168.1.1"), None, stored)
    assert "is not in the valid range" in outside[0].message


def test_headless_node_ports_and_updates():
    headless = svc(clusterIP="None")
    assert serviceips.allocate(headless, None, []) == []
    assert headless["spec"]["clusterIPs"] == ["None"]
    node = svc(type="NodePort")
    assert serviceips.allocate(node, None, []) == []
    port = node["spec"]["ports"][0]["nodePort"]
    assert port in serviceips.NODE_PORTS
    clash = svc(type="NodePort", ports=[{"port": 81, "protocol": "TCP", "nodePort": port}])
    assert "already allocated" in serviceips.allocate(clash, None, [node])[0].message
    # an update that omits the addresses keeps them; one that changes the clusterIP is refused
    update = svc(type="NodePort")
    assert serviceips.allocate(update, node, []) == []
    assert update["spec"]["clusterIP"] == node["spec"]["clusterIP"] and update["spec"]["ports"][0]["nodePort"] == port
    moved = svc(type="NodePort", clusterIP="10.43.9.9")
    assert "may not change once set" in serviceips.allocate(moved, node, [])[0].message
    # back to ClusterIP: the node port the old type needed goes
    back = svc(clusterIP=node["spec"]["clusterIP"], ports=[{"port": 80, "protocol": "TCP", "nodePort": port}])
    assert serviceips.allocate(back, node, []) == []
    assert "nodePort" not in back["spec"]["ports"][0]


# ----------------------------------------------------------------------------------------------- tables


def test_tables_print_like_kube_apiserver():
    deploy = {"metadata": {"name": "web", "creationTimestamp": NOW}, "spec": {"replicas": 3, "template": {"spec": {
        "containers": [{"name": "a", "image": "x:1"}]}}, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2}}
    t = tables.table(rtype("Deployment"), [deploy])
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert t["rows"][0]["cells"][:4] == ["web", "1/3", 2, 0]
    assert t["rows"][0]["cells"][5:] == ["a", "x:1", "app=web"]
    service = {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.9",
                                                   "ports": [{"port": 80, "nodePort": 30001, "protocol": "TCP"}]}}
    cells = tables.table(rtype("Service"), [service])["rows"][0]["cells"]
    assert cells[1:5] == ["LoadBalancer", "10.43.0.9", "<pending>", "80:30001/TCP"]
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "containerStatuses": [
               {"ready": True, "restartCount": 1, "state": {"running": {}}},
               {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    cells = tables.table(rtype("Pod"), [pod])["rows"][0]["cells"]
    assert cells[1:4] == ["1/2", "CrashLoopBackOff", "1"]
    job = {"metadata": {"name": "j"}, "spec": {"completions": 1}, "status": {}}
    assert tables.table(rtype("Job"), [job])["rows"][0]["cells"][1:3] == ["Pending", "0/1"]


# ------------------------------------------------------------------------------------ field ownership


def cm(**data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}


def test_apply_conflicts_force_and_release():
    t = rtype("ConfigMap")
    live, managers = fieldmanager.apply(t, {}, cm(a="1", b="1"), "alice", force=False, subresource="", now=NOW)
    live["metadata"]["managedFields"] = fieldmanager.encode(managers)
    with pytest.raises(APIError) as err:
        fieldmanager.apply(t, live, cm(a="2"), "bob", force=False, subresource="", now=NOW)
    assert err.value.code == 409
    assert err.value.message == 'Apply failed with 1 conflict: conflict with "alice": .data.a'
    same, _ = fieldmanager.apply(t, live, cm(a="1"), "bob", force=False, subresource="", now=NOW)  # co-owned
    assert same["data"] == {"a": "1", "b": "1"}
    forced, managers = fieldmanager.apply(t, live, cm(a="2"), "bob", force=True, subresource="", now=NOW)
    forced["metadata"]["managedFields"] = fieldmanager.encode(managers)
    owners = {m.manager: m.fields for m in managers}
    assert owners == {"alice": {("f:data", "f:b")}, "bob": {("f:data", "f:a")}}
    released, _ = fieldmanager.apply(t, forced, cm(), "alice", force=False, subresource="", now=NOW)
    assert released["data"] == {"a": "2"}  # alice's b goes; bob's a stays


def test_keyed_lists_merge_and_updates_take_ownership():
    t = rtype("Deployment")

    def deploy(*containers: dict, replicas: int | None = None) -> dict:
        spec: dict = {"template": {"spec": {"containers": list(containers)}}}
        if replicas is not None:
            spec["replicas"] = replicas
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}

    live, managers = fieldmanager.apply(t, {}, deploy({"name": "web", "image": "a"}, replicas=1), "alice",
                                        force=False, subresource="", now=NOW)
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', ".") in managers[0].fields
    live["metadata"]["managedFields"] = fieldmanager.encode(managers)
    merged, managers = fieldmanager.apply(t, live, deploy({"name": "log", "image": "b"}), "mesh", force=False,
                                          subresource="", now=NOW)
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["web", "log"]
    merged["metadata"]["managedFields"] = fieldmanager.encode(managers)
    # an Update (kubectl scale, edit) takes replicas over without a conflict
    scaled = {**merged, "spec": {**merged["spec"], "replicas": 4}}
    entries = fieldmanager.track(t, merged, scaled, "kubectl", subresource="", now=NOW)
    owners = {(e["manager"], e["operation"]): e["fieldsV1"] for e in entries}
    assert owners[("kubectl", "Update")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("alice", "Apply")]["f:spec"]
