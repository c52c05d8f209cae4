"""A CRD's OpenAPI v3 schema as a jsonschema validator with kube-openapi's semantics.

jsonschema's Draft 4 keywords are close to OpenAPI v3's, but kube-apiserver validates custom resources
with kube-openapi, whose semantics differ in places: `nullable`, `x-kubernetes-int-or-string`, integral
floats accepted as integers, int64 bounds, the order of the string checks, the formats it checks, and
RE2 for `pattern` (never Python's `re` on a CRD author's pattern). Each keyword here yields `KubeError`s
that carry what `validation` needs to word them as kube-apiserver does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, TypeGuard

from jsonschema import Draft4Validator, ValidationError, validators

from . import patterns
from .formats import valid_string_format
from .structural import INT_OR_STRING, Schema, properties

__all__ = ["KubeError", "Validator"]


class KubeError(ValidationError):
    """A ValidationError carrying what is needed to word it like kube-apiserver once its path is known:
    `k8s` is (kind, *arguments)."""

    k8s: tuple[Any, ...] = ()


def _kerr(kind: str, *args: Any, path: Iterable[str | int] = (),
          context: Iterable[ValidationError] = ()) -> KubeError:
    e = KubeError(kind, path=path, context=list(context))
    e.k8s = (kind, *args)
    return e


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"))


def _json_type(v: Any) -> str:
    """The JSON type name of a decoded value (bool before int: a bool is an int in Python)."""
    if v is None:
        return "null"
    return next((name for t, name in _JSON_TYPES if isinstance(v, t)), "object")


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _schema_types(s: Schema) -> list[str]:
    if s.get(INT_OR_STRING) is True:
        return ["integer", "string"]
    t = s.get("type")
    if not t:
        return []
    return [t] if isinstance(t, str) else [str(i) for i in t]


def _type_errors(instance: Any, s: Schema) -> Iterator[KubeError]:
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


def _kw_type(validator: Any, _types: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    yield from _type_errors(instance, schema)


def _kw_int_or_string(validator: Any, value: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if value is True and "type" not in schema:
        yield from _type_errors(instance, schema)


def _kw_required(validator: Any, required: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if not isinstance(instance, dict) or not isinstance(required, list):
        return
    for k in required:
        if k not in instance:
            yield _kerr("required", path=[k])


def _kw_additional_properties(validator: Any, ap: Any, instance: Any,
                              schema: Schema) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    props = properties(schema)
    pattern_props = schema.get("patternProperties") or {}
    extras = [k for k in instance if k not in props and not any(_matches(p, k) for p in pattern_props)]
    if ap is False:
        for k in extras:
            yield _kerr("forbiddenProperty", k)
    elif isinstance(ap, dict):
        for k in extras:
            yield from validator.descend(instance[k], ap, path=k)


def _kw_pattern_properties(validator: Any, pattern_props: Any, instance: Any,
                           schema: Schema) -> Iterator[ValidationError]:
    if not isinstance(instance, dict) or not isinstance(pattern_props, dict):
        return
    for pattern, sub in pattern_props.items():
        for k, v in instance.items():
            if _matches(pattern, k):
                yield from validator.descend(v, sub, path=k, schema_path=pattern)


def _matches(pattern: Any, s: str) -> bool:
    """A pattern that does not compile matches nothing."""
    try:
        return isinstance(pattern, str) and patterns.search(pattern, s)
    except patterns.InvalidPattern:
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
            if not patterns.search(pat, instance):
                return "pattern"
        except patterns.InvalidPattern:
            return "pattern"
    return None


def _kw_max_length(validator: Any, mx: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "maxLength":
        yield _kerr("maxLength", int(mx))


def _kw_min_length(validator: Any, mn: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "minLength":
        yield _kerr("minLength", int(mn))


def _kw_pattern(validator: Any, pattern: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if isinstance(instance, str) and _str_len_errors(instance, schema) == "pattern":
        error = patterns.compile_error(pattern)
        yield _kerr("pattern", pattern if error is None else f"{pattern}, but pattern is invalid: {error}")


def _bound(instance: Any, bound: Any) -> tuple[Any, Any]:
    """Values compared the way kube-openapi does: int64 data against int64(bound), else float64."""
    if isinstance(instance, int):
        return instance, math.trunc(bound)
    return float(instance), float(bound)


def _kw_maximum(validator: Any, mx: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    yield from _bound_errors("maximum", instance, mx, schema.get("exclusiveMaximum") is True)


def _kw_minimum(validator: Any, mn: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    yield from _bound_errors("minimum", instance, mn, schema.get("exclusiveMinimum") is True)


def _bound_errors(kind: str, instance: Any, bound: Any, exclusive: bool) -> Iterator[KubeError]:
    if not _is_number(instance) or not _is_number(bound):
        return
    v, b = _bound(instance, bound)
    beyond = v > b if kind == "maximum" else v < b
    if beyond or (exclusive and v == b):
        yield _kerr(kind, b, exclusive)


def _kw_multiple_of(validator: Any, factor: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if not _is_number(instance) or not _is_number(factor):
        return
    if isinstance(instance, int) and float(factor).is_integer():
        n = int(factor)
        if n <= 0:
            yield _kerr("multipleOfPositive", n)
        elif instance % n != 0:
            yield _kerr("multipleOf", n)
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
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _kw_enum(validator: Any, enums: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if isinstance(enums, list) and enums and not any(_json_equal(instance, e) for e in enums):
        yield _kerr("enum")


def _kw_any_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    branches = _branch_errors(validator, instance, subschemas)
    if all(branches):
        yield _kerr("anyOf", context=_best(branches))


def _kw_one_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    branches = _branch_errors(validator, instance, subschemas)
    failing = [errs for errs in branches if errs]
    valid = len(branches) - len(failing)
    if valid != 1:
        yield _kerr("oneOf", valid, context=_best(failing) if valid == 0 else [])


def _kw_all_of(validator: Any, subschemas: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    branches = _branch_errors(validator, instance, subschemas)
    if any(branches):
        yield _kerr("allOf", all(branches), context=[e for errs in branches for e in errs])


def _branch_errors(validator: Any, instance: Any, subschemas: Any) -> list[list[ValidationError]]:
    """The failures of `instance` against each alternative of a junctor (empty where it validates)."""
    return [list(validator.descend(instance, sub, schema_path=i)) for i, sub in enumerate(subschemas)]


def _kw_not(validator: Any, not_schema: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
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


def _kw_format(validator: Any, fmt: Any, instance: Any, schema: Schema) -> Iterator[KubeError]:
    if not isinstance(fmt, str) or not fmt:
        return
    types = schema.get("type")
    stype = types if isinstance(types, str) else ""
    if isinstance(instance, str):
        if stype not in ("", "string"):
            return
        if valid_string_format(fmt, instance) is False:
            yield _kerr("format", fmt)
    elif _is_number(instance):
        # numberValidator: the value must fit the declared format's range.
        if stype == "integer" and fmt == "int32" and not (-(2**31) <= instance <= 2**31 - 1):
            yield _kerr("range", "integer", fmt)
        elif stype == "number" and fmt == "float" and abs(float(instance)) > 3.4028234663852886e38:
            yield _kerr("range", "number", fmt)


# jsonschema's stubs leave `extend` unannotated.
Validator: type[Draft4Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft4Validator,
    validators={
        "type": _kw_type,
        INT_OR_STRING: _kw_int_or_string,
        "required": _kw_required,
        "additionalProperties": _kw_additional_properties,
        "maxLength": _kw_max_length,
        "minLength": _kw_min_length,
        "pattern": _kw_pattern,  # RE2, like every pattern below: Python's re never runs a CRD's pattern
        "patternProperties": _kw_pattern_properties,
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
