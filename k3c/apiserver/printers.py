"""kube-apiserver's server-side printing of the built-in kinds: their `kubectl get` columns and cells.

Why: `kubectl get deploy,po,svc` asks the server for a Table and prints what it gets, so the columns and
their values must be the ones kube-apiserver's printers (pkg/printers/internalversion) produce:
Deployment READY/UP-TO-DATE/AVAILABLE, Pod READY/STATUS/RESTARTS, Service TYPE/CLUSTER-IP/EXTERNAL-IP/
PORT(S), and so on; `-o wide` adds the priority-1 columns. Values come from the stored object alone, so an
inert Deployment reads 0/1 ready, as it is. One deviation: a Job without conditions or active Pods is
`Pending` here, where kube prints `Running` (its controller would be running it; nothing here is).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

NONE = "<none>"


@dataclass(frozen=True)
class Column:
    """One Table column of a built-in kind and how to compute its cell from an object."""

    name: str
    type: str
    description: str
    value: Callable[[Obj], Any]
    priority: int = 0
    format: str = ""


# ---------------------------------------------------------------------------------------------- times


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 3m20s, 17m, 5h12m, 3d4h, 200d, 3y40d."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 192:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    y = d // 365
    if d < 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def _time(ts: Any) -> dt.datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(ts: Any) -> str | None:
    """How long ago an RFC 3339 time was, in kubectl's format (None when it is no time)."""
    t = _time(ts)
    return None if t is None else human_duration((dt.datetime.now(dt.UTC) - t).total_seconds())


# -------------------------------------------------------------------------------------------- helpers


def _get(obj: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and len(obj) > key else None
        else:
            obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _maps(items: Any) -> list[Obj]:
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _labels(m: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(m.items())) if isinstance(m, dict) and m else NONE


def label_selector(sel: Any) -> str:
    """A LabelSelector as kubectl writes it: `app=web,tier in (a,b),!canary`."""
    if not isinstance(sel, dict):
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in _maps(sel.get("matchExpressions")):
        key, op, values = e.get("key", ""), e.get("operator", ""), ",".join(sorted(e.get("values") or []))
        forms = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "DoesNotExist": f"!{key}"}
        parts.append(str(forms.get(op, key)))
    return ",".join(parts) or NONE


def _containers(template_spec_path: tuple[str, ...]) -> tuple[Callable[[Obj], Any], Callable[[Obj], Any]]:
    """(names, images) of the containers of a pod template, comma-separated."""
    def containers(obj: Obj) -> list[Obj]:
        return _maps(_get(obj, *template_spec_path, "containers"))

    return (lambda o: ",".join(str(c.get("name", "")) for c in containers(o)),
            lambda o: ",".join(str(c.get("image", "")) for c in containers(o)))


def _name(obj: Obj) -> Any:
    return _get(obj, "metadata", "name")


def _age(obj: Obj) -> Any:
    return age(_get(obj, "metadata", "creationTimestamp"))


NAME = Column("Name", "string", "Name must be unique within a namespace. It is required when creating resources.",
              _name, format="name")
AGE = Column("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object "
             "was created.", _age)
_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _access_modes(modes: Any) -> str:
    return ",".join(_ACCESS_MODES.get(str(m), str(m)) for m in modes) if isinstance(modes, list) else ""


def _workload(ready: Callable[[Obj], Any] | None, *middle: Column, template: tuple[str, ...] = ("spec", "template", "spec"),
              selector: bool = True) -> list[Column]:
    names, images = _containers(template)
    cols = [NAME, Column("Ready", "string", "Ready replicas out of desired", ready)] if ready else [NAME]
    cols += [*middle, AGE,
             Column("Containers", "string", "Names of each container in the template.", names, priority=1),
             Column("Images", "string", "Images referenced by each container in the template.", images, priority=1)]
    if selector:
        cols.append(Column("Selector", "string", "Label selector of the managed pods.",
                           lambda o: label_selector(_get(o, "spec", "selector")), priority=1))
    return cols


# ----------------------------------------------------------------------------------------------- pods


