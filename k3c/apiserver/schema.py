"""Structural-schema handling of custom resources, as kube-apiserver does it for CRDs.

Four steps, in the order kube-apiserver applies them to a custom resource on create/update:

* `prune`          drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`),
                   and unknown ObjectMeta fields of the root and of embedded resources; returns their
                   paths for `fieldValidation=Strict|Warn` (`unknown field "spec.foo"`).
* `apply_defaults` drops non-nullable `null`s that have no default, then fills `default`s of absent fields.
* `validate`       OpenAPI v3 value validation (through `jsonschema`), embedded-resource TypeMeta checks
                   and `x-kubernetes-list-type` set/map uniqueness, worded like kube-apiserver
                   (kube-openapi messages wrapped into apimachinery field errors).
* `validate_crd`   the basic checks kube-apiserver runs on a CustomResourceDefinition itself.

The schemas are plain dicts (a CRD version's `schema.openAPIV3Schema`). CEL rules
(`x-kubernetes-validations`) are ignored.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import functools
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from jsonschema import Draft4Validator, ValidationError, validators

from .errors import Cause

__all__ = ["prune", "apply_defaults", "validate", "validate_crd"]

Schema = dict[str, Any]

# --------------------------------------------------------------------------------------------------
# Go-compatible formatting helpers (kube-apiserver's messages are built with fmt %v / %q / json).
# --------------------------------------------------------------------------------------------------


def _go_float(f: float) -> str:
    """fmt's %v of a float64 (strconv 'g' with the shortest representation, %e from exponent 6 on)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(str(d) for d in digits).rstrip("0") or "0"
    # value = 0.<ds> * 10**dp
    dp = len(digits) + int(exp)
    x = dp - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return f"{neg}{ds}{'0' * (dp - len(ds))}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def _go_num(v: Any) -> str:
    """%v of an int64 or float64."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return _go_float(float(v))


def _go_quote(s: str) -> str:
    """strconv.Quote (close enough: printable characters kept, the rest escaped)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_json(v: Any) -> str:
    """encoding/json.Marshal: sorted keys, compact, floats without '.0', HTML characters escaped."""

    def enc(x: Any) -> str:
        if x is None:
            return "null"
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, int):
            return str(x)
        if isinstance(x, float):
            if x.is_integer() and abs(x) < 1e21:
                return str(int(x))
            a = abs(x)
            if a < 1e-6 or a >= 1e21:
                s = repr(x)
                return re.sub(r"e([+-])0*(\d)", r"e\1\2", s) if "e" in s else s
            return repr(x)
        if isinstance(x, str):
            return json.dumps(x, ensure_ascii=False)
        if isinstance(x, dict):
            return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{enc(x[k])}" for k in sorted(x)) + "}"
        if isinstance(x, (list, tuple)):
            return "[" + ",".join(enc(i) for i in x) + "]"
        return json.dumps(str(x), ensure_ascii=False)

    s = enc(v)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _bad_value(v: Any) -> str:
    """How field.Error.ErrorBody renders a bad value."""
    if isinstance(v, bool) or isinstance(v, (int, float)):
        return _go_num(v)
    if isinstance(v, str):
        return _go_quote(v)
    return _go_json(v)


# apimachinery field errors (the `message` of a Cause is ErrorBody(): without the field).

def _invalid(fld: str, value: Any, detail: str) -> Cause:
    return Cause(fld, "FieldValueInvalid", f"Invalid value: {_bad_value(value)}: {detail}" if detail
                 else f"Invalid value: {_bad_value(value)}")


def _type_invalid(fld: str, value: Any, detail: str) -> Cause:
    return Cause(fld, "FieldValueTypeInvalid", f"Invalid value: {_bad_value(value)}: {detail}")


def _required(fld: str, detail: str = "") -> Cause:
    return Cause(fld, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def _forbidden(fld: str, detail: str) -> Cause:
    return Cause(fld, "FieldValueForbidden", "Forbidden" + (f": {detail}" if detail else ""))


def _not_supported(fld: str, value: Any, supported: Iterable[str]) -> Cause:
    vals = ", ".join(_go_quote(s) for s in supported)
    msg = f"Unsupported value: {_bad_value(value)}"
    if vals:
        msg += f": supported values: {vals}"
    return Cause(fld, "FieldValueNotSupported", msg)


def _too_long(fld: str, max_len: int) -> Cause:
    if max_len >= 0:
        return Cause(fld, "FieldValueTooLong",
                     f"Too long: may not be more than {max_len} {'byte' if max_len == 1 else 'bytes'}")
    return Cause(fld, "FieldValueTooLong", "Too long: value is too long")


def _too_many(fld: str, actual: int, max_items: int) -> Cause:
    detail = f"must have at most {max_items} {'item' if max_items == 1 else 'items'}" if max_items >= 0 \
        else "has too many items"
    return Cause(fld, "FieldValueTooMany", f"Too many: {actual}: {detail}")


def _duplicate(fld: str, value: Any) -> Cause:
    return Cause(fld, "FieldValueDuplicate", f"Duplicate value: {_bad_value(value)}")


# --------------------------------------------------------------------------------------------------
# Small schema accessors
# --------------------------------------------------------------------------------------------------

_META_FIELDS = ("apiVersion", "kind", "metadata")
_EMBEDDED = "x-kubernetes-embedded-resource"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"


def _props(s: Schema | None) -> dict[str, Any]:
    p = s.get("properties") if isinstance(s, dict) else None
    return p if isinstance(p, dict) else {}


def _additional(s: Schema | None) -> tuple[bool, Schema | None]:
    """(present, schema) of additionalProperties as structural schemas see it (`true` = present, no schema)."""
    if not isinstance(s, dict):
        return False, None
    ap = s.get("additionalProperties")
    if ap is None or ap is False:
        return False, None
    if ap is True:
        return True, None
    return (True, ap) if isinstance(ap, dict) else (False, None)


def _items(s: Schema | None) -> Schema | None:
    it = s.get("items") if isinstance(s, dict) else None
    return it if isinstance(it, dict) else None


def _field_schema(key: str, s: Schema | None) -> Schema | None:
    props = _props(s)
    if key in props:
        return props[key]
    present, sub = _additional(s)
    return sub if present else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------------

# metav1.ObjectMeta and the structs nested in it: the fields a JSON round trip keeps.
_OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})
_OWNER_REFERENCE_FIELDS = frozenset({"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"})
_MANAGED_FIELDS_FIELDS = frozenset({"manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1",
                                    "subresource"})


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
    if is_root and not s.get(_EMBEDDED):
        s = dict(s)
        s[_EMBEDDED] = True
    out: list[str] = []
    _prune(obj, s, "", out)
    _coerce_meta(obj, s, "", out)
    out.sort()
    return out


