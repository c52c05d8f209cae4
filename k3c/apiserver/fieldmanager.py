"""Server-side apply's field management: who owns which field, conflicts, and the apply merge itself.

Why: `kubectl apply --server-side`, kpt and GitOps controllers rely on kube-apiserver's field ownership.
Two appliers that set the same field to different values get a 409 Conflict naming the other manager
(unless they force it); an applier that drops a field from its configuration removes it from the object,
unless someone else still owns it. kube-apiserver does this with structured-merge-diff; this module is
the part of it those tools observe, over the JSON-shaped objects we store:

* a field set is a set of paths of FieldsV1 elements: `f:name` (a field or map key), `k:{"name":"web"}`
  (an item of a list keyed by `x-kubernetes-list-map-keys`), `v:"a"` (an item of a set), and `.` (the
  list item itself). Lists are atomic unless the schema says `x-kubernetes-list-type: map|set`, maps
  are granular unless `x-kubernetes-map-type: atomic`, as in structured-merge-diff;
* `metadata.managedFields` holds one entry per (manager, operation, subresource), in FieldsV1 form;
* an Apply merges its configuration into the live object (maps by key, keyed lists by key, sets as a
  union, anything atomic replaced), checks the fields it sets against those other managers own, and
  takes its fields over; every other write (Update) takes over the fields it changed, without conflicts.

Which schema: custom resources use their CRD's; built-ins Kubernetes' own (`kubeschemas`). The server
owns the identity fields of metadata and the fields a status subresource separates, so those are never
part of a manager's set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import kubeschemas
from .errors import APIError, Cause
from .resources import ResourceType

__all__ = ["Managers", "Manager", "schema_of", "apply", "track", "encode", "decode", "field_set"]

Obj = dict[str, Any]
Path = tuple[str, ...]
Schema = dict[str, Any]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Set by the server, never owned by a manager (structured-merge-diff's StripMeta).
_SERVER_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                          "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"})
# A key field the configuration may leave out because kube defaults it (ports are keyed by it).
_KEY_DEFAULTS = {"protocol": "TCP"}
_MISSING = object()


@dataclass
class Manager:
    """One `managedFields` entry."""

    manager: str
    operation: str  # Apply or Update
    api_version: str
    time: str
    fields: set[Path] = field(default_factory=set)
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        """The manager as kube-apiserver names it in a conflict."""
        out = json.dumps(self.manager)
        if self.subresource:
            out += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            out += f" using {self.api_version}" + (f" at {self.time}" if self.time else "")
        return out


Managers = list[Manager]


# ------------------------------------------------------------------------------------------- schemas


def schema_of(rtype: ResourceType) -> Schema:
    """The structural schema field management follows: the CRD's, or Kubernetes' own for built-ins."""
    from .openapi import model_name

    if rtype.schema is not None:
        root = dict(rtype.schema)
    else:
        name = model_name(rtype.group, rtype.version, rtype.kind)
        root = kubeschemas.structural(name) if kubeschemas.definition(name) is not None else {}
    props = dict(root.get("properties") or {})
    props["metadata"] = kubeschemas.structural(OBJECT_META)
    return {**root, "properties": props}


def _child(s: Schema | None, key: str) -> Schema | None:
    if not isinstance(s, dict):
        return None
    props = s.get("properties")
    if isinstance(props, dict) and isinstance(props.get(key), dict):
        child: Schema = props[key]
        return child
    ap = s.get("additionalProperties")
    return ap if isinstance(ap, dict) else None


def _items(s: Schema | None) -> Schema | None:
    it = s.get("items") if isinstance(s, dict) else None
    return it if isinstance(it, dict) else None


def _list_keys(s: Schema | None) -> list[str] | None:
    """The map keys of a keyed list, [] for a set, None for an atomic list."""
    kind = s.get("x-kubernetes-list-type") if isinstance(s, dict) else None
    if kind == "map":
        keys = s.get("x-kubernetes-list-map-keys") if isinstance(s, dict) else None
        return [str(k) for k in keys] if isinstance(keys, list) and keys else None
    return [] if kind == "set" else None


def _atomic_map(s: Schema | None) -> bool:
    return isinstance(s, dict) and s.get("x-kubernetes-map-type") == "atomic"


def _key_of(item: Any, keys: list[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    out = {k: item[k] for k in keys if k in item}
    for k in keys:
        if k not in out and k in _KEY_DEFAULTS:
            out[k] = _KEY_DEFAULTS[k]
    return out


def _key_pe(item: Any, keys: list[str]) -> str | None:
    key = _key_of(item, keys)
    return None if key is None else "k:" + json.dumps(key, sort_keys=True, separators=(",", ":"))


def _value_pe(item: Any) -> str:
    return "v:" + json.dumps(item, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------- field sets


def field_set(obj: Obj, schema: Schema, scope: str) -> set[Path]:
    """The paths of the fields `obj` sets: all but server metadata (`scope` "" = all but a separate
    status; "status" = the status alone; "all" = everything)."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if scope != "all" and (scope == "status") != (key == "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _SERVER_META}
            if not value:
                continue
        _fields(value, _child(schema, key), (f"f:{key}",), out)
    return out


