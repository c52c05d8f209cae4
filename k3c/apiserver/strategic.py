"""Strategic merge patch and JSON merge patch, applied the way kube-apiserver applies them.

Why this exists: `kubectl apply`, `kubectl label`, client-go and kopf send
`application/strategic-merge-patch+json` to built-in kinds (Namespace, ConfigMap, Secret, Event), and the
result must be exactly what a real cluster stores, list order included. kube-apiserver gets the patch
rules from Go struct tags (`patchStrategy`, `patchMergeKey`); we have no Go types, so the caller passes
`merge_keys`: dotted field path of a list (items of a list add no path segment) -> merge key, where ""
means "list of scalars merged as a set". Lists without an entry are replaced wholesale, like Go fields
without a patch strategy.

The algorithm follows k8s.io/apimachinery/pkg/util/strategicpatch (server side: parallel lists merged,
unmatched nulls ignored): `null` deletes a key; maps merge recursively; `$patch: replace|delete` in maps
and in merge-list items; `$retainKeys`; `$setElementOrder/<field>` (ordering honoured, including the
upstream interleaving of server-only items); `$deleteFromPrimitiveList/<field>`. Quirks kept on purpose
because clients observe them:

* a merge list patched with `[]` is left unchanged (use null or `$patch: replace` to clear it);
* items new to a merge list come *before* server-only items unless `$setElementOrder` says otherwise;
* a map carrying `$patch` for a key absent from the original is dropped (not added).

Where Go would keep stray nulls or directive keys in the merged map and then lose them when decoding into
the typed object, we drop them here, since our store is untyped. Keys starting with `$` that are not a
known directive raise `ValueError` (kube would silently drop them as unknown fields).

`merge_patch` is RFC 7386 JSON merge patch (`application/merge-patch+json`), small enough to own.
"""

from __future__ import annotations

import copy
from typing import Any

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER_PREFIX = "$setElementOrder"
DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList"

_BAD_PRIMITIVE = "invalid patch format of primitive list"
_BAD_RETAIN = "invalid patch format of retainKeys"
_BAD_ORDER = "invalid patch format of setElementOrder list"

_DROP = object()  # sentinel: "remove this key / item"

Obj = dict[str, Any]  # a JSON object, as decoded
Items = list[Any]  # a JSON array


# ---------------------------------------------------------------------------------------------- public API


def strategic_merge(original: Obj, patch: Obj, merge_keys: dict[str, str]) -> Obj:
    """Apply a strategic merge patch to `original`, returning a new dict (inputs are not modified).

    Raises ValueError for malformed patches (wording follows apimachinery's errors).
    """
    if not isinstance(original, dict) or not isinstance(patch, dict):
        raise ValueError("strategic merge patch: original and patch must be JSON objects")
    return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), "", merge_keys)


def merge_patch(original: Obj, patch: Obj) -> Obj:
    """RFC 7386 JSON merge patch: objects merge recursively, null removes, everything else replaces."""
    if not isinstance(patch, dict):
        raise ValueError("json merge patch: the patch must be a JSON object")
    result = _rfc7386(copy.deepcopy(original), patch)
    assert isinstance(result, dict)
    return result


