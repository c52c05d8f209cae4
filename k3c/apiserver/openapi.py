"""OpenAPI v3 documents as kube-apiserver publishes them under /openapi/v3.

`index(types)` is the discovery document of `GET /openapi/v3`; `document(path, types)` is the per
group-version document of `GET /openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`. Both are
pure functions of the ResourceTypes.

What kubectl reads from them (1.27-1.33):

* field-validation support (`kubectl create/apply/edit/replace` choose server-side validation by it):
  the PATCH operation of every path whose `x-kubernetes-group-version-kind` (an object on operations)
  equals the object's GVK must list an inline `fieldValidation` query parameter;
* `kubectl explain`: the GVK is taken from the `get` (or post/put/patch/delete) operation of
  `/apis/<g>/<v>/<plural>` (1.27 looks only at this cluster-wide path, so namespaced resources keep their
  all-namespaces list path) or `/apis/<g>/<v>/namespaces/{namespace}/<plural>[/{name}]`; the schema is the
  `components.schemas` entry whose `x-kubernetes-group-version-kind` list contains exactly
  `{group, kind, version}`; `$ref`s (also inside `allOf`) point into `#/components/schemas/`;
* client-side `kubectl apply` (1.29+): strategic merge patch is computed from these schemas when the PATCH
  request body lists `application/strategic-merge-patch+json`, so it is only listed for built-ins whose
  schema here is complete (with `x-kubernetes-patch-*` extensions); otherwise kubectl falls back to its
  compiled-in types (built-ins) or to a JSON merge patch (custom resources).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from . import kubeschemas
from .resources import ResourceType

__all__ = ["index", "document", "document_hash", "serialize", "model_name", "gv_path"]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
CORE = "io.k8s.api.core.v1."
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _ref_field(name: str, description: str, **extra: Any) -> dict[str, Any]:
    """A property that is a reference, in kube-apiserver's v3 form (siblings of $ref go around an allOf)."""
    out: dict[str, Any] = {"description": description, "allOf": [_ref(name)]}
    out.update(extra)
    return out


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _int(description: str, fmt: str = "int64", **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "format": fmt, "description": description, **extra}