def _pod_status(pod: Obj) -> str:
    """kubectl's STATUS of a Pod: the reason of the last container that has one, else the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    running = False
    for c in reversed(_maps(status.get("containerStatuses"))):
        waiting, terminated = _get(c, "state", "waiting"), _get(c, "state", "terminated")
        if isinstance(waiting, dict) and waiting.get("reason"):
            reason = waiting["reason"]
        elif isinstance(terminated, dict):
            reason = terminated.get("reason") or (f"Signal:{terminated['signal']}" if terminated.get("signal")
                                                  else f"ExitCode:{terminated.get('exitCode', 0)}")
        elif _get(c, "state", "running") is not None and c.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if _get(pod, "metadata", "deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _pod_ready(pod: Obj) -> str:
    statuses = _maps(_get(pod, "status", "containerStatuses"))
    total = len(_maps(_get(pod, "spec", "containers")))
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _pod_restarts(pod: Obj) -> str:
    statuses = _maps(_get(pod, "status", "containerStatuses"))
    count = sum(_int(c.get("restartCount")) for c in statuses)
    last = [t for c in statuses if (t := _time(_get(c, "lastState", "terminated", "finishedAt")))]
    if count and last:
        return f"{count} ({human_duration((dt.datetime.now(dt.UTC) - max(last)).total_seconds())} ago)"
    return str(count)


def _readiness_gates(pod: Obj) -> str:
    gates = _maps(_get(pod, "spec", "readinessGates"))
    if not gates:
        return NONE
    true = {c.get("type") for c in _maps(_get(pod, "status", "conditions")) if c.get("status") == "True"}
    return f"{sum(1 for g in gates if g.get('conditionType') in true)}/{len(gates)}"


_POD = [
    NAME,
    Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", _pod_ready),
    Column("Status", "string", "The aggregate status of the containers in this pod.", _pod_status),
    Column("Restarts", "string", "The number of times the containers in this pod have been restarted and when "
           "the last container in this pod has restarted.", _pod_restarts),
    AGE,
    Column("IP", "string", "IP address allocated to the pod.", lambda o: _get(o, "status", "podIP") or NONE,
           priority=1),
    Column("Node", "string", "Name of the node this pod is scheduled on.",
           lambda o: _get(o, "spec", "nodeName") or NONE, priority=1),
    Column("Nominated Node", "string", "Name of the node this pod is nominated to.",
           lambda o: _get(o, "status", "nominatedNodeName") or NONE, priority=1),
    Column("Readiness Gates", "string", "Pod readiness gates that are true.", _readiness_gates, priority=1),
]


# ------------------------------------------------------------------------------------------ workloads


def _replica_counts(desired: str = "replicas") -> list[Column]:
    return [Column("Desired", "integer", "Number of desired pods.", lambda o: _int(_get(o, "spec", desired))),
            Column("Current", "integer", "Number of actually running pods.",
                   lambda o: _int(_get(o, "status", "replicas"))),
            Column("Ready", "integer", "Number of ready pods.", lambda o: _int(_get(o, "status", "readyReplicas")))]


def _replicas_ready(obj: Obj) -> str:
    return f"{_int(_get(obj, 'status', 'readyReplicas'))}/{_int(_get(obj, 'spec', 'replicas'))}"


def _job_status(job: Obj) -> str:
    conditions = {c.get("type") for c in _maps(_get(job, "status", "conditions")) if c.get("status") == "True"}
    for kind in ("Complete", "Failed"):
        if kind in conditions:
            return kind
    if _get(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if kind in conditions:
            return kind
    return "Running" if _int(_get(job, "status", "active")) else "Pending"


def _job_completions(job: Obj) -> str:
    succeeded = _int(_get(job, "status", "succeeded"))
    completions = _get(job, "spec", "completions")
    if isinstance(completions, int):
        return f"{succeeded}/{completions}"
    return f"{succeeded}/1 of {_int(_get(job, 'spec', 'parallelism'))}" if _get(job, "spec", "parallelism") \
        else f"{succeeded}/1"


def _job_duration(job: Obj) -> str:
    start = _time(_get(job, "status", "startTime"))
    if start is None:
        return ""
    end = _time(_get(job, "status", "completionTime")) or dt.datetime.now(dt.UTC)
    return human_duration((end - start).total_seconds())


def _bool(v: Any) -> str:
    return "<unset>" if v is None else ("True" if v is True else "False")


_JOB = [Column("Status", "string", "Status of the job.", _job_status),
        Column("Completions", "string", "The completion status of the job.", _job_completions),
        Column("Duration", "string", "Time required to complete the job.", _job_duration)]

_DAEMON_SET = [
    Column("Desired", "integer", "The number of nodes that should be running the daemon pod.",
           lambda o: _int(_get(o, "status", "desiredNumberScheduled"))),
    Column("Current", "integer", "The number of nodes running at least one daemon pod.",
           lambda o: _int(_get(o, "status", "currentNumberScheduled"))),
    Column("Ready", "integer", "The number of nodes with a ready daemon pod.",
           lambda o: _int(_get(o, "status", "numberReady"))),
    Column("Up-to-date", "integer", "The number of nodes running the updated daemon pod.",
           lambda o: _int(_get(o, "status", "updatedNumberScheduled"))),
    Column("Available", "integer", "The number of nodes with an available daemon pod.",
           lambda o: _int(_get(o, "status", "numberAvailable"))),
    Column("Node Selector", "string", "Node selector of the daemon pods.",
           lambda o: _labels(_get(o, "spec", "template", "spec", "nodeSelector"))),
]

_CRON_JOB = [
    Column("Schedule", "string", "The schedule in Cron format.", lambda o: _get(o, "spec", "schedule") or ""),
    Column("Timezone", "string", "The time zone of the schedule.", lambda o: _get(o, "spec", "timeZone") or NONE),
    Column("Suspend", "boolean", "Whether scheduling is suspended.", lambda o: _bool(_get(o, "spec", "suspend"))),
    Column("Active", "integer", "Number of running jobs.", lambda o: len(_maps(_get(o, "status", "active")))),
    Column("Last Schedule", "string", "When the job was last scheduled.",
           lambda o: age(_get(o, "status", "lastScheduleTime")) or NONE),
]


# ------------------------------------------------------------------------------------- network, storage


def _external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    external = [ip for ip in spec.get("externalIPs") or [] if isinstance(ip, str)]
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return str(spec.get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in _maps(_get(svc, "status", "loadBalancer", "ingress"))]
        found = [x for x in ingress if x] + external
        return ",".join(found) if found else "<pending>"
    return ",".join(external) if external else NONE


def _service_ports(svc: Obj) -> str:
    out = []
    for p in _maps(_get(svc, "spec", "ports")):
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        out.append(f"{p.get('port', '')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or NONE


def _more(items: list[str], limit: int = 3, sep: str = ",") -> str:
    if not items:
        return NONE
    shown = sep.join(items[:limit])
    return shown + (f" + {len(items) - limit} more..." if len(items) > limit else "")


def _endpoints(ep: Obj) -> str:
    items = []
    for subset in _maps(ep.get("subsets")):
        ports = _maps(subset.get("ports")) or [{}]
        for addr in _maps(subset.get("addresses")):
            for port in ports:
                items.append(f"{addr.get('ip', '')}:{port['port']}" if "port" in port else str(addr.get("ip", "")))
    return _more(items)


def _ingress_hosts(ing: Obj) -> str:
    hosts = [str(r["host"]) for r in _maps(_get(ing, "spec", "rules")) if r.get("host")]
    return _more(hosts) if hosts else "*"


def _ingress_address(ing: Obj) -> str:
    found = [i.get("ip") or i.get("hostname") for i in _maps(_get(ing, "status", "loadBalancer", "ingress"))]
    return ",".join(x for x in found if x)


def _phase(obj: Obj) -> str:
    return "Terminating" if _get(obj, "metadata", "deletionTimestamp") else str(_get(obj, "status", "phase") or "")


def _claim_ref(pv: Obj) -> str:
    ref = _get(pv, "spec", "claimRef")
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}" if isinstance(ref, dict) else ""


def _storage_class(obj: Obj) -> str:
    return str(_get(obj, "spec", "storageClassName")
               or _get(obj, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class") or "")


_VAC = Column("VolumeAttributesClass", "string", "The volume attributes class of the volume.",
              lambda o: _get(o, "spec", "volumeAttributesClassName") or "<unset>")
_VOLUME_MODE = Column("VolumeMode", "string", "Whether the volume is a filesystem or a block device.",
                      lambda o: _get(o, "spec", "volumeMode") or "<unset>", priority=1)


def _subjects(kind: str) -> Callable[[Obj], str]:
    def names(binding: Obj) -> str:
        subjects = [s for s in _maps(binding.get("subjects")) if s.get("kind") == kind]
        if kind == "ServiceAccount":
            return ", ".join(f"{s.get('namespace', '')}/{s.get('name', '')}" for s in subjects)
        return ", ".join(str(s.get("name", "")) for s in subjects)
    return names


_BINDING = [
    NAME,
    Column("Role", "string", "The role the binding grants.",
           lambda o: f"{_get(o, 'roleRef', 'kind')}/{_get(o, 'roleRef', 'name')}"),
    AGE,
    Column("Users", "string", "Users the role is granted to.", _subjects("User"), priority=1),
    Column("Groups", "string", "Groups the role is granted to.", _subjects("Group"), priority=1),
    Column("ServiceAccounts", "string", "Service accounts the role is granted to.", _subjects("ServiceAccount"),
           priority=1),
]
_CREATED_AT = Column("Created At", "date", "When the object was created.",
                     lambda o: _get(o, "metadata", "creationTimestamp"))


def _api_service_available(svc: Obj) -> str:
    for c in _maps(_get(svc, "status", "conditions")):
        if c.get("type") == "Available":
            status = str(c.get("status", "Unknown"))
            return status if status == "True" or not c.get("reason") else f"{status} ({c['reason']})"
    return "Unknown"


# ---------------------------------------------------------------------------- the kinds k3c always had


def _data_count(obj: Obj) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _event_object(ev: Obj) -> str:
    io = ev.get("involvedObject") or {}
    return f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"


def _event_source(ev: Obj) -> str:
    src = ev.get("source") or {}
    return ", ".join(v for v in (src.get("component"), src.get("host")) if v) or str(ev.get("reportingComponent", ""))


_EVENT = [
    Column("Last Seen", "string", "Time since the event was last seen",
           lambda o: age(o.get("lastTimestamp") or o.get("eventTime") or _get(o, "metadata", "creationTimestamp"))),
    Column("Type", "string", "Type of the event", lambda o: o.get("type")),
    Column("Reason", "string", "Why the event was recorded", lambda o: o.get("reason")),
    Column("Object", "string", "The object the event is about", _event_object),
    Column("Subobject", "string", "Part of the object", lambda o: _get(o, "involvedObject", "fieldPath"), priority=1),
    Column("Source", "string", "Who recorded the event", _event_source, priority=1),
    Column("Message", "string", "What happened", lambda o: o.get("message")),
    Column("First Seen", "string", "Time since the event was first seen",
           lambda o: age(o.get("firstTimestamp") or o.get("eventTime")), priority=1),
    Column("Count", "integer", "How often it happened", lambda o: o.get("count"), priority=1),
    Column("Name", "string", "Name of the event", _name, priority=1),
]


# ---------------------------------------------------------------------------------------------- table

PRINTERS: dict[tuple[str, str], list[Column]] = {
    ("", "Namespace"): [NAME, Column("Status", "string", "The phase of the namespace",
                                     lambda o: _get(o, "status", "phase")), AGE],
    ("", "ConfigMap"): [NAME, Column("Data", "integer", "Number of keys", _data_count), AGE],
    ("", "Secret"): [NAME, Column("Type", "string", "The type of the secret", lambda o: o.get("type")),
                     Column("Data", "integer", "Number of keys", _data_count), AGE],
    ("", "Event"): _EVENT,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): [
        NAME, Column("Webhooks", "integer", "Number of webhooks", lambda o: len(_maps(o.get("webhooks")))), AGE],
    ("apiextensions.k8s.io", "CustomResourceDefinition"): [
        NAME, Column("Created At", "date", "When the CRD was created", lambda o: _get(o, "metadata", "creationTimestamp"))],
    ("", "Pod"): _POD,
    ("", "ReplicationController"): _workload(None, *_replica_counts()),
    ("", "Service"): [
        NAME,
        Column("Type", "string", "The type of the service.", lambda o: _get(o, "spec", "type")),
        Column("Cluster-IP", "string", "The cluster IP of the service.",
               lambda o: _get(o, "spec", "clusterIP") or NONE),
        Column("External-IP", "string", "The external IP of the service.", _external_ip),
        Column("Port(s)", "string", "The ports of the service.", _service_ports),
        AGE,
        Column("Selector", "string", "The label selector of the service.",
               lambda o: _labels(_get(o, "spec", "selector")), priority=1),
    ],
    ("", "Endpoints"): [NAME, Column("Endpoints", "string", "Endpoints of the service.", _endpoints), AGE],
    ("", "PersistentVolumeClaim"): [
        NAME, Column("Status", "string", "The phase of the claim.", _phase),
        Column("Volume", "string", "The volume bound to the claim.", lambda o: _get(o, "spec", "volumeName") or ""),
        Column("Capacity", "string", "The capacity of the bound volume.",
               lambda o: _get(o, "status", "capacity", "storage") or ""),
        Column("Access Modes", "string", "The access modes of the bound volume.",
               lambda o: _access_modes(_get(o, "status", "accessModes"))),
        Column("StorageClass", "string", "The storage class of the claim.", _storage_class), _VAC, AGE, _VOLUME_MODE,
    ],
    ("", "PersistentVolume"): [
        NAME, Column("Capacity", "string", "The capacity of the volume.",
                     lambda o: _get(o, "spec", "capacity", "storage") or ""),
        Column("Access Modes", "string", "The access modes of the volume.",
               lambda o: _access_modes(_get(o, "spec", "accessModes"))),
        Column("Reclaim Policy", "string", "What happens to the volume when its claim goes.",
               lambda o: _get(o, "spec", "persistentVolumeReclaimPolicy") or ""),
        Column("Status", "string", "The phase of the volume.", _phase),
        Column("Claim", "string", "The claim bound to the volume.", _claim_ref),
        Column("StorageClass", "string", "The storage class of the volume.", _storage_class), _VAC,
        Column("Reason", "string", "Why the volume is in its phase.", lambda o: _get(o, "status", "reason") or ""),
        AGE, _VOLUME_MODE,
    ],
    ("", "ServiceAccount"): [NAME, Column("Secrets", "integer", "The number of secrets of the account.",
                                          lambda o: len(_maps(o.get("secrets")))), AGE],
    ("apps", "Deployment"): _workload(
        _replicas_ready,
        Column("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that "
               "have the desired template spec.", lambda o: _int(_get(o, "status", "updatedReplicas"))),
        Column("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) "
               "targeted by this deployment.", lambda o: _int(_get(o, "status", "availableReplicas")))),
    ("apps", "ReplicaSet"): _workload(None, *_replica_counts()),
    ("apps", "StatefulSet"): _workload(_replicas_ready, selector=False),
    ("apps", "DaemonSet"): _workload(None, *_DAEMON_SET),
    ("batch", "Job"): _workload(None, *_JOB),
    ("batch", "CronJob"): _workload(None, *_CRON_JOB,
                                    template=("spec", "jobTemplate", "spec", "template", "spec")),
    ("networking.k8s.io", "Ingress"): [
        NAME,
        Column("Class", "string", "The ingress class of the ingress.",
               lambda o: _get(o, "spec", "ingressClassName") or NONE),
        Column("Hosts", "string", "The hosts the ingress serves.", _ingress_hosts),
        Column("Address", "string", "The addresses the ingress is reachable at.", _ingress_address),
        Column("Ports", "string", "The ports the ingress serves.",
               lambda o: "80, 443" if _get(o, "spec", "tls") else "80"),
        AGE,
    ],
    ("rbac.authorization.k8s.io", "Role"): [NAME, _CREATED_AT],
    ("rbac.authorization.k8s.io", "ClusterRole"): [NAME, _CREATED_AT],
    ("rbac.authorization.k8s.io", "RoleBinding"): _BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _BINDING,
    ("apiregistration.k8s.io", "APIService"): [
        NAME,
        Column("Service", "string", "The service the API is served by.",
               lambda o: f"{_get(o, 'spec', 'service', 'namespace')}/{_get(o, 'spec', 'service', 'name')}"
               if isinstance(_get(o, "spec", "service"), dict) else "Local"),
        Column("Available", "string", "Whether the API is available.", _api_service_available),
        AGE,
    ],
}


def columns(group: str, kind: str) -> list[Column] | None:
    """The Table columns kube-apiserver prints for a built-in kind (None: not a built-in printed here)."""
    return PRINTERS.get((group, kind))