def _rfc7386(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _rfc7386(target.get(key), value)
    return target


# ------------------------------------------------------------------------------------ JSON type helpers


def _kind(v: Any) -> str:
    """The Go dynamic type a JSON value decodes to (bool is not a number, int and float are one)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "slice"
    raise ValueError(f"strategic merge patch: unsupported value type {type(v).__name__}")


_GO_TYPE = {
    "nil": "<nil>",
    "bool": "bool",
    "number": "float64",
    "string": "string",
    "map": "map[string]interface {}",
    "slice": "[]interface {}",
}


def _same(a: Any, b: Any) -> bool:
    """Go interface equality for JSON values: same dynamic type and equal value (deep for containers)."""
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "map":
        return bool(a.keys() == b.keys()) and all(_same(a[k], b[k]) for k in a)
    if ka == "slice":
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _go(v: Any) -> str:
    """Render a value roughly as Go's %v does, for error messages."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    return str(v)


def _bad_arg(expected: str, actual: Any) -> ValueError:
    return ValueError(f"expected a {_GO_TYPE[expected]}, but received a {_GO_TYPE[_kind(actual)]}")


def _no_merge_key(m: Obj, key: str) -> ValueError:
    return ValueError(f"map: {_go(m)} does not contain declared merge key: {key}")


def _bad_patch_type(t: Any, m: Obj) -> ValueError:
    return ValueError(f"unknown patch type: {_go(t)} in map: {_go(m)}")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -------------------------------------------------------------------------------------- directive keys


def _directive_field(key: str) -> tuple[str, str] | None:
    """For `$setElementOrder/x` or `$deleteFromPrimitiveList/x` return (prefix, "x"); None otherwise."""
    for prefix, err in ((SET_ORDER_PREFIX, _BAD_ORDER), (DELETE_PRIMITIVE_PREFIX, _BAD_PRIMITIVE)):
        if key.startswith(prefix):
            head, sep, field = key.partition("/")
            if head != prefix or not sep:
                raise ValueError(err)
            return prefix, field
    return None


def _check_keys(patch: Obj) -> None:
    """Reject `$`-keys that are not strategic merge directives."""
    for key in patch:
        if not isinstance(key, str) or not key.startswith("$"):
            continue
        if key in (DIRECTIVE, RETAIN_KEYS) or _directive_field(key) is not None:
            continue
        raise ValueError(
            f"unknown strategic merge patch directive {key!r}: expected $patch, $retainKeys, "
            f"$setElementOrder/<field> or $deleteFromPrimitiveList/<field>"
        )


def _clean(value: Any) -> Any:
    """Patch content that lands as-is: drop nulls in maps, maps carrying `$patch`, and directive keys.

    This is apimachinery's discardNullValuesFromPatch + removeDirectives, plus the typed decode that
    drops leftover directive keys. Returns _DROP when the value itself must not be kept.
    """
    if isinstance(value, dict):
        _check_keys(value)
        if value.get(DIRECTIVE) is not None:
            return _DROP
        out = {}
        for k, v in value.items():
            if v is None or k in (DIRECTIVE, RETAIN_KEYS) or _directive_field(k) is not None:
                continue
            cleaned = _clean(v)
            if cleaned is not _DROP:
                out[k] = cleaned
        return out
    if isinstance(value, list):
        return [c for c in (_clean(v) for v in value) if c is not _DROP]
    return value


def _put(target: Obj, key: str, value: Any) -> None:
    cleaned = _clean(value)
    if cleaned is _DROP:
        target.pop(key, None)
    else:
        target[key] = cleaned


# --------------------------------------------------------------------------------------------------- maps


def _merge_map(original: Obj, patch: Obj, path: str, merge_keys: dict[str, str]) -> Obj:
    if DIRECTIVE in patch:
        return _map_directive(patch)
    _check_keys(patch)
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, path, merge_keys)
    # Go visits keys in random order; we do plain fields first, then the deletion lists.
    deletes = {k: d[1] for k in patch if (d := _directive_field(k)) is not None}
    for key in [k for k in patch if k not in deletes]:
        _merge_field(original, key, patch[key], path, merge_keys, is_delete=False)
    for key, field in deletes.items():
        _merge_field(original, field, patch[key], path, merge_keys, is_delete=True)
    return original


def _map_directive(patch: Obj) -> Obj:
    directive = patch[DIRECTIVE]
    if directive == "replace":
        rest: Obj = _clean({k: v for k, v in patch.items() if k != DIRECTIVE})  # no $patch left: not dropped
        return rest
    if directive == "delete":
        return {}
    raise _bad_patch_type(directive, patch)


def _merge_field(
    original: Obj, key: str, patch_v: Any, path: str, merge_keys: dict[str, str], is_delete: bool
) -> None:
    if patch_v is None:
        original.pop(key, None)
        return
    if key not in original or _kind(original[key]) != _kind(patch_v):
        if not is_delete:
            _put(original, key, patch_v)
        return
    current, child = original[key], _child(path, key)
    if isinstance(current, dict):
        original[key] = _merge_map(current, patch_v, child, merge_keys)
    elif isinstance(current, list):
        original[key] = _merge_list_field(current, patch_v, child, merge_keys, is_delete)
    else:
        original[key] = patch_v