def _prune(x: Any, s: Schema | None, path: str, out: list[str]) -> None:
    if s is not None and s.get(_PRESERVE) is True:
        _skip_prune(x, s, path, out)
        return
    if isinstance(x, dict):
        if s is None:
            for k in list(x):
                out.append(_join(path, k))
                del x[k]
            return
        _prune_fields(x, s, path, out, keep_unknown=False)
    elif isinstance(x, list):
        items = _items(s) if s is not None else None
        if s is not None and items is None and isinstance(s.get("items"), list):
            return  # tuple-typed items are not structural; keep the data rather than dropping it
        for i, v in enumerate(x):
            _prune(v, items, f"{path}[{i}]", out)


def _prune_fields(x: dict[str, Any], s: Schema, path: str, out: list[str], *, keep_unknown: bool) -> None:
    """Recurse into the known fields of an object; drop (or, under preserve-unknown, keep) the rest."""
    props = _props(s)
    ap_present, ap = _additional(s)
    embedded = s.get(_EMBEDDED) is True
    for k in list(x):
        if embedded and k in _META_FIELDS:
            continue
        if k in props:
            _prune(x[k], props[k] if isinstance(props[k], dict) else None, _join(path, k), out)
        elif ap_present:
            _prune(x[k], ap, _join(path, k), out)
        elif not keep_unknown:
            if k not in _META_FIELDS or path:
                out.append(_join(path, k))
            del x[k]


def _skip_prune(x: Any, s: Schema | None, path: str, out: list[str]) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        _prune_fields(x, s, path, out, keep_unknown=True)
    elif isinstance(x, list):
        items = _items(s)
        for i, v in enumerate(x):
            _skip_prune(v, items, f"{path}[{i}]", out)


def _coerce_meta(x: Any, s: Schema | None, path: str, out: list[str]) -> None:
    """Reduce `metadata` of embedded resources (and the root) to ObjectMeta fields."""
    if s is None:
        return
    if isinstance(x, dict):
        if s.get(_EMBEDDED) is True and isinstance(x.get("metadata"), dict):
            _prune_object_meta(x["metadata"], _join(path, "metadata"), out)
        props = _props(s)
        ap_present, ap = _additional(s)
        for k, v in x.items():
            if k in props and isinstance(props[k], dict):
                _coerce_meta(v, props[k], _join(path, k), out)
            elif ap_present:
                _coerce_meta(v, ap, _join(path, k), out)
    elif isinstance(x, list):
        items = _items(s)
        for i, v in enumerate(x):
            _coerce_meta(v, items, f"{path}[{i}]", out)


def _prune_object_meta(meta: dict[str, Any], path: str, out: list[str]) -> None:
    for k in list(meta):
        if k not in _OBJECT_META_FIELDS:
            out.append(_join(path, k))
            del meta[k]
        elif meta[k] is None:
            del meta[k]  # e.g. `creationTimestamp: null`, dropped by the ObjectMeta round trip
    for key, known in (("ownerReferences", _OWNER_REFERENCE_FIELDS), ("managedFields", _MANAGED_FIELDS_FIELDS)):
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


# --------------------------------------------------------------------------------------------------
# Defaulting
# --------------------------------------------------------------------------------------------------


def apply_defaults(obj: dict[str, Any], schema: Schema | None) -> None:
    """Apply `default`s in place, as kube-apiserver does for custom resources.

    First non-nullable `null` values without a default are dropped (PruneNonNullableNullsWithoutDefaults);
    then every absent field with a `default` (and every non-nullable `null` that has one) gets a deep copy
    of it, recursively through properties, additionalProperties and array items. Defaults are themselves
    defaulted (nested defaults inside a defaulted object apply).
    """
    if schema is None:
        return
    _prune_nulls(obj, schema)
    _default(obj, schema)


def _non_nullable_null(x: Any, s: Schema | None) -> bool:
    return x is None and s is not None and not s.get("nullable")