def _bool(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _str_map(description: str, fmt: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"type": "string", "default": ""}
    if fmt:
        item["format"] = fmt
    return {"type": "object", "description": description, "additionalProperties": item}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


_API_VERSION = _str("APIVersion is the versioned schema of this representation of an object: group/version, "
                    "or just the version for the core group.")
_KIND = _str("Kind is the REST resource this object represents, in CamelCase. Cannot be updated.")
_OBJECT_META_DESC = "Standard object metadata: name, namespace, labels, annotations, owners and the like."
_LIST_META_DESC = "Standard list metadata: the resourceVersion of the list and the continue token for paging."


# --------------------------------------------------------------------------------------------------
# meta/v1 schemas (short, hand-written; enough for explain, strategic merge patch and references)
# --------------------------------------------------------------------------------------------------

_META_SCHEMAS: dict[str, dict[str, Any]] = {
    META + "Time": {
        "type": "string", "format": "date-time",
        "description": "A timestamp, serialized as RFC 3339 with second precision (e.g. 2024-01-02T15:04:05Z).",
    },
    META + "MicroTime": {
        "type": "string", "format": "date-time",
        "description": "A timestamp with microsecond precision, serialized as RFC 3339.",
    },
    META + "FieldsV1": {
        "type": "object",
        "description": "The set of fields a manager owns, as a trie of field names in JSON form.",
    },
    META + "ObjectMeta": {
        "type": "object",
        "description": "Metadata that every persisted resource has.",
        "properties": {
            "annotations": _str_map("Unstructured key/value data attached by tools and users; not queryable."),
            "creationTimestamp": _ref_field(META + "Time", "When the object was created. Set by the server; "
                                                           "read-only."),
            "deletionGracePeriodSeconds": _int("Seconds allowed for graceful termination once deletion was "
                                               "requested. Read-only."),
            "deletionTimestamp": _ref_field(META + "Time", "When the object will be deleted; set when deletion is "
                                                           "requested and finalizers remain. Read-only."),
            "finalizers": {
                "type": "array", "items": {"type": "string", "default": ""},
                "description": "Entries that must be removed before the object is deleted from storage.",
                "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge",
            },
            "generateName": _str("Prefix from which the server generates a unique name when name is empty."),
            "generation": _int("Sequence number of the desired state; incremented on spec changes. Read-only."),
            "labels": _str_map("Key/value pairs used to organize and select objects."),
            "managedFields": {
                "type": "array",
                "items": {"default": {}, "allOf": [_ref(META + "ManagedFieldsEntry")]},
                "description": "Which field manager owns which fields (server-side apply). Mostly internal.",
                "x-kubernetes-list-type": "atomic",
            },
            "name": _str("Name of the object, unique within a namespace (or the cluster for cluster-scoped "
                         "resources). Cannot be updated."),
            "namespace": _str("Namespace the object lives in; empty for cluster-scoped resources. Cannot be "
                              "updated."),
            "ownerReferences": {
                "type": "array",
                "items": {"default": {}, "allOf": [_ref(META + "OwnerReference")]},
                "description": "Objects this object depends on; it is garbage collected when all owners are gone.",
                "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge",
            },
            "resourceVersion": _str("Opaque version of the object, used for optimistic concurrency and watches. "
                                    "Read-only."),
            "selfLink": _str("Deprecated; not set."),
            "uid": _str("Unique identifier of this object in time and space. Set by the server; read-only."),
        },
    },
    META + "ListMeta": {
        "type": "object",
        "description": "Metadata of a list response.",
        "properties": {
            "continue": _str("Token to pass as `continue` to fetch the next page, when the list was limited."),
            "remainingItemCount": _int("Approximate number of items after this page, when known."),
            "resourceVersion": _str("Version of the list; start a watch from it."),
            "selfLink": _str("Deprecated; not set."),
        },
    },
    META + "ManagedFieldsEntry": {
        "type": "object",
        "description": "The fields one manager owns, for one operation and API version.",
        "properties": {
            "apiVersion": _str("API version of the fields listed in fieldsV1."),
            "fieldsType": _str("Format of the fields description; only FieldsV1."),
            "fieldsV1": _ref_field(META + "FieldsV1", "The owned fields."),
            "manager": _str("Name of the manager (workflow) owning these fields."),
            "operation": _str("Apply or Update: the kind of operation that recorded this entry."),
            "subresource": _str("Subresource the fields were written through, if any (e.g. status)."),
            "time": _ref_field(META + "Time", "When these fields were last changed by this manager."),
        },
    },
    META + "OwnerReference": {
        "type": "object",
        "description": "Identifies an owner of an object. Owners must be in the same namespace, or cluster-scoped.",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
            "apiVersion": _str("API version of the owner.", default=""),
            "blockOwnerDeletion": _bool("If true, the owner cannot be deleted (foreground) until this reference "
                                        "is removed."),
            "controller": _bool("If true, this owner is the managing controller. At most one may be true."),
            "kind": _str("Kind of the owner.", default=""),
            "name": _str("Name of the owner.", default=""),
            "uid": _str("UID of the owner.", default=""),
        },
        "x-kubernetes-map-type": "atomic",
    },
    META + "Preconditions": {
        "type": "object",
        "description": "Conditions that must hold before an operation is carried out.",
        "properties": {
            "resourceVersion": _str("The target resourceVersion."),
            "uid": _str("The target UID."),
        },
    },
    META + "DeleteOptions": {
        "type": "object",
        "description": "Options of a delete request.",
        "properties": {
            "apiVersion": _API_VERSION,
            "dryRun": {"type": "array", "items": {"type": "string", "default": ""},
                       "description": "When present (All), the deletion is not persisted.",
                       "x-kubernetes-list-type": "atomic"},
            "gracePeriodSeconds": _int("Seconds before the object is deleted; 0 means immediately."),
            "ignoreStoreReadErrorWithClusterBreakingPotential": _bool(
                "Delete objects that cannot be read from storage. Dangerous; off by default."),
            "kind": _KIND,
            "orphanDependents": _bool("Deprecated: use propagationPolicy."),
            "preconditions": _ref_field(META + "Preconditions", "Must be fulfilled before the deletion."),
            "propagationPolicy": _str("Whether and how dependents are garbage collected: Orphan, Background "
                                      "or Foreground."),
        },
        "x-kubernetes-group-version-kind": [_gvk("", "v1", "DeleteOptions")],
    },
    META + "StatusCause": {
        "type": "object",
        "description": "One cause of an error, often a field.",
        "properties": {
            "field": _str("The field of the request the cause refers to, e.g. spec.replicas."),
            "message": _str("Human-readable description of the cause."),
            "reason": _str("Machine-readable description of the cause, e.g. FieldValueInvalid."),
        },
    },
    META + "StatusDetails": {
        "type": "object",
        "description": "Extra data about an error.",
        "properties": {
            "causes": {"type": "array", "items": {"default": {}, "allOf": [_ref(META + "StatusCause")]},
                       "description": "The individual causes.", "x-kubernetes-list-type": "atomic"},
            "group": _str("Group of the resource concerned."),
            "kind": _str("Kind (resource) concerned."),
            "name": _str("Name of the object concerned."),
            "retryAfterSeconds": _int("Seconds to wait before retrying.", "int32"),
            "uid": _str("UID of the object concerned."),
        },
    },
    META + "Status": {
        "type": "object",
        "description": "The result of an operation that does not return an object, such as errors.",
        "properties": {
            "apiVersion": _API_VERSION,
            "code": _int("HTTP status code.", "int32"),
            "details": _ref_field(META + "StatusDetails", "Extended data about the reason."),
            "kind": _KIND,
            "message": _str("Human-readable description of the status."),
            "metadata": _ref_field(META + "ListMeta", _LIST_META_DESC, default={}),
            "reason": _str("Machine-readable reason, e.g. NotFound, AlreadyExists, Invalid."),
            "status": _str("Success or Failure."),
        },
        "x-kubernetes-group-version-kind": [_gvk("", "v1", "Status")],
    },
    META + "Patch": {
        "type": "object",
        "description": "The body of a PATCH request: a JSON patch, merge patch, strategic merge patch or apply "
                       "configuration, according to its Content-Type.",
    },
}