def _apply_retain_keys(original: Obj, patch: Obj) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise ValueError(_BAD_RETAIN)
    keep = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or _directive_field(key) is not None:
            continue
        if key not in keep:
            raise ValueError(_BAD_RETAIN)
    for key in [k for k in original if k not in keep]:
        del original[key]


# -------------------------------------------------------------------------------------------------- lists


def _merge_list_field(
    original: Items, patch: Items, path: str, merge_keys: dict[str, str], is_delete: bool
) -> Items:
    merge_key = merge_keys.get(path)
    if merge_key is None and not is_delete:
        replaced: Items = _clean(patch)  # no patch strategy: the patch list replaces
        return replaced
    return _merge_list(original, patch, path, merge_key or "", merge_keys, is_delete)


def _merge_list(
    original: Items, patch: Items, path: str, merge_key: str, merge_keys: dict[str, str], is_delete: bool
) -> Items:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise ValueError(f"cannot merge lists without merge key for {path}")
        original, patch = _special_items(original, patch, merge_key)
        merged = _merge_items(original, patch, path, merge_key, merge_keys)
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_order(patch_items, server_only, patch, original, merge_key, kind)


def _element_kind(*lists: Items) -> str:
    kind = None
    for items in lists:
        for v in items:
            k = _kind(v)
            if kind is None:
                if k == "slice":
                    raise ValueError("lists of lists are not supported")
                if k == "nil":
                    raise ValueError("list elements must not be null in a merging list")
                kind = k
            elif k != kind:
                raise ValueError(f"list element types are not identical: {_go(list(lists))}")
    if kind is None:
        raise ValueError("no elements in any of the given slices")
    return kind


def _dedupe(items: Items) -> Items:
    out: Items = []
    for v in items:
        if not any(_same(v, seen) for seen in out):
            out.append(v)
    return out