def _fields(value: Any, s: Schema | None, prefix: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value and not _atomic_map(s):
        for k, v in value.items():
            _fields(v, _child(s, k), (*prefix, f"f:{k}"), out)
        return
    keys = _list_keys(s) if isinstance(value, list) else None
    if keys is None:
        out.add(prefix)
        return
    for item in value:
        if not keys:
            out.add((*prefix, _value_pe(item)))
            continue
        pe = _key_pe(item, keys)
        if pe is None:
            out.add(prefix)
            return
        out.add((*prefix, pe, "."))
        for k, v in item.items():
            _fields(v, _child(_items(s), k), (*prefix, pe, f"f:{k}"), out)


def _matches(item: Any, key: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k, _KEY_DEFAULTS.get(k)) == v for k, v in key.items())


def _find(items: list[Any], pe: str) -> int:
    """The index of the list item a `k:` or `v:` element names, -1 if absent."""
    wanted = json.loads(pe[2:])
    for i, item in enumerate(items):
        if (pe.startswith("k:") and isinstance(wanted, dict) and _matches(item, wanted)) or \
                (pe.startswith("v:") and item == wanted):
            return i
    return -1


_PRESENT = object()  # the value of a `.` path: the list item is there (its fields are paths of their own)


def _value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for pe in path:
        if pe == ".":
            return _PRESENT
        if pe.startswith("f:"):
            if not isinstance(cur, dict) or pe[2:] not in cur:
                return _MISSING
            cur = cur[pe[2:]]
        elif isinstance(cur, list):
            i = _find(cur, pe)
            if i < 0:
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


def _remove_at(obj: Any, path: Path) -> None:
    """Remove the field or list item a path names (nothing when it is not there)."""
    *head, last = path
    if last == ".":
        *head, last = head
    parent = obj
    for pe in head:
        parent = _value_at(parent, (pe,))
        if parent is _MISSING:
            return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        i = _find(parent, last)
        if i >= 0:
            del parent[i]