# --------------------------------------------------------------------------------------------------
# core/v1 schemas of the built-ins k3c serves
# --------------------------------------------------------------------------------------------------

def _kind_props(extra: dict[str, Any]) -> dict[str, Any]:
    props = {"apiVersion": _API_VERSION, "kind": _KIND,
             "metadata": _ref_field(META + "ObjectMeta", _OBJECT_META_DESC, default={})}
    props.update(extra)
    return props


_CORE_SCHEMAS: dict[str, dict[str, Any]] = {
    CORE + "Namespace": {
        "type": "object",
        "description": "Namespace provides a scope for names. Deleting it deletes everything in it.",
        "properties": _kind_props({
            "spec": _ref_field(CORE + "NamespaceSpec", "Desired behaviour of the namespace.", default={}),
            "status": _ref_field(CORE + "NamespaceStatus", "Observed status of the namespace. Read-only.",
                                 default={}),
        }),
    },
    CORE + "NamespaceSpec": {
        "type": "object",
        "description": "Desired behaviour of a namespace.",
        "properties": {
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""},
                           "description": "Must be empty before the namespace is removed from storage.",
                           "x-kubernetes-list-type": "atomic"},
        },
    },
    CORE + "NamespaceStatus": {
        "type": "object",
        "description": "Observed state of a namespace.",
        "properties": {
            "conditions": {
                "type": "array", "items": {"default": {}, "allOf": [_ref(CORE + "NamespaceCondition")]},
                "description": "Latest observations of the namespace's state.",
                "x-kubernetes-list-map-keys": ["type"], "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge",
            },
            "phase": _str("Lifecycle phase of the namespace.", enum=["Active", "Terminating"]),
        },
    },
    CORE + "NamespaceCondition": {
        "type": "object",
        "description": "One observation of a namespace's state.",
        "required": ["type", "status"],
        "properties": {
            "lastTransitionTime": _ref_field(META + "Time", "Last time the condition changed status."),
            "message": _str("Human-readable details."),
            "reason": _str("Machine-readable reason, in CamelCase."),
            "status": _str("True, False or Unknown.", default=""),
            "type": _str("Type of the condition.", default=""),
        },
    },
    CORE + "ConfigMap": {
        "type": "object",
        "description": "ConfigMap holds non-confidential configuration data for workloads to consume.",
        "properties": _kind_props({
            "binaryData": _str_map("Binary values, base64-encoded in JSON. Keys must not repeat those of data.",
                                   "byte"),
            "data": _str_map("UTF-8 configuration values. Keys: alphanumerics, '-', '_' or '.'."),
            "immutable": _bool("If true, data and binaryData cannot be changed any more."),
        }),
    },
    CORE + "Secret": {
        "type": "object",
        "description": "Secret holds a small amount of sensitive data, such as a password, token or key.",
        "properties": _kind_props({
            "data": _str_map("Secret values, base64-encoded in JSON.", "byte"),
            "immutable": _bool("If true, data cannot be changed any more."),
            "stringData": _str_map("Write-only convenience: plain string values merged into data on write."),
            "type": _str("Used to check the secret's data programmatically, e.g. Opaque or "
                         "kubernetes.io/tls."),
        }),
    },
    CORE + "ObjectReference": {
        "type": "object",
        "description": "A reference to an object, or to a field of it.",
        "properties": {
            "apiVersion": _str("API version of the referent."),
            "fieldPath": _str("A field of the referent, e.g. spec.containers{name}, when the reference is to "
                              "a part of it."),
            "kind": _str("Kind of the referent."),
            "name": _str("Name of the referent."),
            "namespace": _str("Namespace of the referent."),
            "resourceVersion": _str("Specific resourceVersion the reference is to, if any."),
            "uid": _str("UID of the referent."),
        },
        "x-kubernetes-map-type": "atomic",
    },
    CORE + "EventSource": {
        "type": "object",
        "description": "The component that reported an event.",
        "properties": {
            "component": _str("Component that generated the event."),
            "host": _str("Node name on which the event was generated."),
        },
    },
    CORE + "EventSeries": {
        "type": "object",
        "description": "Data about a series of repeated events.",
        "properties": {
            "count": _int("Number of occurrences in this series so far.", "int32"),
            "lastObservedTime": _ref_field(META + "MicroTime", "Time of the last occurrence observed."),
        },
    },
    CORE + "Event": {
        "type": "object",
        "description": "Event reports something that happened to an object, such as a state change or an error.",
        "required": ["metadata", "involvedObject"],
        "properties": _kind_props({
            "action": _str("What action was taken or failed regarding the object."),
            "count": _int("How many times this event occurred.", "int32"),
            "eventTime": _ref_field(META + "MicroTime", "When the event was first observed."),
            "firstTimestamp": _ref_field(META + "Time", "When the event was first recorded."),
            "involvedObject": _ref_field(CORE + "ObjectReference", "The object the event is about.",
                                         default={}),
            "lastTimestamp": _ref_field(META + "Time", "When the most recent occurrence was recorded."),
            "message": _str("Human-readable description of the event."),
            "reason": _str("Short, machine-understandable reason for the transition, in CamelCase."),
            "related": _ref_field(CORE + "ObjectReference", "Secondary object, if any."),
            "reportingComponent": _str("Name of the controller that emitted the event.", default=""),
            "reportingInstance": _str("ID of the controller instance that emitted the event.", default=""),
            "series": _ref_field(CORE + "EventSeries", "Data about the series this event belongs to, if any."),
            "source": _ref_field(CORE + "EventSource", "The component reporting this event.", default={}),
            "type": _str("Normal or Warning."),
        }),
    },
}

