"""Defaulting of custom resources from their structural schema, as kube-apiserver does it.

Why two walks: kube-apiserver first drops the `null`s a non-nullable field without a default cannot
hold (PruneNonNullableNullsWithoutDefaults), then applies `default`s to the result; a default value
itself is not cleaned of nulls, only defaulted further.
"""

from __future__ import annotations

import copy
from typing import Any

from .structural import Node, Schema, additional, field_schema, items, properties, walk

__all__ = ["apply_defaults"]


def apply_defaults(obj: dict[str, Any], schema: Schema | None) -> None:
    """Apply `default`s in place, as kube-apiserver does for custom resources.

    First non-nullable `null` values without a default are dropped; then every absent field with a
    `default` (and every non-nullable `null` that has one) gets a deep copy of it, recursively through
    properties, additionalProperties and array items. Defaults are themselves defaulted (nested defaults
    inside a defaulted object apply).
    """
    if schema is None:
        return
    walk(schema, _drop_nulls_without_default, obj)
    walk(schema, _fill_defaults, obj)


def _non_nullable_null(x: Any, s: Schema | None) -> bool:
    return x is None and s is not None and not s.get("nullable")


def _drop_nulls_without_default(node: Node) -> bool:
    x, s = node.value, node.schema
    if s is None:
        return False
    if isinstance(x, dict):
        for k in list(x):
            sub = field_schema(k, s)
            if _non_nullable_null(x[k], sub) and sub is not None and sub.get("default") is None:
                del x[k]
    return True


def _fill_defaults(node: Node) -> bool:
    x, s = node.value, node.schema
    if s is None:
        return False
    if isinstance(x, dict):
        props = properties(s)
        for k, prop in props.items():
            if isinstance(prop, dict) and prop.get("default") is not None and (
                    k not in x or _non_nullable_null(x[k], prop)):
                x[k] = copy.deepcopy(prop["default"])
        ap = additional(s)[1]
        if ap is not None:
            for k in x:
                if k not in props and _non_nullable_null(x[k], ap):
                    x[k] = copy.deepcopy(ap.get("default"))
    elif isinstance(x, list):
        it = items(s)
        if it is None:
            return False
        for i, v in enumerate(x):
            if _non_nullable_null(v, it):
                x[i] = copy.deepcopy(it.get("default"))
    return True