def _special_items(original: Items, patch: Items, merge_key: str) -> tuple[Items, Items]:
    """Apply `$patch: delete|replace` items; return (original, patch without directive items)."""
    plain: Items = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if not _key_matches(o, merge_key, item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise ValueError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        return [_clean(p) for p in plain], []
    return original, plain


def _key_matches(item: Any, merge_key: str, value: Any) -> bool:
    if not isinstance(item, dict):
        raise ValueError("value in a merging list is not a map")
    return merge_key in item and _same(item[merge_key], value)


def _find(items: Items, merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if _key_matches(item, merge_key, value):
            return i
    return -1


def _merge_items(
    original: Items, patch: Items, path: str, merge_key: str, merge_keys: dict[str, str]
) -> Items:
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        i = _find(merged, merge_key, item[merge_key])
        if i >= 0:
            merged[i] = _merge_map(merged[i], item, path, merge_keys)
        else:
            cleaned = _clean(item)
            if cleaned is not _DROP:
                merged.append(cleaned)
    return merged


# ----------------------------------------------------------------------------------------------- ordering


def _partition(merged: Items, by: Items, merge_key: str) -> tuple[Items, Items]:
    """Split `merged` into (items present in `by`, server-only items), keeping relative order."""
    inside: Items = []
    outside: Items = []
    for v in merged:
        if merge_key:
            if not isinstance(v, dict):
                raise _bad_arg("map", v)
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            found = _find(by, merge_key, v[merge_key]) >= 0
        else:
            found = any(_same(v, b) for b in by)
        (inside if found else outside).append(v)
    return inside, outside


def _ident(item: Any, merge_key: str, kind: str) -> Any:
    if kind == "map":
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _index(order: Items, item: Any, merge_key: str, kind: str) -> int:
    want = _ident(item, merge_key, kind)
    for i, v in enumerate(order):
        if _same(_ident(v, merge_key, kind), want):
            return i
    return -1


def _sort_by(items: Items, order: Items, merge_key: str, kind: str) -> Items:
    """Stable-sort `items` by position in `order`; `$patch: delete` items go last (upstream)."""
    deleted: Items = []
    if kind == "map":
        for v in items + order:
            if not isinstance(v, dict):
                raise _bad_arg("map", v)
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
        deleted = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    positions = [_index(order, v, merge_key, kind) for v in items]
    ranked = sorted(range(len(items)), key=lambda i: (positions[i] < 0, positions[i], i))
    return [items[i] for i in ranked] + deleted


def _normalize_order(
    patch_items: Items, server_only: Items, patch_order: Items, server_order: Items, merge_key: str, kind: str
) -> Items:
    """Patch items in patch order, server-only items in server order, interleaved by server order."""
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    out: Items = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


# ------------------------------------------------------------------------------------- $setElementOrder


def _apply_set_element_order(original: Obj, patch: Obj, path: str, merge_keys: dict[str, str]) -> None:
    for key in [k for k in patch if k.startswith(SET_ORDER_PREFIX)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg("slice", order)
        field = key.partition("/")[2]
        _order_one_list(original, patch, field, order, _child(path, field), merge_keys)


def _order_one_list(
    original: Obj, patch: Obj, field: str, order: Items, path: str, merge_keys: dict[str, str]
) -> None:
    found_orig, found_patch = field in original, field in patch
    orig_list = original[field] if found_orig else []
    patch_list = patch[field] if found_patch else []
    if found_orig and not isinstance(orig_list, list):
        raise _bad_arg("slice", orig_list)
    if found_patch and not isinstance(patch_list, list):
        raise _bad_arg("slice", patch_list)
    merge_key = merge_keys.get(path) or ""
    _validate_order(patch_list, order, merge_key)
    if not found_orig and not found_patch:
        return
    server_order = orig_list
    if not found_patch:
        merged = orig_list
    elif not found_orig:
        merged = _clean(patch_list)
    else:
        merged = _merge_list_field(orig_list, patch_list, path, merge_keys, is_delete=False)
        if path in merge_keys and merge_key:
            server_order = _aliased_original(orig_list, patch_list, merge_key)
    patch_items, server_only = _partition(merged, order, merge_key)
    kind = _element_kind(orig_list, patch_list)
    original[field] = _normalize_order(patch_items, server_only, order, server_order, merge_key, kind)
    patch.pop(field, None)


def _aliased_original(original: Items, patch: Items, merge_key: str) -> Items:
    """The original list as upstream sees it after merging: Go's in-place slice edits show through.

    Upstream deletes `$patch: delete` items by shifting the shared backing array left, then appends new
    items into the freed tail; the caller's view (same array, old length) is then used as the server
    order for `$setElementOrder`. Only writes below the old length are visible, so capacity is moot.
    """
    backing, length = list(original), len(original)
    for item in patch:
        if item.get(DIRECTIVE) != "delete":
            continue
        while (i := _find(backing[:length], merge_key, item[merge_key])) >= 0:
            backing[i : length - 1] = backing[i + 1 : length]
            length -= 1
    if any(item.get(DIRECTIVE) == "replace" for item in patch):
        return backing  # upstream merges into a fresh list then; nothing more shows through
    for item in patch:
        if DIRECTIVE in item or _find(backing[:length], merge_key, item[merge_key]) >= 0:
            continue
        if length >= len(backing):
            break
        backing[length] = item
        length += 1
    return backing


def _validate_order(patch_list: Items, order: Items, merge_key: str) -> None:
    """Patch items must appear in `$setElementOrder` in the same relative order."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg("map", v)
        items = [v for v in patch_list if v.get(DIRECTIVE) != "delete"]
    p = s = 0
    while p < len(items) and s < len(order):
        if isinstance(items[p], dict) and DIRECTIVE in items[p]:
            p += 1
            continue
        if _order_equal(items[p], order[s], merge_key):
            p += 1
        s += 1
    if p < len(items):
        raise ValueError(
            f"The order in patch list:\n{_go(patch_list)}\n doesn't match {SET_ORDER_PREFIX} list:\n{_go(order)}\n"
        )


def _order_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for v in (left, right):
        if not isinstance(v, dict):
            raise _bad_arg("map", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
    return _same(left[merge_key], right[merge_key])
