"""Structural pruning of custom resources: fields the schema does not specify are dropped.

kube-apiserver prunes every custom resource it stores (apiextensions-apiserver's pruning), so a field
a client sends that the CRD does not know never reaches storage; `fieldValidation=Strict|Warn` reports
the pruned paths (`unknown field "spec.foo"`). ObjectMeta is pruned apart: `metadata` of the root and of
embedded resources keeps only ObjectMeta's fields, as its JSON round trip through metav1.ObjectMeta does.
"""

from __future__ import annotations

from typing import Any

from .structural import EMBEDDED, PRESERVE_UNKNOWN, Node, Schema, Via, additional, properties, walk

__all__ = ["prune"]

_META_FIELDS = ("apiVersion", "kind", "metadata")

# metav1.ObjectMeta and the structs nested in it: the fields a JSON round trip keeps.
_OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})
_OWNER_REFERENCE_FIELDS = frozenset({"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"})
_MANAGED_FIELDS_FIELDS = frozenset({"manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1",
                                    "subresource"})
_NESTED_META_FIELDS = {"ownerReferences": _OWNER_REFERENCE_FIELDS, "managedFields": _MANAGED_FIELDS_FIELDS}


def prune(obj: dict[str, Any], schema: Schema | None, *, is_root: bool = True) -> list[str]:
    """Remove, in place, the fields of `obj` that `schema` does not specify; return their paths, sorted.

    Follows kube-apiserver's structural pruning: `properties`, `additionalProperties` (maps), `items`;
    subtrees under `x-kubernetes-preserve-unknown-fields: true` are kept (known properties inside them
    are still pruned). At the root (`is_root`) and in `x-kubernetes-embedded-resource` objects,
    `apiVersion`, `kind` and `metadata` are kept, and `metadata` is reduced to ObjectMeta fields
    (reported as `metadata.foo`). A `None` schema means "no schema": nothing is pruned.
    """
    if schema is None or not isinstance(obj, dict):
        return []
    s = schema
    if is_root and not s.get(EMBEDDED):
        s = {**s, EMBEDDED: True}
    out: list[str] = []
    walk(s, lambda node: _prune_node(node, out), obj)
    walk(s, lambda node: _coerce_object_meta(node, out), obj)
    out.sort()
    return out


def _prune_node(node: Node, out: list[str]) -> bool:
    """Drop the unknown keys of one object (not under preserve-unknown-fields); say whether to go on."""
    if _is_type_meta_of_embedded(node):
        return False
    x, s = node.value, node.schema
    keep_unknown = _preserves_unknown(node)
    if s is None and keep_unknown:
        return False
    if isinstance(x, dict):
        props = properties(s)
        has_ap = additional(s)[0]
        embedded = s is not None and s.get(EMBEDDED) is True
        for k in list(x):
            if k in props or has_ap or (embedded and k in _META_FIELDS) or keep_unknown:
                continue
            if k not in _META_FIELDS or node.parent is not None:
                out.append(_join(node.path(), k))
            del x[k]
    elif isinstance(x, list) and s is not None and isinstance(s.get("items"), list):
        return False  # tuple-typed items are not structural; keep the data rather than dropping it
    return True


def _is_type_meta_of_embedded(node: Node) -> bool:
    """apiVersion, kind and metadata of an embedded resource are not pruned by its schema."""
    parent = node.parent
    return (parent is not None and node.via is not Via.ITEM and parent.schema is not None
            and parent.schema.get(EMBEDDED) is True and node.key in _META_FIELDS)


def _preserves_unknown(node: Node) -> bool:
    """Under `x-kubernetes-preserve-unknown-fields`, which reaches through list items to their objects."""
    if node.schema is not None and node.schema.get(PRESERVE_UNKNOWN) is True:
        return True
    return node.via is Via.ITEM and node.parent is not None and _preserves_unknown(node.parent)


def _coerce_object_meta(node: Node, out: list[str]) -> bool:
    """Reduce `metadata` of embedded resources (and the root) to ObjectMeta fields."""
    x, s = node.value, node.schema
    if s is None:
        return False
    if isinstance(x, dict) and s.get(EMBEDDED) is True and isinstance(x.get("metadata"), dict):
        _prune_object_meta(x["metadata"], _join(node.path(), "metadata"), out)
    return True


def _prune_object_meta(meta: dict[str, Any], path: str, out: list[str]) -> None:
    for k in list(meta):
        if k not in _OBJECT_META_FIELDS:
            out.append(_join(path, k))
            del meta[k]
        elif meta[k] is None:
            del meta[k]  # e.g. `creationTimestamp: null`, dropped by the ObjectMeta round trip
    for key, known in _NESTED_META_FIELDS.items():
        entries = meta.get(key)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            for k in list(entry):
                if k not in known:
                    out.append(f"{path}.{key}[{i}].{k}")
                    del entry[k]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
