"""Server-side printing: objects as `meta.k8s.io/v1` Table, which is what `kubectl get` renders.

Custom resources get their CRD's `additionalPrinterColumns` (Age alone when none are declared); the
built-ins get the columns kube-apiserver prints for them. Simple `.a.b[0]` paths are evaluated directly
(a 10,000-row table must stay fast); anything richer goes through jsonpath-ng.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from k3c.apiserver.resources import PrinterColumn, ResourceType

NAME_COLUMN = {
    "name": "Name", "type": "string", "format": "name", "priority": 0,
    "description": "Name must be unique within a namespace. It is required when creating resources.",
}
AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                    "CreationTimestamp is a timestamp representing the server time when this object was created.")

BUILTIN_COLUMNS: dict[str, list[PrinterColumn]] = {
    "Namespace": [PrinterColumn("Status", "string", ".status.phase", "The phase of the namespace"), AGE],
    "ConfigMap": [PrinterColumn("Data", "integer", "", "Number of keys"), AGE],
    "Secret": [PrinterColumn("Type", "string", ".type", "The type of the secret"),
               PrinterColumn("Data", "integer", "", "Number of keys"), AGE],
    "CustomResourceDefinition": [PrinterColumn("Created At", "date-iso", ".metadata.creationTimestamp",
                                               "When the CRD was created")],
    "Event": [
        PrinterColumn("Last Seen", "string", "", "Time since the event was last seen"),
        PrinterColumn("Type", "string", ".type", "Type of the event"),
        PrinterColumn("Reason", "string", ".reason", "Why the event was recorded"),
        PrinterColumn("Object", "string", "", "The object the event is about"),
        PrinterColumn("Subobject", "string", ".involvedObject.fieldPath", "Part of the object", priority=1),
        PrinterColumn("Source", "string", "", "Who recorded the event", priority=1),
        PrinterColumn("Message", "string", ".message", "What happened"),
        PrinterColumn("First Seen", "string", "", "Time since the event was first seen", priority=1),
        PrinterColumn("Count", "integer", ".count", "How often it happened", priority=1),
        PrinterColumn("Name", "string", ".metadata.name", "Name of the event", priority=1),
    ],
}

_SIMPLE = re.compile(r"(\.[A-Za-z0-9_-]+|\[\d+\])+")
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


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


def _age(ts: Any) -> str | None:
    if not isinstance(ts, str):
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return human_duration((dt.datetime.now(dt.UTC) - t).total_seconds())


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
    from jsonpath_ng.ext.parser import parse

    expr = parse("$" + path)
    return lambda obj: [m.value for m in expr.find(obj)]


def _typed(value: Any, col: PrinterColumn) -> Any:
    if value is None:
        return None
    if col.type == "date":
        return _age(value)
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


def _builtin_cell(kind: str, col: PrinterColumn, obj: dict[str, Any]) -> Any:
    if col.name == "Data":
        return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    if col.name == "Webhooks":
        return len(obj.get("webhooks") or [])
    if col.type == "date-iso":
        return obj.get("metadata", {}).get("creationTimestamp")
    if kind == "Event":
        if col.name == "Last Seen":
            return _age(obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("metadata", {}).get("creationTimestamp"))
        if col.name == "First Seen":
            return _age(obj.get("firstTimestamp") or obj.get("eventTime"))
        if col.name == "Object":
            io = obj.get("involvedObject") or {}
            return f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"
        if col.name == "Source":
            src = obj.get("source") or {}
            return ", ".join(v for v in (src.get("component"), src.get("host")) if v) or obj.get("reportingComponent", "")
    return None


def cell(rtype: ResourceType, col: PrinterColumn, obj: dict[str, Any]) -> Any:
    if not col.json_path or col.type == "date-iso":
        return _builtin_cell(rtype.kind, col, obj)
    values = compile_path(col.json_path)(obj)
    if not values:
        return None
    if len(values) == 1:
        return _typed(values[0], col)
    return " ".join(str(_typed(v, col)) for v in values)


def columns_for(rtype: ResourceType) -> list[PrinterColumn]:
    if not rtype.group or rtype.kind == "CustomResourceDefinition":
        return BUILTIN_COLUMNS.get(rtype.kind, [AGE])
    return rtype.printer_columns or [AGE]


def _column_def(c: PrinterColumn) -> dict[str, Any]:
    t = "string" if c.type in ("date", "date-iso") else c.type
    return {"name": c.name, "type": t, "format": c.format, "description": c.description, "priority": c.priority}


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
    cols = columns_for(rtype)
    name_first = rtype.kind != "Event"
    defs = ([NAME_COLUMN] if name_first else []) + [_column_def(c) for c in cols]
    rows = []
    for obj in objs:
        cells = [obj.get("metadata", {}).get("name")] if name_first else []
        cells += [cell(rtype, c, obj) for c in cols]
        row: dict[str, Any] = {"cells": cells}
        ro = _row_object(obj, include_object)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
        "columnDefinitions": defs, "rows": rows,
    }