def _prune_nulls(x: Any, s: Schema | None) -> None:
    if isinstance(x, dict):
        for k in list(x):
            sub = _field_schema(k, s)
            v = x[k]
            if _non_nullable_null(v, sub) and sub.get("default") is None:  # type: ignore[union-attr]
                del x[k]
            else:
                _prune_nulls(v, sub)
    elif isinstance(x, list):
        items = _items(s)
        for v in x:
            _prune_nulls(v, items)


def _default(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props = _props(s)
        for k, prop in props.items():
            if not isinstance(prop, dict) or prop.get("default") is None:
                continue
            if k not in x or _non_nullable_null(x[k], prop):
                x[k] = copy.deepcopy(prop["default"])
        ap_present, ap = _additional(s)
        for k in list(x):
            if k in props:
                _default(x[k], props[k] if isinstance(props[k], dict) else None)
            elif ap_present and ap is not None:
                if _non_nullable_null(x[k], ap):
                    x[k] = copy.deepcopy(ap.get("default"))
                _default(x[k], ap)
    elif isinstance(x, list):
        items = _items(s)
        if items is None:
            return
        for i in range(len(x)):
            if _non_nullable_null(x[i], items):
                x[i] = copy.deepcopy(items.get("default"))
            _default(x[i], items)


# --------------------------------------------------------------------------------------------------
# Validation (jsonschema with kube-openapi semantics, errors translated to kube wording)
# --------------------------------------------------------------------------------------------------


class _KErr(ValidationError):
    """A ValidationError carrying what is needed to word it like kube-apiserver once its path is known."""

    k8s: tuple[Any, ...] = ()


def _kerr(kind: str, *args: Any, path: Iterable[str | int] = (), context: Iterable[ValidationError] = ()) -> _KErr:
    e = _KErr(kind, path=path, context=list(context))
    e.k8s = (kind, *args)
    return e


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "object"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _schema_types(s: Schema) -> list[str]:
    if s.get(_INT_OR_STRING) is True:
        return ["integer", "string"]
    t = s.get("type")
    if not t:
        return []
    return [t] if isinstance(t, str) else [str(i) for i in t]


def _type_errors(instance: Any, s: Schema) -> Iterator[_KErr]:
    types = _schema_types(s)
    if not types:
        return
    if instance is None:
        if s.get("nullable") is True or "null" in types:
            return
        yield _kerr("type", ",".join(types), "null")
        return
    actual = _json_type(instance)
    if actual in types:
        return
    if actual == "number" and "integer" in types and _float_is_integer(float(instance)):
        return
    if actual == "integer" and "number" in types:
        return
    yield _kerr("type", ",".join(types), actual)


def _float_is_integer(f: float) -> bool:
    """swag.IsFloat64AJSONInteger."""
    if math.isnan(f) or math.isinf(f) or f < -(2**53) or f > 2**53:
        return False
    g = float(math.trunc(f))
    if f == g:
        return True
    diff = abs(f - g)
    if f == 0 or g == 0 or diff < 5e-324:
        return diff < 1e-9 * 5e-324
    return diff / min(abs(f) + abs(g), 1.7976931348623157e308) < 1e-9


def _kw_type(validator: Any, _types: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    yield from _type_errors(instance, schema)


def _kw_int_or_string(validator: Any, value: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if value is True and "type" not in schema:
        yield from _type_errors(instance, schema)


def _kw_required(validator: Any, required: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not isinstance(instance, dict) or not isinstance(required, list):
        return
    for k in required:
        if k not in instance:
            yield _kerr("required", path=[k])


def _kw_additional_properties(validator: Any, ap: Any, instance: Any, schema: Schema) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    props = _props(schema)
    patterns = schema.get("patternProperties") or {}
    extras = [k for k in instance if k not in props and not any(_search(p, k) for p in patterns)]
    if ap is False:
        for k in extras:
            yield _kerr("forbiddenProperty", k)
    elif isinstance(ap, dict):
        for k in extras:
            yield from validator.descend(instance[k], ap, path=k)


@functools.lru_cache(maxsize=512)
def _go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) pattern: `$` outside classes means end of text, as in Go (Python's `$` also
    matches before a final newline). Raises re.error for patterns Python cannot compile."""
    out = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "^":
                out.append("[^")
                i += 2
                if pattern[i:i + 1] == "]":
                    out.append("]")
                    i += 1
                continue
            if pattern[i + 1:i + 2] == "]":
                out.append("[]")
                i += 2
                continue
        elif ch == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return re.compile("".join(out))


def _search(pattern: str, s: str) -> bool:
    try:
        return _go_regex(pattern).search(s) is not None
    except re.error:
        return False


def _str_len_errors(instance: str, schema: Schema) -> str | None:
    """kube-openapi's string validator stops at the first of maxLength, minLength, pattern."""
    mx, mn, pat = schema.get("maxLength"), schema.get("minLength"), schema.get("pattern")
    if _is_number(mx) and len(instance) > mx:
        return "maxLength"
    if _is_number(mn) and len(instance) < mn:
        return "minLength"
    if isinstance(pat, str):
        try:
            if _go_regex(pat).search(instance) is None:
                return "pattern"
        except re.error:
            return "pattern"
    return None


def _kw_max_length(validator: Any, mx: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "maxLength":
        yield _kerr("maxLength", int(mx))


def _kw_min_length(validator: Any, mn: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "minLength":
        yield _kerr("minLength", int(mn))


def _kw_pattern(validator: Any, pattern: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "pattern":
        try:
            _go_regex(pattern)
            shown = pattern
        except re.error as exc:
            shown = f"{pattern}, but pattern is invalid: {exc}"
        yield _kerr("pattern", shown)


def _bound(instance: Any, bound: Any) -> tuple[Any, Any]:
    """Values compared the way kube-openapi does: int64 data against int64(bound), else float64."""
    if isinstance(instance, int):
        return instance, math.trunc(bound)
    return float(instance), float(bound)


def _kw_maximum(validator: Any, mx: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not _is_number(instance) or not _is_number(mx):
        return
    excl = schema.get("exclusiveMaximum") is True
    v, b = _bound(instance, mx)
    if (excl and v >= b) or (not excl and v > b):
        yield _kerr("maximum", b, excl)


def _kw_minimum(validator: Any, mn: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not _is_number(instance) or not _is_number(mn):
        return
    excl = schema.get("exclusiveMinimum") is True
    v, b = _bound(instance, mn)
    if (excl and v <= b) or (not excl and v < b):
        yield _kerr("minimum", b, excl)


def _kw_multiple_of(validator: Any, factor: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not _is_number(instance) or not _is_number(factor):
        return
    if isinstance(instance, int) and float(factor).is_integer():
        f = int(factor)
        if f <= 0:
            yield _kerr("multipleOfPositive", f)
        elif instance % f != 0:
            yield _kerr("multipleOf", f)
        return
    f = float(factor)
    if f <= 0:
        yield _kerr("multipleOfPositive", f)
        return
    data = float(instance)
    mult = (1 / f * data) if f < 1 else (data / f)
    if not _float_is_integer(mult):
        yield _kerr("multipleOf", f)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: numbers by value (1 == 1.0), booleans never equal to numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _kw_enum(validator: Any, enums: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if isinstance(enums, list) and enums and not any(_json_equal(instance, e) for e in enums):
        yield _kerr("enum")


def _kw_any_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    branches = []
    for i, sub in enumerate(subschemas):
        errs = list(validator.descend(instance, sub, schema_path=i))
        if not errs:
            return
        branches.append(errs)
    yield _kerr("anyOf", context=_best(branches))


def _kw_one_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    branches = []
    valid = 0
    for i, sub in enumerate(subschemas):
        errs = list(validator.descend(instance, sub, schema_path=i))
        if errs:
            branches.append(errs)
        else:
            valid += 1
    if valid == 1:
        return
    yield _kerr("oneOf", valid, context=_best(branches) if valid == 0 else [])


def _kw_all_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    all_errs: list[ValidationError] = []
    valid = 0
    for i, sub in enumerate(subschemas):
        errs = list(validator.descend(instance, sub, schema_path=i))
        if errs:
            all_errs.extend(errs)
        else:
            valid += 1
    if valid != len(subschemas):
        yield _kerr("allOf", valid == 0, context=all_errs)


def _kw_not(validator: Any, not_schema: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not any(True for _ in validator.descend(instance, not_schema)):
        yield _kerr("not")


def _kw_dependencies(validator: Any, deps: Any, instance: Any, schema: Schema) -> Iterator[ValidationError]:
    if not isinstance(instance, dict) or not isinstance(deps, dict):
        return
    for key, dep in deps.items():
        if key not in instance:
            continue
        if isinstance(dep, list):
            for d in dep:
                if d not in instance:
                    yield _kerr("dependency", d)
        elif isinstance(dep, dict):
            yield from validator.descend(instance, dep, schema_path=key)


def _best(branches: list[list[ValidationError]]) -> list[ValidationError]:
    """The failures of the alternative that came closest (kube-openapi keeps the best MatchCount)."""
    if not branches:
        return []
    return min(branches, key=len)


# Formats kube-apiserver validates in CRD schemas (normalized without '-'), strings only.
_UUID_RES = {
    "uuid": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid3": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
    "uuid4": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
    "uuid5": re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"),
}
_DATE_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_EMAIL_RE = re.compile(r"^(?:[^@\s<>]+|.*<[^@\s<>]+@[^@\s<>]+>)$")
_MAC_RE = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){7}"
    r"|[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2,9})$"
)
_DURATION_RE = re.compile(
    r"^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$|^0$"
    r"|^\d+\s*(?:ns|us|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)$"
)
_HEXCOLOR_RE = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGBCOLOR_RE = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")
_BSON_RE = re.compile(r"^[0-9a-fA-F]{24}$")


def _valid_string_format(fmt: str, s: str) -> bool | None:
    """True/False when `fmt` is one kube-apiserver checks, None when the format is ignored."""
    f = fmt.replace("-", "")
    if f in _UUID_RES:
        return _UUID_RES[f].fullmatch(s) is not None
    if f == "datetime":
        m = _DATE_TIME_RE.fullmatch(s)
        if not m:
            return False
        try:
            _dt.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0))
        except ValueError:
            return False
        return True
    if f == "date":
        try:
            _dt.date.fromisoformat(s)
            return re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None
        except ValueError:
            return False
    if f == "byte":
        try:
            base64.b64decode(s, validate=True)
            return True
        except (ValueError, TypeError):
            return False
    if f in ("ipv4", "ipv6"):
        try:
            ip = ipaddress.ip_address(s)
        except ValueError:
            return False
        return ip.version == 4 if f == "ipv4" else ":" in s
    if f == "cidr":
        try:
            ipaddress.ip_network(s, strict=False)
            return "/" in s
        except ValueError:
            return False
    if f == "mac":
        return _MAC_RE.fullmatch(s) is not None
    if f == "hostname":
        return _HOSTNAME_RE.fullmatch(s) is not None
    if f == "email":
        return _EMAIL_RE.fullmatch(s) is not None and "@" in s
    if f == "uri":
        return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", s) or s.startswith("/"))
    if f == "duration":
        return _DURATION_RE.fullmatch(s) is not None
    if f == "hexcolor":
        return _HEXCOLOR_RE.fullmatch(s) is not None
    if f == "rgbcolor":
        m = _RGBCOLOR_RE.fullmatch(s)
        return m is not None and all(int(g) <= 255 for g in m.groups())
    if f == "bsonobjectid":
        return _BSON_RE.fullmatch(s) is not None
    return None  # password, isbn*, creditcard, ssn, k8s-*-name and unknown formats: not checked here


def _kw_format(validator: Any, fmt: Any, instance: Any, schema: Schema) -> Iterator[_KErr]:
    if not isinstance(fmt, str) or not fmt:
        return
    types = schema.get("type")
    stype = types if isinstance(types, str) else ""
    if isinstance(instance, str):
        if stype not in ("", "string"):
            return
        if _valid_string_format(fmt, instance) is False:
            yield _kerr("format", fmt)
    elif _is_number(instance):
        # numberValidator: the value must fit the declared format's range.
        if stype == "integer" and fmt == "int32" and not (-(2**31) <= instance <= 2**31 - 1):
            yield _kerr("range", "integer", fmt)
        elif stype == "number" and fmt == "float" and abs(float(instance)) > 3.4028234663852886e38:
            yield _kerr("range", "number", fmt)


_Validator = validators.extend(
    Draft4Validator,
    validators={
        "type": _kw_type,
        _INT_OR_STRING: _kw_int_or_string,
        "required": _kw_required,
        "additionalProperties": _kw_additional_properties,
        "maxLength": _kw_max_length,
        "minLength": _kw_min_length,
        "pattern": _kw_pattern,
        "maximum": _kw_maximum,
        "minimum": _kw_minimum,
        "multipleOf": _kw_multiple_of,
        "enum": _kw_enum,
        "anyOf": _kw_any_of,
        "oneOf": _kw_one_of,
        "allOf": _kw_all_of,
        "not": _kw_not,
        "dependencies": _kw_dependencies,
        "format": _kw_format,
        "$ref": lambda *a: (),  # CRD schemas cannot use $ref; never resolve anything
    },
)


def _path_str(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out = f"{out}.{p}" if out else str(p)
    return out


def _translate(errors: Iterable[ValidationError], prefix: str, out: list[Cause]) -> None:
    root_field = prefix or "<nil>"
    for e in errors:
        name = _path_str(e.absolute_path)
        fld = f"{prefix}.{name}" if prefix and name else (name or root_field)
        k8s = getattr(e, "k8s", ()) or (e.validator,)
        kind, args = k8s[0], k8s[1:]
        inst = e.instance
        if kind == "type":
            expected, actual = args
            out.append(_type_invalid(fld, actual, f"{name} in body must be of type {expected}: {_go_quote(actual)}"))
        elif kind == "required":
            out.append(_required(fld))
        elif kind == "enum":
            supported = [v if isinstance(v, str) else _go_json(v) for v in e.validator_value]
            out.append(_not_supported(fld, inst, supported))
        elif kind == "maxLength":
            out.append(_too_long(fld, args[0]))
        elif kind == "minLength":
            out.append(_invalid(fld, inst, f"{name} in body should be at least {args[0]} chars long"))
        elif kind == "pattern":
            out.append(_invalid(fld, inst, f"{name} in body should match '{args[0]}'"))
        elif kind in ("maximum", "minimum"):
            bound, excl = args
            rel = ("less than" if kind == "maximum" else "greater than") + ("" if excl else " or equal to")
            out.append(_invalid(fld, inst, f"{name} in body should be {rel} {_go_num(bound)}"))
        elif kind == "multipleOf":
            out.append(_invalid(fld, inst, f"{name} in body should be a multiple of {_go_num(args[0])}"))
        elif kind == "multipleOfPositive":
            out.append(_invalid(fld, args[0], f"factor MultipleOf declared for {name} must be positive: "
                                              f"{_go_num(args[0])}"))
        elif kind == "maxItems":
            out.append(_too_many(fld, len(inst), int(e.validator_value)))
        elif kind == "minItems":
            out.append(_invalid(fld, len(inst), f"{name} in body should have at least "
                                                f"{int(e.validator_value)} items"))
        elif kind == "uniqueItems":
            out.append(_invalid(fld, "", f"{name} in body shouldn't contain duplicates"))
        elif kind == "maxProperties":
            out.append(_too_many(fld, len(inst), int(e.validator_value)))
        elif kind == "minProperties":
            out.append(_invalid(fld, len(inst), f"{name} in body should have at least "
                                                f"{int(e.validator_value)} properties"))
        elif kind == "forbiddenProperty":
            out.append(_invalid(fld, args[0], f"{name}.{args[0]} in body is a forbidden property"))
        elif kind == "format":
            out.append(_type_invalid(fld, inst, f"{name} in body must be of type {args[0]}: {_go_quote(inst)}"))
        elif kind == "range":
            typ, fmt = args
            out.append(_invalid(root_field, "", f"Checked value must be of type {typ} with format {fmt} in {name}"))
        elif kind == "anyOf":
            out.append(_invalid(root_field, "", f"{_go_quote(name)} must validate at least one schema (anyOf)"))
            _translate(e.context, prefix, out)
        elif kind == "oneOf":
            found = "Found none valid" if args[0] == 0 else f"Found {args[0]} valid alternatives"
            out.append(_invalid(root_field, "", f"{_go_quote(name)} must validate one and only one schema "
                                                f"(oneOf). {found}"))
            _translate(e.context, prefix, out)
        elif kind == "allOf":
            _translate(e.context, prefix, out)
            suffix = ". None validated" if args[0] else ""
            out.append(_invalid(root_field, "", f"{_go_quote(name)} must validate all the schemas (allOf){suffix}"))
        elif kind == "not":
            out.append(_invalid(root_field, "", f"{_go_quote(name)} must not validate the schema (not)"))
        elif kind == "dependency":
            out.append(_invalid(root_field, "", f"{_go_quote(name)} has a dependency on {args[0]}"))
        else:
            out.append(_invalid(fld, inst if inst is not None else "", e.message))


def validate(obj: Any, schema: Schema | None, *, path: str = "") -> list[Cause]:
    """Validate `obj` against a CRD `openAPIV3Schema`, returning kube-apiserver's field causes.

    Value validation follows kube-openapi (types incl. `nullable` and `x-kubernetes-int-or-string`,
    formats, enum, required, bounds, lengths, pattern, item/property counts, allOf/anyOf/oneOf/not);
    each error becomes a Cause with the Kubernetes field path (`spec.ports[0].hostPort`) and message
    (e.g. `Invalid value: "string": spec.replicas in body must be of type integer: "string"`).
    Then, like the custom resource strategy, embedded resources must carry apiVersion/kind and lists with
    `x-kubernetes-list-type: set|map` must not repeat items/keys. `path` prefixes the field paths
    (kube-apiserver validates the status subresource with `path="status"` against the status schema).
    CEL rules are not evaluated.
    """
    if schema is None or not isinstance(schema, dict):
        return []
    errors = list(_Validator(schema).iter_errors(obj))
    causes: list[Cause] = []
    _translate(errors, path, causes)
    _validate_embedded(obj, schema, path, causes)
    _validate_list_types(obj, schema, path, causes)
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for c in causes:
        key = (c.field, c.reason, c.message)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


# field.Path rendering as the objectmeta and listtype validators build it (map keys as `[key]`).

def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _key(path: str, key: str) -> str:
    return f"{path}[{key}]"


_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = "".join((" or " if i else "") + f"'{e}', " for i, e in enumerate(examples))
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_RE.fullmatch(value):
        errs.append(_regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                 "start with an alphabetic character, and end with an alphanumeric character",
                                 "[a-z]([-a-z0-9]*[a-z0-9])?", "my-name", "abc-123"))
    return errs


def _is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                 "characters, '-' or '.', and must start and end with an alphanumeric character",
                                 "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                                 "example.com"))
    return errs


def _validate_embedded(x: Any, s: Schema | None, path: str, out: list[Cause]) -> None:
    """objectmeta.Validate for nested `x-kubernetes-embedded-resource` objects (TypeMeta checks)."""
    if not isinstance(s, dict):
        return
    if isinstance(x, dict):
        if s.get(_EMBEDDED) is True:
            for k in ("apiVersion", "kind"):
                if k not in x:
                    out.append(_required(_child(path, k)))
            av = x.get("apiVersion")
            if "apiVersion" in x:
                if not isinstance(av, str):
                    out.append(_invalid(_child(path, "apiVersion"), av, "must be a string"))
                elif not av:
                    out.append(_invalid(_child(path, "apiVersion"), av, "must not be empty"))
                elif av.count("/") > 1:
                    out.append(_invalid(_child(path, "apiVersion"), av,
                                        f"unexpected GroupVersion string: {av}"))
            kind = x.get("kind")
            if "kind" in x:
                if not isinstance(kind, str):
                    out.append(_invalid(_child(path, "kind"), kind, "must be a string"))
                elif not kind:
                    out.append(_invalid(_child(path, "kind"), kind, "must not be empty"))
                elif errs := _is_dns1035_label(kind.lower()):
                    out.append(_invalid(_child(path, "kind"), kind,
                                        "may have mixed case, but should otherwise match: " + ",".join(errs)))
        props = _props(s)
        ap_present, ap = _additional(s)
        for k, v in x.items():
            if k in props:
                _validate_embedded(v, props[k], _child(path, k), out)
            elif ap_present:
                _validate_embedded(v, ap, _key(path, k), out)
    elif isinstance(x, list):
        items = _items(s)
        for i, v in enumerate(x):
            _validate_embedded(v, items, f"{path}[{i}]", out)


def _validate_list_types(x: Any, s: Schema | None, path: str, out: list[Cause]) -> None:
    """listtype.ValidateListSetsAndMaps: uniqueness of `set` items and of `map` keys."""
    if not isinstance(s, dict):
        return
    if isinstance(x, dict):
        props = _props(s)
        ap_present, ap = _additional(s)
        for k, v in x.items():
            if k in props:
                _validate_list_types(v, props[k], _child(path, k), out)
            elif ap_present:
                _validate_list_types(v, ap, _key(path, k), out)
    elif isinstance(x, list):
        lt = s.get("x-kubernetes-list-type")
        if lt == "set":
            for i in _non_unique(x):
                out.append(_duplicate(f"{path}[{i}]", x[i]))
        elif lt == "map":
            _validate_list_map(x, s, path, out)
        items = _items(s)
        for i, v in enumerate(x):
            _validate_list_types(v, items, f"{path}[{i}]", out)


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _non_unique(values: list[Any]) -> list[int]:
    """Indices of the second appearance of each repeated value."""
    seen: dict[str, int] = {}
    out = []
    for i, v in enumerate(values):
        k = _canon(v) if not isinstance(v, _Unspecified) else "\x00unspecified"
        n = seen.get(k, 0)
        if n == 1:
            out.append(i)
        seen[k] = n + 1
    return out


class _Unspecified:
    pass


def _validate_list_map(x: list[Any], s: Schema, path: str, out: list[Cause]) -> None:
    for i, item in enumerate(x):
        if item is not None and not isinstance(item, dict):
            out.append(_invalid(f"{path}[{i}]", item, "must be an object for an array of list-type map"))
            return
    keys_fields = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
    if len(x) <= 1 or not keys_fields:
        return
    keys: list[Any] = []
    for item in x:
        if len(keys_fields) == 1:
            f = keys_fields[0]
            keys.append(item[f] if isinstance(item, dict) and f in item else _Unspecified())
        else:
            keys.append({f: item[f] for f in keys_fields if isinstance(item, dict) and f in item})
    for i in _non_unique(keys):
        k = keys[i]
        if len(keys_fields) == 1:
            out.append(_duplicate(f"{path}[{i}]", {} if isinstance(k, _Unspecified) else {keys_fields[0]: k}))
        else:
            out.append(_duplicate(f"{path}[{i}]", k))


# --------------------------------------------------------------------------------------------------
# CustomResourceDefinition validation
# --------------------------------------------------------------------------------------------------

_PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_PRINTER_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
_VALID_TYPES = ("array", "boolean", "integer", "number", "object", "string")


def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """The basic checks kube-apiserver runs on a CustomResourceDefinition (apiextensions.k8s.io/v1).

    metadata.name (`<plural>.<group>`), spec.group, spec.scope, spec.names (plural/kind required;
    singular and listKind are defaulted first, as the v1 defaulting does), versions (names, uniqueness,
    exactly one storage version, a schema for every version), the schema's structural basics (type
    object at the root, types everywhere, array items, no additionalProperties next to properties,
    no nullable root, no uniqueItems), the status-subresource root restriction and printer columns.
    """
    out: list[Cause] = []
    meta = crd.get("metadata") if isinstance(crd.get("metadata"), dict) else {}
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    names = dict(spec.get("names") or {}) if isinstance(spec.get("names"), dict) else {}
    group = spec.get("group") or ""
    if not isinstance(group, str):
        group = str(group)
    kind = names.get("kind") or ""
    if kind and not names.get("singular"):
        names["singular"] = kind.lower()
    if kind and not names.get("listKind"):
        names["listKind"] = kind + "List"
    plural = names.get("plural") or ""

    # metadata
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        out.append(_required("metadata.name", "name or generateName is required"))
    elif name:
        msgs = _is_dns1123_subdomain(name)
        if name != f"{plural}.{group}":
            msgs.append('must be spec.names.plural+"."+spec.group')
        out.extend(_invalid("metadata.name", name, m) for m in msgs)

    # group and scope
    if not group:
        out.append(_required("spec.group"))
    elif errs := _is_dns1123_subdomain(group):
        out.append(_invalid("spec.group", group, ",".join(errs)))
    elif len(group.split(".")) < 2:
        out.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope") or ""
    if not scope:
        out.append(_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        out.append(_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))

    # versions
    versions = spec.get("versions") if isinstance(spec.get("versions"), list) else []
    storage = 0
    seen: set[str] = set()
    unique = True
    for i, ver in enumerate(versions):
        vpath = f"spec.versions[{i}]"
        if not isinstance(ver, dict):
            out.append(_invalid(vpath, ver, "must be an object"))
            continue
        vname = ver.get("name") or ""
        if ver.get("storage"):
            storage += 1
        if vname in seen:
            unique = False
        seen.add(vname)
        if errs := _is_dns1035_label(vname):
            out.append(_invalid(f"{vpath}.name", vname, ",".join(errs)))
        subresources = ver.get("subresources") if isinstance(ver.get("subresources"), dict) else {}
        schema = (ver.get("schema") or {}).get("openAPIV3Schema") if isinstance(ver.get("schema"), dict) else None
        if not isinstance(schema, dict):
            out.append(_required(f"{vpath}.schema.openAPIV3Schema"))
        else:
            out.extend(_validate_crd_schema(schema, f"{vpath}.schema.openAPIV3Schema",
                                            status_enabled="status" in subresources))
        for j, col in enumerate(ver.get("additionalPrinterColumns") or []):
            out.extend(_validate_printer_column(col, f"{vpath}.additionalPrinterColumns[{j}]"))
    if versions and not unique:
        out.append(_invalid("spec.versions", versions, "must contain unique version names"))
    if storage != 1:
        out.append(_invalid("spec.versions", versions, "must have exactly one version marked as storage version"))

    # names
    if not plural:
        out.append(_required("spec.names.plural"))
    if not names.get("singular"):
        out.append(_required("spec.names.singular"))
    if not kind:
        out.append(_required("spec.names.kind"))
    if not names.get("listKind"):
        out.append(_required("spec.names.listKind"))
    for field_name in ("plural", "singular"):
        v = names.get(field_name) or ""
        if v and (errs := _is_dns1035_label(v)):
            out.append(_invalid(f"spec.names.{field_name}", v, ",".join(errs)))
    for field_name in ("kind", "listKind"):
        v = names.get(field_name) or ""
        if v and (errs := _is_dns1035_label(v.lower())):
            out.append(_invalid(f"spec.names.{field_name}", v,
                                "may have mixed case, but should otherwise match: " + ",".join(errs)))
    for i, short in enumerate(names.get("shortNames") or []):
        if errs := _is_dns1035_label(str(short)):
            out.append(_invalid(f"spec.names.shortNames[{i}]", short, ",".join(errs)))
    if kind and kind == names.get("listKind"):
        out.append(_invalid("spec.names.listKind", names["listKind"], "kind and listKind may not be the same"))
    for i, cat in enumerate(names.get("categories") or []):
        if errs := _is_dns1035_label(str(cat)):
            out.append(_invalid(f"spec.names.categories[{i}]", cat, ",".join(errs)))
    return out


_ALLOWED_AT_ROOT_WITH_STATUS = {"description", "type", "required", "properties", "x-kubernetes-validations",
                                "x-kubernetes-preserve-unknown-fields", "$schema", "title", "example",
                                "externalDocs", "id"}


def _validate_crd_schema(schema: Schema, path: str, *, status_enabled: bool) -> list[Cause]:
    out: list[Cause] = []
    if status_enabled:
        if "type" in schema and schema.get("type") != "object":
            out.append(_invalid(f"{path}.type", schema.get("type"),
                                'only "object" is allowed as the type at the root of the schema if the status '
                                "subresource is enabled"))
        elif any(k not in _ALLOWED_AT_ROOT_WITH_STATUS for k in schema):
            out.append(_invalid(path, schema,
                                "only [description type required properties x-kubernetes-validations "
                                "x-kubernetes-preserve-unknown-fields] fields are allowed at the root of the "
                                "schema if the status subresource is enabled"))
    if schema.get("nullable") is True:
        out.append(_forbidden(f"{path}.nullable", "nullable cannot be true at the root"))
    _structural(schema, path, "root", out)
    return out


def _structural(s: Any, path: str, level: str, out: list[Cause]) -> None:
    if not isinstance(s, dict):
        return
    typ = s.get("type")
    if typ is not None and (not isinstance(typ, str) or (typ and typ not in _VALID_TYPES)):
        out.append(_not_supported(f"{path}.type", typ, _VALID_TYPES))
        typ = None
    if s.get("uniqueItems") is True:
        out.append(_forbidden(f"{path}.uniqueItems",
                              "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
    ap = s.get("additionalProperties")
    if props and ap is not None and ap is not False:
        out.append(_forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
    if typ == "array" and s.get("items") is None:
        out.append(_required(f"{path}.items", "must be specified"))
    if level == "root" and ap is not None:
        out.append(_forbidden(f"{path}.additionalProperties", "must not be used at the root"))
    embedded = s.get(_EMBEDDED) is True
    if embedded and typ != "object":
        if not typ:
            out.append(_required(f"{path}.type", "must be object if x-kubernetes-embedded-resource is true"))
        else:
            out.append(_invalid(f"{path}.type", typ, "must be object if x-kubernetes-embedded-resource is true"))
    elif not typ and s.get(_INT_OR_STRING) is not True and s.get(_PRESERVE) is not True:
        detail = {"root": "must not be empty at the root", "item": "must not be empty for specified array items",
                  "field": "must not be empty for specified object fields"}[level]
        out.append(_required(f"{path}.type", detail))
    if level == "root" and typ and typ != "object":
        out.append(_invalid(f"{path}.type", typ, "must be object at the root"))
    if s.get(_PRESERVE) is False:
        out.append(_invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"))
    for k, v in props.items():
        _structural(v, f"{path}.properties[{k}]", "field", out)
    if isinstance(s.get("items"), dict):
        _structural(s["items"], f"{path}.items", "item", out)
    if isinstance(ap, dict):
        _structural(ap, f"{path}.additionalProperties", "field", out)


def _validate_printer_column(col: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    if not isinstance(col, dict):
        return [_invalid(path, col, "must be an object")]
    if not col.get("name"):
        out.append(_required(f"{path}.name"))
    ctype = col.get("type") or ""
    if not ctype:
        out.append(_required(f"{path}.type", f"must be one of {','.join(_PRINTER_COLUMN_TYPES)}"))
    elif ctype not in _PRINTER_COLUMN_TYPES:
        out.append(_invalid(f"{path}.type", ctype, f"must be one of {','.join(_PRINTER_COLUMN_TYPES)}"))
    fmt = col.get("format") or ""
    if fmt and fmt not in _PRINTER_COLUMN_FORMATS:
        out.append(_invalid(f"{path}.format", fmt, f"must be one of {','.join(_PRINTER_COLUMN_FORMATS)}"))
    if not col.get("jsonPath"):
        out.append(_required(f"{path}.JSONPath"))
    return out
