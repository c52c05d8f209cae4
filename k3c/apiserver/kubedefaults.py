"""kube-apiserver's defaulting of the built-ins served from Kubernetes' schemas, and their status on create.

Why: tools compare what they sent with what the server stored. `kubectl diff` and `kubectl apply` are
stable only when the server fills the same fields the same way every time, and tools read some defaults
(a Deployment's `spec.replicas`, a container's `imagePullPolicy`). So the `SetDefaults_*` functions of
kube's API groups that matter are here, as pure functions that only fill absent (or null) fields, plus
what each kind's strategy puts in `status` on create: the zero value of the Go status struct (a
Deployment gets `{}`, a Pod `phase: Pending`), never a status nothing here produced. Service addresses
are allocated apart (`serviceips`), since that needs the other Services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]

_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "ReplicationController": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# The Go zero value of each kind's status, as its strategy's PrepareForCreate leaves it (non-omitempty
# fields show up as 0). Pods, volumes and claims start Pending, which is true: nothing here moves them on.
_CREATE_STATUS: dict[str, Obj] = {
    "Deployment": {},
    "ReplicaSet": {"replicas": 0},
    "ReplicationController": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                  "numberReady": 0},
    "Job": {},
    "CronJob": {},
    "Pod": {"phase": "Pending"},
    "Service": {"loadBalancer": {}},
    "Ingress": {"loadBalancer": {}},
    "PersistentVolumeClaim": {"phase": "Pending"},
    "PersistentVolume": {"phase": "Pending"},
    "APIService": {},
}


def _default(d: Obj, key: str, value: Any) -> Any:
    """Set `d[key]` when absent or null (Go decodes null as unset), and return what is there."""
    if d.get(key) is None:
        d[key] = value
    return d[key]


def _obj(d: Obj, key: str) -> Obj:
    """The map at `d[key]`, created when absent; a non-map there is left alone (returned as a scratch map)."""
    v = _default(d, key, {})
    return v if isinstance(v, dict) else {}


def _dig(obj: Obj, path: tuple[str, ...]) -> Obj | None:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur if isinstance(cur, dict) else None


def _maps(items: Any) -> list[Obj]:
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


# ---------------------------------------------------------------------------------------------- pods


def image_pull_policy(image: str) -> str:
    """`Always` for `:latest` or no tag, else `IfNotPresent` (a digest counts as pinned)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        _default(p, key, value)
    _handler(p)


def _handler(h: Any) -> None:
    if isinstance(h, dict):
        if isinstance(h.get("httpGet"), dict):
            _default(h["httpGet"], "scheme", "HTTP")
        if isinstance(h.get("grpc"), dict):
            _default(h["grpc"], "service", "")


