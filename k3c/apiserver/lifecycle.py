"""What the server does to an object on its way into storage: the "strategy" of kube-apiserver.

Pure functions, no I/O: names and labels validated, server-owned metadata set on create and kept on
update, generation bumped only when the spec changes, status/spec separated by the status subresource,
and the per-kind defaults of the built-ins (Secret stringData, Namespace phase and finalizer; those
served from Kubernetes' schemas get kube's own, from `kubedefaults`).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import uuid
from typing import Any

from k3c.apiserver import kubedefaults, webhookconfig
from k3c.apiserver.errors import Cause
from k3c.apiserver.goformat import quote
from k3c.apiserver.resources import ResourceType
from k3c.timefmt import now_rfc3339

SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")




def validate_name(rtype: ResourceType, name: str, field: str = "metadata.name") -> list[Cause]:
    """Namespaces are DNS labels, Services DNS-1035 labels, RBAC objects path segments (`system:foo` is
    a ClusterRole's name); everything else here is a DNS subdomain."""
    if not name:
        return [Cause(field, "FieldValueRequired", "Required value: name or generateName is required")]
    if rtype.group == "rbac.authorization.k8s.io":
        return _validate_path_segment(name, field)
    if rtype.kind == "Service" and not rtype.group:
        if len(name) > 63:
            return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: must be no more than 63 characters")]
        if not DNS1035.fullmatch(name):
            return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: {DNS1035_MSG}")]
        return []
    if rtype.kind == "Namespace":
        if len(name) > 63:
            return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: must be no more than 63 characters")]
        if not LABEL.fullmatch(name):
            return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: {LABEL_MSG}")]
        return []
    if len(name) > 253:
        return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: must be no more than 253 characters")]
    if not SUBDOMAIN.fullmatch(name):
        return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: {SUBDOMAIN_MSG}")]
    return []


def _validate_path_segment(name: str, field: str) -> list[Cause]:
    if name in (".", ".."):
        return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: may not be '{name}'")]
    for bad in ("/", "%"):
        if bad in name:
            return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(name)}: may not contain '{bad}'")]
    return []


def _validate_qualified(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    bad = not name or len(name) > 63 or not QUALIFIED.fullmatch(name)
    bad = bad or (bool(prefix) and (len(prefix) > 253 or not SUBDOMAIN.fullmatch(prefix)))
    if "/" in key and not prefix:
        bad = True
    if bad:
        return [Cause(field, "FieldValueInvalid", f"Invalid value: {quote(key)}: name part must consist of "
                      "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                      "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                      "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")]
    return []


def validate_metadata(rtype: ResourceType, meta: Any) -> list[Cause]:
    if not isinstance(meta, dict):
        return [Cause("metadata", "FieldValueTypeInvalid", "Invalid value: must be an object")]
    causes: list[Cause] = []
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            causes.append(Cause(f"metadata.{field}", "FieldValueTypeInvalid", "Invalid value: must be a map of strings"))
            continue
        for k, v in value.items():
            causes += _validate_qualified(k, f"metadata.{field}")
            if field == "labels" and (len(v) > 63 or not LABEL_VALUE.fullmatch(v)):
                causes.append(Cause("metadata.labels", "FieldValueInvalid", f"Invalid value: {quote(v)}: a valid "
                                    "label must be an empty string or consist of alphanumeric characters, '-', '_' "
                                    "or '.', and must start and end with an alphanumeric character"))
    fin = meta.get("finalizers")
    if fin is not None and (not isinstance(fin, list) or not all(isinstance(f, str) for f in fin)):
        causes.append(Cause("metadata.finalizers", "FieldValueTypeInvalid", "Invalid value: must be a list of strings"))
    return causes


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(5))


def prepare_create(rtype: ResourceType, obj: dict[str, Any], namespace: str | None) -> None:
    """Set server-owned metadata on a new object (in place)."""
    meta = obj.setdefault("metadata", {})
    for f in SERVER_OWNED + ("resourceVersion", "selfLink"):
        meta.pop(f, None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    if rtype.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    if rtype.tracks_generation:
        meta["generation"] = 1
    if rtype.status_subresource:
        obj.pop("status", None)  # create cannot set status of a resource with a status subresource
    if rtype.kube_schema:
        kubedefaults.prepare_create(rtype.kind, obj)
    _kind_defaults(rtype, obj, None)


def prepare_update(rtype: ResourceType, new: dict[str, Any], old: dict[str, Any], subresource: str) -> None:
    """Carry server-owned fields over from the stored object and separate spec from status (in place)."""
    if subresource == "status":
        status = new.get("status")
        managed = new.get("metadata", {}).get("managedFields")
        keep = copy.deepcopy(old)
        new.clear()
        new.update(keep)
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
        if managed is not None:
            new["metadata"]["managedFields"] = managed
        return
    meta = new.setdefault("metadata", {})
    old_meta = old.get("metadata", {})
    for f in SERVER_OWNED + ("name", "namespace"):
        if f in old_meta:
            meta[f] = old_meta[f]
        else:
            meta.pop(f, None)
    if rtype.status_subresource and "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    elif rtype.status_subresource:
        new.pop("status", None)
    _kind_defaults(rtype, new, old)
    # after the defaults, as kube-apiserver compares: a server-side apply re-sending a list item whole
    # (a container) drops the defaults inside it, which is no change of the spec
    if rtype.tracks_generation and _spec_changed(new, old):
        meta["generation"] = int(old_meta.get("generation", 1)) + 1


def _spec_changed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    def body(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    return body(new) != body(old)


def _kind_defaults(rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    if rtype.kube_schema:
        kubedefaults.apply(rtype.kind, obj)
        return
    if rtype.group:
        return
    if rtype.kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {}) or {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    elif rtype.kind == "Namespace":
        spec = obj.setdefault("spec", {})
        spec.setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        if old is None or not status.get("phase"):
            status["phase"] = (old or {}).get("status", {}).get("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")


def validate_builtin(rtype: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    """The few per-kind rules of the built-ins k3c serves."""
    causes: list[Cause] = []
    if rtype.group == webhookconfig.GROUP:
        return webhookconfig.validate(obj)
    if rtype.group:
        return causes
    if rtype.kind in ("ConfigMap", "Secret"):
        for field in ("data", "binaryData"):
            value = obj.get(field)
            if value is None:
                continue
            if not isinstance(value, dict):
                causes.append(Cause(field, "FieldValueTypeInvalid", "Invalid value: must be a map"))
                continue
            for k, v in value.items():
                if not CONFIG_KEY.fullmatch(k) or len(k) > 253:
                    causes.append(Cause(f"{field}[{k}]", "FieldValueInvalid", f"Invalid value: {quote(k)}: a valid "
                                        "config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                                        "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                                        "'[-._a-zA-Z0-9]+')"))
                if rtype.kind == "Secret" or field == "binaryData":
                    if not _is_b64(v):
                        causes.append(Cause(f"{field}[{k}]", "FieldValueInvalid",
                                            "Invalid value: illegal base64 data"))
                elif not isinstance(v, str):
                    causes.append(Cause(f"{field}[{k}]", "FieldValueTypeInvalid", "Invalid value: must be a string"))
    return causes


def _is_b64(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        base64.b64decode(v, validate=True)
    except ValueError:
        return False
    return True


def finalized(obj: dict[str, Any]) -> bool:
    """A deleting object whose finalizers are all gone is ready to leave storage."""
    meta = obj.get("metadata", {})
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
