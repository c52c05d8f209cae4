"""Server-side printing: objects as `meta.k8s.io/v1` Table, which is what `kubectl get` renders.

Custom resources get their CRD's `additionalPrinterColumns` (Age alone when none are declared); the
built-ins get the columns kube-apiserver prints for them (`printers`). Simple `.a.b[0]` paths are
evaluated directly (a 10,000-row table must stay fast); anything richer goes through jsonpath-ng.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from typing import Any

from k3c.apiserver import printers
from k3c.apiserver.resources import PrinterColumn, ResourceType

NAME_COLUMN = {
    "name": "Name", "type": "string", "format": "name", "priority": 0,
    "description": "Name must be unique within a namespace. It is required when creating resources.",
}
AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                    "CreationTimestamp is a timestamp representing the server time when this object was created.")

_SIMPLE = re.compile(r"(\.[A-Za-z0-9_-]+|\[\d+\])+")
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


@lru_cache(maxsize=256)
def compile_path(path: str) -> Callable[[Any], list[Any]]:
    """A function returning every value at a CRD column's JSONPath."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if _SIMPLE.fullmatch(path):
        steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]

        def simple(obj: Any) -> list[Any]:
            cur = obj
            for key, idx in steps:
                if key is not None:
                    if not isinstance(cur, dict) or key not in cur:
                        return []
                    cur = cur[key]
                else:
                    i = int(idx)
                    if not isinstance(cur, list) or i >= len(cur):
                        return []
                    cur = cur[i]
            return [cur]

        return simple
    if "=~" in path:
        # jsonpath-ng would run the CRD author's regex with Python's backtracking `re`, on every row of
        # every table; Kubernetes' JSONPath has no regex filter at all, so neither has this
        return lambda obj: []
    from jsonpath_ng.ext.parser import parse

    expr = parse("$" + path)
    return lambda obj: [m.value for m in expr.find(obj)]


def _typed(value: Any, col: PrinterColumn) -> Any:
    if value is None:
        return None
    if col.type == "date":
        return printers.age(value)
    if col.type == "integer":
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if col.type == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if col.type == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)


def cell(col: PrinterColumn, obj: dict[str, Any]) -> Any:
    """A custom resource's cell: the value at the column's JSONPath, typed as the column says."""
    values = compile_path(col.json_path)(obj)
    if not values:
        return None
    if len(values) == 1:
        return _typed(values[0], col)
    return " ".join(str(_typed(v, col)) for v in values)


def _column_def(c: PrinterColumn | printers.Column) -> dict[str, Any]:
    t = "string" if c.type == "date" and isinstance(c, PrinterColumn) else c.type
    return {"name": c.name, "type": t, "format": c.format, "description": c.description, "priority": c.priority}


def _columns(rtype: ResourceType) -> tuple[list[dict[str, Any]], list[Callable[[dict[str, Any]], Any]]]:
    """(definitions, cell functions): kube's printer of a built-in, else the CRD's columns after Name."""
    builtin = printers.columns(rtype.group, rtype.kind)
    if builtin is not None and not rtype.printer_columns:
        return [_column_def(c) for c in builtin], [c.value for c in builtin]
    cols = rtype.printer_columns or [AGE]
    defs = [NAME_COLUMN] + [_column_def(c) for c in cols]
    cells: list[Callable[[dict[str, Any]], Any]] = [lambda o: o.get("metadata", {}).get("name")]
    cells += [partial(cell, c) for c in cols]
    return defs, cells


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    rtype: ResourceType, objs: Iterable[dict[str, Any]], *, include_object: str = "Metadata",
    list_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    defs, cells = _columns(rtype)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": [f(obj) for f in cells]}
        ro = _row_object(obj, include_object)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
        "columnDefinitions": defs, "rows": rows,
    }