def _container(c: Obj, host_network: bool) -> None:
    _default(c, "terminationMessagePath", "/dev/termination-log")
    _default(c, "terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        _default(c, "imagePullPolicy", image_pull_policy(c["image"]))
    _default(c, "resources", {})
    for port in _maps(c.get("ports")):
        _default(port, "protocol", "TCP")
        if host_network and port.get("containerPort") is not None:
            _default(port, "hostPort", port["containerPort"])
    for env in _maps(c.get("env")):
        ref = _dig(env, ("valueFrom", "fieldRef"))
        if ref is not None:
            _default(ref, "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        _handler(lifecycle.get("postStart"))
        _handler(lifecycle.get("preStop"))


_VOLUME_SOURCES_WITH_MODE = ("secret", "configMap", "downwardAPI", "projected")


def _volume(v: Obj) -> None:
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in _VOLUME_SOURCES_WITH_MODE:
        if isinstance(v.get(key), dict):
            _default(v[key], "defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        _default(v["hostPath"], "type", "")


def pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec with its containers, probes and volumes."""
    _default(spec, "dnsPolicy", "ClusterFirst")
    _default(spec, "restartPolicy", "Always")
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default(spec, "securityContext", {})
    _default(spec, "schedulerName", "default-scheduler")
    host_network = spec.get("hostNetwork") is True
    for key in ("containers", "initContainers"):
        for c in _maps(spec.get(key)):
            _container(c, host_network)
    for v in _maps(spec.get("volumes")):
        _volume(v)


def qos_class(spec: Obj) -> str:
    """The Pod's QoS class, as kube-apiserver sets it in status on create."""
    containers = _maps(spec.get("containers")) + _maps(spec.get("initContainers"))
    resources: list[Obj] = [c["resources"] if isinstance(c.get("resources"), dict) else {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or str(requests.get(name, limits[name])) != str(limits[name]):
                return "Burstable"
    return "Guaranteed"


def _pod(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "enableServiceLinks", True)
    _default(spec, "priority", 0)
    _default(spec, "preemptionPolicy", "PreemptLowerPriority")


# ----------------------------------------------------------------------------------------- workloads


def _replicas(obj: Obj) -> None:
    _default(_obj(obj, "spec"), "replicas", 1)


def _deployment(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "replicas", 1)
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    strategy = _obj(spec, "strategy")
    if _default(strategy, "type", "RollingUpdate") == "RollingUpdate":
        rolling = _obj(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", "25%")
        _default(rolling, "maxSurge", "25%")


def _stateful_set(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "replicas", 1)
    _default(spec, "podManagementPolicy", "OrderedReady")
    _default(spec, "revisionHistoryLimit", 10)
    strategy = _obj(spec, "updateStrategy")
    if _default(strategy, "type", "RollingUpdate") == "RollingUpdate":
        _default(_obj(strategy, "rollingUpdate"), "partition", 0)
    retention = _obj(spec, "persistentVolumeClaimRetentionPolicy")
    _default(retention, "whenDeleted", "Retain")
    _default(retention, "whenScaled", "Retain")
    for claim in _maps(spec.get("volumeClaimTemplates")):
        _default(_obj(claim, "spec"), "volumeMode", "Filesystem")


def _daemon_set(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "revisionHistoryLimit", 10)
    strategy = _obj(spec, "updateStrategy")
    if _default(strategy, "type", "RollingUpdate") == "RollingUpdate":
        rolling = _obj(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", 1)
        _default(rolling, "maxSurge", 0)


def _replication_controller(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "replicas", 1)
    labels = _dig(spec, ("template", "metadata", "labels"))
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _obj(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)


def _job(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _default(spec, "parallelism", 1)
    _default(spec, "backoffLimit", 6)
    _default(spec, "completionMode", "NonIndexed")
    _default(spec, "suspend", False)
    _default(spec, "podReplacementPolicy", "TerminatingOrFailed")


def job_selector(obj: Obj) -> None:
    """The Job strategy's generated selector: the template and the selector carry the Job's uid (on create,
    unless `spec.manualSelector`)."""
    spec = _obj(obj, "spec")
    meta = obj.get("metadata") or {}
    if spec.get("manualSelector") is True or not meta.get("uid"):
        return
    labels = {"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": meta.get("name", ""),
              "controller-uid": meta["uid"], "job-name": meta.get("name", "")}
    template_meta = _obj(_obj(spec, "template"), "metadata")
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}


def _cron_job(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    _default(spec, "successfulJobsHistoryLimit", 3)
    _default(spec, "failedJobsHistoryLimit", 1)


# ------------------------------------------------------------------------------------ network, storage


def _service(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    kind = _default(spec, "type", "ClusterIP")
    _default(spec, "sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        _default(_obj(_obj(spec, "sessionAffinityConfig"), "clientIP"), "timeoutSeconds", 10800)
    for port in _maps(spec.get("ports")):
        _default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
            port["targetPort"] = port["port"]
    if kind in ("NodePort", "LoadBalancer"):
        _default(spec, "externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _default(spec, "allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":
        _default(spec, "internalTrafficPolicy", "Cluster")


def _endpoints(obj: Obj) -> None:
    for subset in _maps(obj.get("subsets")):
        for port in _maps(subset.get("ports")):
            _default(port, "protocol", "TCP")


def _claim(obj: Obj) -> None:
    _default(_obj(obj, "spec"), "volumeMode", "Filesystem")


def _volume_kind(obj: Obj) -> None:
    spec = _obj(obj, "spec")
    _default(spec, "persistentVolumeReclaimPolicy", "Retain")
    _default(spec, "volumeMode", "Filesystem")


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": _pod,
    "ReplicationController": _replication_controller,
    "Deployment": _deployment,
    "ReplicaSet": _replicas,
    "StatefulSet": _stateful_set,
    "DaemonSet": _daemon_set,
    "Job": _job,
    "CronJob": _cron_job,
    "Service": _service,
    "Endpoints": _endpoints,
    "PersistentVolumeClaim": _claim,
    "PersistentVolume": _volume_kind,
}


def drop_nulls(value: Any) -> Any:
    """Go's decoder leaves a null field unset and its encoder omits it: nulls do not reach storage."""
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            drop_nulls(v)
    elif isinstance(value, list):
        for v in value:
            drop_nulls(v)
    return value


def apply(kind: str, obj: Obj) -> None:
    """Fill kube-apiserver's defaults of one built-in object (in place; only absent or null fields)."""
    drop_nulls(obj)
    fill = _DEFAULTERS.get(kind)
    if fill is not None:
        fill(obj)
    path = _POD_SPEC_PATHS.get(kind)
    spec = _dig(obj, path) if path else None
    if spec is not None:
        pod_spec(spec)


def prepare_create(kind: str, obj: Obj) -> None:
    """What a kind's strategy does on create, beyond defaults: status starts at its zero value."""
    if kind in _CREATE_STATUS:
        obj["status"] = dict(_CREATE_STATUS[kind])
    if kind == "Pod":
        obj["status"]["qosClass"] = qos_class(_obj(obj, "spec"))
    if kind == "Job":
        job_selector(obj)
