"""Embedded resources (`x-kubernetes-embedded-resource`) must carry a sound apiVersion and kind.

kube-apiserver's custom resource strategy runs objectmeta.Validate on every embedded object after the
schema: the schema cannot say that `kind` is a DNS-1035 label (in any case) nor that `apiVersion` is a
group/version.
"""

from __future__ import annotations

from typing import Any

from k3c.apiserver.errors import Cause

from .fielderrors import invalid, required
from .names import dns1035_label_errors
from .structural import EMBEDDED, Node

__all__ = ["embedded_type_meta_errors"]


def embedded_type_meta_errors(node: Node, prefix: str) -> list[Cause]:
    """The TypeMeta problems of the object at `node` if its schema makes it an embedded resource."""
    x, s = node.value, node.schema
    if not isinstance(x, dict) or s is None or s.get(EMBEDDED) is not True:
        return []
    path = node.path(prefix, map_keys=True)
    out = [required(_child(path, k)) for k in ("apiVersion", "kind") if k not in x]
    if "apiVersion" in x:
        out += _api_version_errors(x["apiVersion"], _child(path, "apiVersion"))
    if "kind" in x:
        out += _kind_errors(x["kind"], _child(path, "kind"))
    return out


def _api_version_errors(av: Any, fld: str) -> list[Cause]:
    if not isinstance(av, str):
        return [invalid(fld, av, "must be a string")]
    if not av:
        return [invalid(fld, av, "must not be empty")]
    if av.count("/") > 1:
        return [invalid(fld, av, f"unexpected GroupVersion string: {av}")]
    return []


def _kind_errors(kind: Any, fld: str) -> list[Cause]:
    if not isinstance(kind, str):
        return [invalid(fld, kind, "must be a string")]
    if not kind:
        return [invalid(fld, kind, "must not be empty")]
    if errs := dns1035_label_errors(kind.lower()):
        return [invalid(fld, kind, "may have mixed case, but should otherwise match: " + ",".join(errs))]
    return []


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