# Hand-written schemas of built-in kinds, by (group, version, kind).
_BUILTIN_KINDS = {("", "v1", "Namespace"), ("", "v1", "ConfigMap"), ("", "v1", "Secret"), ("", "v1", "Event")}

_BUILTIN_GROUP_PREFIX = {
    "": "io.k8s.api.core",
    "apps": "io.k8s.api.apps",
    "batch": "io.k8s.api.batch",
    "networking.k8s.io": "io.k8s.api.networking",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
    "authentication.k8s.io": "io.k8s.api.authentication",
    "authorization.k8s.io": "io.k8s.api.authorization",
    "admissionregistration.k8s.io": "io.k8s.api.admissionregistration",
    "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    "events.k8s.io": "io.k8s.api.events",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
}

_LIBRARY = {**_META_SCHEMAS, **_CORE_SCHEMAS}


def _library(name: str) -> dict[str, Any] | None:
    """A referenced schema: hand-written above, else Kubernetes' own (for the kube-schema built-ins)."""
    return _LIBRARY.get(name) or kubeschemas.definition(name)


# --------------------------------------------------------------------------------------------------
# Names and paths
# --------------------------------------------------------------------------------------------------


def model_name(group: str, version: str, kind: str) -> str:
    """kube-apiserver's schema name: `io.k8s.api.core.v1.ConfigMap`, `io.k3c.v1alpha1.LocalContainer`."""
    prefix = _BUILTIN_GROUP_PREFIX.get(group)
    if prefix is None:
        prefix = ".".join(reversed(group.split(".")))
    return f"{prefix}.{version}.{kind}"


