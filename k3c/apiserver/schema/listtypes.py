"""Lists typed `x-kubernetes-list-type: set|map` must not repeat items, or keys (listtype validation).

Why not `uniqueItems`: CRDs may not use it (quadratic), and a map list compares only the
`x-kubernetes-list-map-keys` of its items; kube-apiserver checks both after the schema.
"""

from __future__ import annotations

import json
from typing import Any

from k3c.apiserver.errors import Cause

from .fielderrors import duplicate, invalid
from .structural import Node, Schema

__all__ = ["list_type_errors"]


def list_type_errors(node: Node, prefix: str) -> list[Cause]:
    """listtype.ValidateListSetsAndMaps for the list at `node`: its repeated items or keys."""
    x, s = node.value, node.schema
    if not isinstance(x, list) or s is None:
        return []
    lt = s.get("x-kubernetes-list-type")
    path = node.path(prefix, map_keys=True)
    if lt == "set":
        return [duplicate(f"{path}[{i}]", x[i]) for i in _non_unique(x)]
    if lt == "map":
        return _list_map_errors(x, s, path)
    return []


class _Unspecified:
    """The key of a map-list item that lacks its single key field (unlike any value, equal to itself)."""


def _canon(v: Any) -> str:
    if isinstance(v, _Unspecified):
        return "\x00unspecified"
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _non_unique(values: list[Any]) -> list[int]:
    """Indices of the second appearance of each repeated value."""
    seen: dict[str, int] = {}
    out = []
    for i, v in enumerate(values):
        k = _canon(v)
        n = seen.get(k, 0)
        if n == 1:
            out.append(i)
        seen[k] = n + 1
    return out


def _list_map_errors(x: list[Any], s: Schema, path: str) -> list[Cause]:
    for i, item in enumerate(x):
        if item is not None and not isinstance(item, dict):
            return [invalid(f"{path}[{i}]", item, "must be an object for an array of list-type map")]
    keys_fields = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
    if len(x) <= 1 or not keys_fields:
        return []
    keys = [_map_key(item, keys_fields) for item in x]
    return [duplicate(f"{path}[{i}]", _shown_key(keys[i], keys_fields)) for i in _non_unique(keys)]


def _map_key(item: Any, keys_fields: list[str]) -> Any:
    if len(keys_fields) == 1:
        f = keys_fields[0]
        return item[f] if isinstance(item, dict) and f in item else _Unspecified()
    return {f: item[f] for f in keys_fields if isinstance(item, dict) and f in item}


def _shown_key(key: Any, keys_fields: list[str]) -> Any:
    if len(keys_fields) > 1:
        return key
    return {} if isinstance(key, _Unspecified) else {keys_fields[0]: key}