def render(path: Path) -> str:
    """A path as structured-merge-diff prints it: `.spec.containers[name="web"].image`."""
    out = ""
    for pe in path:
        if pe.startswith("f:"):
            out += "." + pe[2:]
        elif pe.startswith("k:"):
            key = json.loads(pe[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
        elif pe.startswith("v:"):
            out += f"[={pe[2:]}]"
    return out


# --------------------------------------------------------------------------------------- FieldsV1 form


def _trie(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for pe in path:
            node = node.setdefault(pe, {})
    return root


def _paths(trie: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(trie, dict):
        return out
    for pe, sub in trie.items():
        path = (*prefix, pe)
        if pe == "." or not sub:
            out.add(path)
        else:
            out |= _paths(sub, path)
    return out


def encode(managers: Managers) -> list[Obj]:
    out = []
    for m in managers:
        entry: Obj = {"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version, "time": m.time,
                      "fieldsType": "FieldsV1", "fieldsV1": _trie(m.fields)}
        if m.subresource:
            entry["subresource"] = m.subresource
        out.append(entry)
    return out


def decode(entries: Any) -> Managers:
    out: Managers = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("manager"), str):
            out.append(Manager(e["manager"], str(e.get("operation", "Update")), str(e.get("apiVersion", "")),
                               str(e.get("time", "")), _paths(e.get("fieldsV1")), str(e.get("subresource", ""))))
    return out


# ----------------------------------------------------------------------------------------------- merge


def _merge(live: Any, config: Any, s: Schema | None) -> Any:
    """The configuration over the live value: maps by key, keyed lists by key, sets by value."""
    if isinstance(live, dict) and isinstance(config, dict) and not _atomic_map(s):
        out = dict(live)
        for k, v in config.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(live.get(k, _MISSING), v, _child(s, k))
        return out
    keys = _list_keys(s)
    if isinstance(live, list) and isinstance(config, list) and keys is not None:
        merged = list(live)
        for item in config:
            pe = _value_pe(item) if not keys else _key_pe(item, keys)
            i = _find(merged, pe) if pe is not None else -1
            if i < 0:
                merged.append(item)
            elif keys:
                merged[i] = _merge(merged[i], item, _items(s))
        return merged
    return config


# ------------------------------------------------------------------------------------------ operations


def _conflict_error(conflicts: list[tuple[Manager, Path]]) -> APIError:
    causes = [Cause(render(p), "FieldManagerConflict", f"conflict with {m.describe()}") for m, p in conflicts]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {render(p)}"
    else:
        lines: list[str] = []
        for who in sorted({m.describe() for m, _ in conflicts}):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {render(p)}" for m, p in conflicts if m.describe() == who]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, {"causes": [c.to_dict() for c in causes]})


def apply(
    rtype: ResourceType, live: Obj, config: Obj, manager: str, *, force: bool, subresource: str, now: str,
) -> tuple[Obj, Managers]:
    """Merge an apply configuration into the live object: (the new object, the new managedFields).

    Raises the 409 Conflict kube-apiserver answers when the configuration changes fields that other
    managers own, unless `force`, which takes them over.
    """
    if isinstance(config.get("metadata"), dict) and config["metadata"].get("managedFields") is not None:
        raise APIError(400, "BadRequest", "metadata.managedFields must be nil")
    schema = schema_of(rtype)
    scope = "status" if subresource == "status" else ("" if rtype.status_subresource else "all")
    merged = _merge(live, config, schema)
    applied = field_set(config, schema, scope)
    managers = decode(live.get("metadata", {}).get("managedFields"))
    me = next((m for m in managers if m.identity == (manager, "Apply", subresource)), None)
    others = [m for m in managers if m.manager != manager]
    conflicts = [(m, p) for m in others for p in sorted(applied & m.fields)
                 if _value_at(live, p) != _value_at(merged, p)]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for m, p in conflicts:
        m.fields.discard(p)
    released = (me.fields if me else set()) - applied
    owned_elsewhere = set().union(*(m.fields for m in managers if m is not me))
    for p in sorted(released - owned_elsewhere, key=len, reverse=True):
        _remove_at(merged, p)
    if me is None:
        me = Manager(manager, "Apply", rtype.api_version, now, set(), subresource)
        managers.append(me)
    elif me.fields != applied:
        me.time = now
    me.fields = applied
    me.api_version = rtype.api_version
    return merged, [m for m in managers if m.fields]


def track(
    rtype: ResourceType, old: Obj | None, new: Obj, manager: str, *, subresource: str, now: str,
) -> list[Obj]:
    """The managedFields of an Update (create, replace, non-apply patch): the writer owns what it changed.

    The request's own `metadata.managedFields` replace the stored ones when it carries them (that is how
    kubectl moves client-side apply ownership to server-side apply).
    """
    schema = schema_of(rtype)
    scope = "status" if subresource == "status" else ("" if rtype.status_subresource else "all")
    sent = new.get("metadata", {}).get("managedFields")
    base = old.get("metadata", {}).get("managedFields") if old is not None else None
    managers = decode(sent if isinstance(sent, list) and sent != base else base)
    before = field_set(old, schema, scope) if old is not None else set()
    after = field_set(new, schema, scope)
    changed = {p for p in after if old is None or _value_at(old, p) != _value_at(new, p)}
    removed = before - after
    for m in managers:
        m.fields -= changed | removed
    if changed and manager:
        me = next((m for m in managers if m.identity == (manager, "Update", subresource)), None)
        if me is None:
            me = Manager(manager, "Update", rtype.api_version, now, set(), subresource)
            managers.append(me)
        me.fields |= changed
        me.time, me.api_version = now, rtype.api_version
    return encode([m for m in managers if m.fields])