def gv_path(group: str, version: str) -> str:
    """The key of a group-version in the /openapi/v3 index: `api/v1` or `apis/<group>/<version>`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _normalize_gv_path(p: str) -> str:
    p = p.split("?", 1)[0].strip("/")
    if p.startswith("openapi/v3/"):
        p = p[len("openapi/v3/"):]
    return p


def _camel_gv(group: str, version: str) -> tuple[str, str]:
    """(`K3cIoV1alpha1`, `k3cIo_v1alpha1`) as kube-apiserver builds operation IDs and tags."""
    g = group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group
    parts = [p for p in re.split(r"[.\-]", g or "core") if p]
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    tag = camel[:1].lower() + camel[1:] + "_" + version
    return camel + version[:1].upper() + version[1:], tag


# --------------------------------------------------------------------------------------------------
# Schemas of the served kinds
# --------------------------------------------------------------------------------------------------


def _to_openapi(s: Any) -> Any:
    """A CRD schema node as kube-apiserver publishes it (Unfold + embedded-resource properties)."""
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k in ("properties", "patternProperties", "definitions") and isinstance(v, dict):
            out[k] = {pk: _to_openapi(pv) for pk, pv in v.items()}
        elif k in ("items", "not") and isinstance(v, dict):
            out[k] = _to_openapi(v)
        elif k in ("allOf", "anyOf", "oneOf") and isinstance(v, list):
            out[k] = [_to_openapi(i) for i in v]
        elif k == "additionalProperties":
            if isinstance(v, dict):
                out[k] = _to_openapi(v)
            # booleans are dropped: kubectl explain (1.27) cannot render `additionalProperties: true`
        else:
            out[k] = copy.deepcopy(v)
    if out.get("x-kubernetes-int-or-string") is True and "anyOf" not in out and "allOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-embedded-resource") is True:
        props = out.setdefault("properties", {})
        props["apiVersion"] = copy.deepcopy(_API_VERSION)
        props["kind"] = copy.deepcopy(_KIND)
        props["metadata"] = _ref_field(META + "ObjectMeta", _OBJECT_META_DESC)
        req = out.setdefault("required", [])
        for k in ("kind", "apiVersion"):
            if k not in req:
                req.append(k)
    return out


def _kind_schema(rt: ResourceType) -> dict[str, Any]:
    key = (rt.group, rt.version, rt.kind)
    if key in _BUILTIN_KINDS:
        s = copy.deepcopy(_CORE_SCHEMAS[model_name(*key)])
    elif rt.kube_schema:
        s = copy.deepcopy(kubeschemas.definition(model_name(*key)) or {})
        if (warning := rt.stored_only_warning()) is not None:
            s["description"] = f"{warning}. {s.get('description', '')}"
    elif rt.schema is not None:
        s = _to_openapi(rt.schema)
        s["type"] = "object"
        props = s.setdefault("properties", {})
        props["apiVersion"] = copy.deepcopy(_API_VERSION)
        props["kind"] = copy.deepcopy(_KIND)
        props["metadata"] = _ref_field(META + "ObjectMeta", _OBJECT_META_DESC)
    else:
        s = {
            "type": "object",
            "description": f"{rt.kind} ({rt.group_version}). Its fields are not described by this server.",
            "properties": _kind_props({}),
            "x-kubernetes-preserve-unknown-fields": True,
        }
    s["x-kubernetes-group-version-kind"] = [_gvk(rt.group, rt.version, rt.kind)]
    return s


def _list_schema(rt: ResourceType) -> dict[str, Any]:
    if rt.kube_schema:
        return copy.deepcopy(kubeschemas.definition(model_name(rt.group, rt.version, rt.list_kind)) or {})
    return {
        "type": "object",
        "description": f"{rt.list_kind} is a list of {rt.kind}.",
        "required": ["items"],
        "properties": {
            "apiVersion": copy.deepcopy(_API_VERSION),
            "items": {"type": "array", "description": f"List of {rt.plural}.",
                      "items": _ref(model_name(rt.group, rt.version, rt.kind))},
            "kind": copy.deepcopy(_KIND),
            "metadata": _ref_field(META + "ListMeta", _LIST_META_DESC, default={}),
        },
        "x-kubernetes-group-version-kind": [_gvk(rt.group, rt.version, rt.list_kind)],
    }


def _refs(x: Any, acc: set[str]) -> None:
    if isinstance(x, dict):
        r = x.get("$ref")
        if isinstance(r, str) and r.startswith(_REF):
            acc.add(r[len(_REF):])
        for v in x.values():
            _refs(v, acc)
    elif isinstance(x, list):
        for v in x:
            _refs(v, acc)


# --------------------------------------------------------------------------------------------------
# Paths and operations
# --------------------------------------------------------------------------------------------------


def _qp(name: str, description: str, typ: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": typ, "uniqueItems": True}}


_PRETTY = _qp("pretty", "If 'true', the output is pretty printed.")
_DRY_RUN = _qp("dryRun", "When present, the modification is not persisted. The only valid value is All.")
_FIELD_MANAGER = _qp("fieldManager", "Name of the actor making the change, recorded for field ownership. At most "
                                     "128 printable characters.")
_FIELD_VALIDATION = _qp(
    "fieldValidation",
    "How to handle unknown or duplicate fields in the request body: Ignore (drop them silently), Warn (drop them "
    "and return a warning per field; the default) or Strict (fail the request).",
)
_FORCE = _qp("force", "Take ownership of conflicting fields from other managers. Only for apply patches.", "boolean")
_LIST_PARAMS = [
    _qp("allowWatchBookmarks", "Ask for BOOKMARK events in a watch.", "boolean"),
    _qp("continue", "Continue token from a previous limited list, to get the next page."),
    _qp("fieldSelector", "Select objects by fields, e.g. metadata.name=foo."),
    _qp("labelSelector", "Select objects by labels, e.g. app=web,tier!=db."),
    _qp("limit", "Maximum number of items to return; the rest is reachable through continue.", "integer"),
    _qp("resourceVersion", "Which version of the data the list or watch starts from."),
    _qp("resourceVersionMatch", "How resourceVersion applies to a list: Exact or NotOlderThan."),
    _qp("sendInitialEvents", "With watch=true, start the watch with synthetic ADDED events for the existing "
                             "objects.", "boolean"),
    _qp("timeoutSeconds", "Time limit of the list or watch call.", "integer"),
    _qp("watch", "Watch for changes instead of listing; the response is a stream of watch events.", "boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _qp("gracePeriodSeconds", "Seconds before the object is deleted; 0 means immediately.", "integer"),
    _qp("ignoreStoreReadErrorWithClusterBreakingPotential", "Delete objects that cannot be read from storage. "
                                                            "Dangerous.", "boolean"),
    _qp("orphanDependents", "Deprecated: use propagationPolicy.", "boolean"),
    _qp("propagationPolicy", "Whether and how dependents are garbage collected: Orphan, Background or "
                             "Foreground."),
]
_WRITE_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]

_PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]
_SMP = "application/strategic-merge-patch+json"
_PRODUCES = ["application/json", "application/yaml"]
_PRODUCES_LIST = ["application/json", "application/yaml", "application/json;stream=watch"]


def _responses(codes: dict[str, str], schema: str, produces: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, desc in codes.items():
        out[code] = {"description": desc, "content": {mt: {"schema": _ref(schema)} for mt in produces}}
    out["401"] = {"description": "Unauthorized"}
    return out


def _paths_for(rt: ResourceType) -> dict[str, dict[str, Any]]:
    g, v, kind = rt.group, rt.version, rt.kind
    camel_gv, tag = _camel_gv(g, v)
    gvk = _gvk(g, v, kind)
    kind_ref = model_name(g, v, kind)
    list_ref = model_name(g, v, rt.list_kind)
    status_ref = META + "Status"
    ns = "Namespaced" if rt.namespaced else ""
    verbs = set(rt.verbs)
    prefix = f"/apis/{g}/{v}" if g else f"/api/{v}"
    root = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
    smp = rt.strategic_merge and ((g, v, kind) in _BUILTIN_KINDS or rt.kube_schema)
    article = "an" if kind[:1].lower() in "aeiou" else "a"

    name_param = {"name": "name", "in": "path", "description": f"name of the {kind}", "required": True,
                  "schema": {"type": "string", "uniqueItems": True}}
    ns_param = {"name": "namespace", "in": "path", "description": "object name and auth scope, such as for teams "
                                                                  "and projects",
                "required": True, "schema": {"type": "string", "uniqueItems": True}}

    def op(verb: str, action: str, sub: str, description: str, params: list[dict[str, Any]],
           responses: dict[str, Any], body: dict[str, Any] | None = None, suffix: str = "") -> dict[str, Any]:
        o: dict[str, Any] = {
            "tags": [tag],
            "description": description,
            "operationId": f"{verb}{camel_gv}{ns if not suffix else ''}{kind}{sub.title()}{suffix}",
            "parameters": copy.deepcopy(params),
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": dict(gvk),
        }
        if body is not None:
            o["requestBody"] = body
        return o

    def obj_body(required: bool = True) -> dict[str, Any]:
        return {"content": {"*/*": {"schema": _ref(kind_ref)}}, "required": required}

    patch_body = {"content": {mt: {"schema": _ref(META + "Patch")} for mt in _PATCH_TYPES + ([_SMP] if smp else [])},
                  "required": True}
    delete_body = {"content": {"*/*": {"schema": _ref(META + "DeleteOptions")}}}

    def path_params(named: bool) -> list[dict[str, Any]]:
        p = [copy.deepcopy(name_param)] if named else []
        if rt.namespaced:
            p.append(copy.deepcopy(ns_param))
        p.append(copy.deepcopy(_PRETTY))
        return p

    paths: dict[str, dict[str, Any]] = {}

    if rt.namespaced and "list" in verbs:
        paths[f"{prefix}/{rt.plural}"] = {
            "get": op("list", "list", "", f"list or watch objects of kind {kind}", _LIST_PARAMS,
                      _responses({"200": "OK"}, list_ref, _PRODUCES_LIST), suffix="ForAllNamespaces"),
            "parameters": [copy.deepcopy(_PRETTY)],
        }

    coll: dict[str, Any] = {}
    if "list" in verbs:
        coll["get"] = op("list", "list", "", f"list or watch objects of kind {kind}", _LIST_PARAMS,
                         _responses({"200": "OK"}, list_ref, _PRODUCES_LIST))
    if "create" in verbs:
        coll["post"] = op("create", "post", "", f"create {article} {kind}", _WRITE_PARAMS,
                          _responses({"200": "OK", "201": "Created", "202": "Accepted"}, kind_ref, _PRODUCES),
                          obj_body())
    if "deletecollection" in verbs:
        coll["delete"] = op("delete", "deletecollection", "", f"delete collection of {kind}",
                            _DELETE_PARAMS + _LIST_PARAMS, _responses({"200": "OK"}, status_ref, _PRODUCES),
                            copy.deepcopy(delete_body))
        coll["delete"]["operationId"] = f"delete{camel_gv}Collection{ns}{kind}"
    if coll:
        coll["parameters"] = path_params(False)
        paths[root] = coll

    item: dict[str, Any] = {}
    if "get" in verbs:
        item["get"] = op("read", "get", "", f"read the specified {kind}", [],
                         _responses({"200": "OK"}, kind_ref, _PRODUCES))
    if "update" in verbs:
        item["put"] = op("replace", "put", "", f"replace the specified {kind}", _WRITE_PARAMS,
                         _responses({"200": "OK", "201": "Created"}, kind_ref, _PRODUCES), obj_body())
    if "patch" in verbs:
        item["patch"] = op("patch", "patch", "", f"partially update the specified {kind}", _WRITE_PARAMS + [_FORCE],
                           _responses({"200": "OK", "201": "Created"}, kind_ref, _PRODUCES),
                           copy.deepcopy(patch_body))
    if "delete" in verbs:
        item["delete"] = op("delete", "delete", "", f"delete {article} {kind}", _DELETE_PARAMS,
                            _responses({"200": "OK", "202": "Accepted"}, status_ref, _PRODUCES),
                            copy.deepcopy(delete_body))
    if item:
        item["parameters"] = path_params(True)
        paths[f"{root}/{{name}}"] = item

    if rt.has_status:
        st: dict[str, Any] = {}
        if "get" in verbs:
            st["get"] = op("read", "get", "status", f"read status of the specified {kind}", [],
                           _responses({"200": "OK"}, kind_ref, _PRODUCES))
        if "update" in verbs:
            st["put"] = op("replace", "put", "status", f"replace status of the specified {kind}", _WRITE_PARAMS,
                           _responses({"200": "OK", "201": "Created"}, kind_ref, _PRODUCES), obj_body())
        if "patch" in verbs:
            st["patch"] = op("patch", "patch", "status", f"partially update status of the specified {kind}",
                             _WRITE_PARAMS + [_FORCE],
                             _responses({"200": "OK", "201": "Created"}, kind_ref, _PRODUCES),
                             copy.deepcopy(patch_body))
        if st:
            st["parameters"] = path_params(True)
            paths[f"{root}/{{name}}/status"] = st
    return paths


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def document(group_version_path: str, types: list[ResourceType]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (`api/v1`, `apis/k3c.io/v1alpha1`).

    A leading `/` or `/openapi/v3/` prefix and a `?hash=` query are accepted. Raises KeyError when no type
    of `types` belongs to that group-version (the HTTP layer answers 404).
    """
    gvp = _normalize_gv_path(group_version_path)
    served = [rt for rt in types if gv_path(rt.group, rt.version) == gvp]
    if not served:
        raise KeyError(group_version_path)
    served.sort(key=lambda rt: (rt.plural, rt.kind))

    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in served:
        paths.update(_paths_for(rt))
        schemas[model_name(rt.group, rt.version, rt.kind)] = _kind_schema(rt)
        if "list" in rt.verbs:  # (the reviews are created only: kube has no list kind of them)
            schemas[model_name(rt.group, rt.version, rt.list_kind)] = _list_schema(rt)

    # Add the referenced library schemas (meta/v1, core/v1 helpers), transitively.
    needed: set[str] = set()
    _refs(paths, needed)
    _refs(schemas, needed)
    pending = sorted(needed - schemas.keys())
    while pending:
        name = pending.pop()
        found = None if name in schemas else _library(name)
        if found is None:
            continue
        schemas[name] = copy.deepcopy(found)
        more: set[str] = set()
        _refs(schemas[name], more)
        pending.extend(sorted(more - schemas.keys()))

    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": {k: paths[k] for k in sorted(paths)},
        "components": {
            "schemas": {k: schemas[k] for k in sorted(schemas)},
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                "name": "authorization", "in": "header"},
            },
        },
        "security": [{"BearerToken": []}],
    }


def serialize(doc: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of a document (sorted keys, compact): serve these so the ETag matches the hash."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document_hash(doc: dict[str, Any]) -> str:
    """kube-openapi's ETag: upper-case hex SHA-512 of the serialized document."""
    return hashlib.sha512(serialize(doc)).hexdigest().upper()


def index(types: list[ResourceType]) -> dict[str, Any]:
    """The `/openapi/v3` discovery document: every served group-version with a hash-bearing URL."""
    gvps = sorted({gv_path(rt.group, rt.version) for rt in types})
    paths = {}
    for p in gvps:
        paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={document_hash(document(p, types))}"}
    return {"paths": paths}
