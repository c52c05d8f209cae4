"""Request bodies checked against the Go structs kube-apiserver decodes them into.

kube-apiserver unmarshals every body into typed structs: `ObjectMeta` for the metadata of any kind (custom
resources included), `DeleteOptions` for a delete's body, the built-in kinds' own fields. A value of the
wrong JSON type there is a 400 before anything else looks at the object, worded by encoding/json
(``json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string``). k3c keeps
bodies as plain JSON, so it checks those types here, up front: the rest of the server may then rely on
them instead of failing on a number where a map belongs.

Only the containers and scalars the server itself reads are listed; values inside them (label values,
data entries) are validated later with kube's 422 field errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DELETE_OPTIONS", "OBJECT_META", "Struct", "kind_struct", "unmarshal_error"]


@dataclass(frozen=True)
class Field:
    """One struct field: the JSON type it needs and the Go type named in the message."""

    json_type: type
    go_type: str
    struct: Struct | None = None  # a nested struct whose fields are checked too


@dataclass(frozen=True)
class Struct:
    name: str  # as encoding/json names it: the Go type without its package (ObjectMeta)
    fields: dict[str, Field]


STRING, INT64, BOOL = Field(str, "string"), Field(int, "int64"), Field(bool, "bool")
STRING_MAP = Field(dict, "map[string]string")

OBJECT_META = Struct("ObjectMeta", {
    "name": STRING, "generateName": STRING, "namespace": STRING, "selfLink": STRING,
    "uid": Field(str, "types.UID"), "resourceVersion": STRING, "generation": INT64,
    "creationTimestamp": Field(str, "v1.Time"), "deletionTimestamp": Field(str, "v1.Time"),
    "deletionGracePeriodSeconds": INT64, "labels": STRING_MAP, "annotations": STRING_MAP,
    "finalizers": Field(list, "[]string"), "ownerReferences": Field(list, "[]v1.OwnerReference"),
    "managedFields": Field(list, "[]v1.ManagedFieldsEntry"),
})

PRECONDITIONS = Struct("Preconditions", {"uid": Field(str, "types.UID"), "resourceVersion": STRING})
DELETE_OPTIONS = Struct("DeleteOptions", {
    "kind": STRING, "apiVersion": STRING, "gracePeriodSeconds": INT64,
    "preconditions": Field(dict, "v1.Preconditions", PRECONDITIONS), "orphanDependents": BOOL,
    "propagationPolicy": Field(str, "v1.DeletionPropagation"), "dryRun": Field(list, "[]string"),
})

_META = Field(dict, "v1.ObjectMeta", OBJECT_META)
_TYPE_META = {"kind": STRING, "apiVersion": STRING, "metadata": _META}
_BUILTINS = {
    "ConfigMap": {"data": STRING_MAP, "binaryData": Field(dict, "map[string][]uint8"), "immutable": BOOL},
    "Secret": {"data": Field(dict, "map[string][]uint8"), "stringData": STRING_MAP,
               "type": Field(str, "v1.SecretType"), "immutable": BOOL},
    "Namespace": {"spec": Field(dict, "v1.NamespaceSpec", Struct("NamespaceSpec", {
        "finalizers": Field(list, "[]v1.FinalizerName")})),
        "status": Field(dict, "v1.NamespaceStatus", Struct("NamespaceStatus", {
            "phase": Field(str, "v1.NamespacePhase"), "conditions": Field(list, "[]v1.NamespaceCondition")}))},
    "Event": {"involvedObject": Field(dict, "v1.ObjectReference"), "reason": STRING, "message": STRING,
              "source": Field(dict, "v1.EventSource"), "count": Field(int, "int32"), "type": STRING,
              "firstTimestamp": Field(str, "v1.Time"), "lastTimestamp": Field(str, "v1.Time"),
              "eventTime": Field(str, "v1.MicroTime"), "series": Field(dict, "*v1.EventSeries"),
              "action": STRING, "reportingComponent": STRING, "reportingInstance": STRING},
}


def kind_struct(kind: str, builtin: bool) -> Struct:
    """The struct a body of ``kind`` decodes into: TypeMeta and ObjectMeta, plus a built-in's own fields.

    A custom resource is unstructured apart from its metadata (its schema is checked later, with 422s).
    """
    fields = dict(_TYPE_META)
    if builtin:
        fields.update(_BUILTINS.get(kind, {}))
    return Struct(kind, fields)


def _json_type(value: Any) -> str:
    """encoding/json's name for a JSON value's type, as its UnmarshalTypeError says it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _matches(value: Any, want: type) -> bool:
    if value is None:
        return True  # null decodes into the zero value of any Go type
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if want is bool:
        return isinstance(value, bool)
    return isinstance(value, want)


def unmarshal_error(struct: Struct, doc: Any, prefix: str = "") -> str | None:
    """encoding/json's error for the first field of ``doc`` whose type does not fit ``struct``, or None.

    Go names the innermost struct and the field's whole path: ``ObjectMeta.metadata.name``.
    """
    if not isinstance(doc, dict):
        return f"json: cannot unmarshal {_json_type(doc)} into Go value of type {struct.name}"
    for name, field in struct.fields.items():
        value = doc.get(name)
        path = f"{prefix}{name}"
        if not _matches(value, field.json_type):
            return (f"json: cannot unmarshal {_json_type(value)} into Go struct field {struct.name}.{path} "
                    f"of type {field.go_type}")
        if field.struct is not None and isinstance(value, dict):
            inner = unmarshal_error(field.struct, value, f"{path}.")
            if inner is not None:
                return inner
    return None
