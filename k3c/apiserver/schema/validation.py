"""Validation of custom resources against their CRD schema, worded as kube-apiserver words it.

Why the translation: clients and people read kube-apiserver's messages (kube-openapi's wording wrapped
into apimachinery field errors, `spec.replicas: Invalid value: "x": spec.replicas in body must be of type
integer: "string"`); jsonschema finds the same problems but says them its own way. After the schema, the
custom resource strategy's own checks run in one walk: embedded resources' TypeMeta and list-type
uniqueness.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import ValidationError

from k3c.apiserver.errors import Cause
from k3c.apiserver.goformat import format_number, marshal_json, quote

from .embedded import embedded_type_meta_errors
from .fielderrors import invalid, not_supported, required, too_long, too_many, type_invalid
from .keywords import Validator
from .listtypes import list_type_errors
from .structural import Node, Schema, walk

__all__ = ["validate"]


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
    causes: list[Cause] = []
    _translate(Validator(schema).iter_errors(obj), path, causes)
    embedded: list[Cause] = []
    lists: list[Cause] = []

    def check(node: Node) -> bool:
        if node.schema is None:
            return False
        embedded.extend(embedded_type_meta_errors(node, path))
        lists.extend(list_type_errors(node, path))
        return True

    walk(schema, check, obj)
    return list(dict.fromkeys(causes + embedded + lists))


def _path_str(path: Iterable[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out = f"{out}.{p}" if out else str(p)
    return out


def _translate(errors: Iterable[ValidationError], prefix: str, out: list[Cause]) -> None:
    """kube-openapi's results as field causes; a junctor reports itself around its branches' failures."""
    root_field = prefix or "<nil>"
    for e in errors:
        name = _path_str(e.absolute_path)
        kind, args = _kind_and_args(e)
        if kind == "anyOf":
            out.append(invalid(root_field, "", f"{quote(name)} must validate at least one schema (anyOf)"))
            _translate(e.context, prefix, out)
        elif kind == "oneOf":
            found = "Found none valid" if args[0] == 0 else f"Found {args[0]} valid alternatives"
            out.append(invalid(root_field, "",
                               f"{quote(name)} must validate one and only one schema (oneOf). {found}"))
            _translate(e.context, prefix, out)
        elif kind == "allOf":
            _translate(e.context, prefix, out)
            suffix = ". None validated" if args[0] else ""
            out.append(invalid(root_field, "",
                               f"{quote(name)} must validate all the schemas (allOf){suffix}"))
        else:
            fld = f"{prefix}.{name}" if prefix and name else (name or root_field)
            out.append(_cause(e, kind, args, fld, name, root_field))


def _kind_and_args(e: ValidationError) -> tuple[str, tuple[Any, ...]]:
    k8s: tuple[Any, ...] = getattr(e, "k8s", ()) or (e.validator,)
    return str(k8s[0]), k8s[1:]


def _cause(e: ValidationError, kind: str, args: tuple[Any, ...], fld: str, name: str,
           root_field: str) -> Cause:
    """One failure of a non-junctor keyword, worded like kube-openapi."""
    inst: Any = e.instance
    limit: Any = e.validator_value
    if kind == "type":
        expected, actual = args
        return type_invalid(fld, actual, f"{name} in body must be of type {expected}: {quote(actual)}")
    if kind == "required":
        return required(fld)
    if kind == "enum":
        return not_supported(fld, inst, [v if isinstance(v, str) else marshal_json(v) for v in limit])
    if kind == "maxLength":
        return too_long(fld, args[0])
    if kind == "minLength":
        return invalid(fld, inst, f"{name} in body should be at least {args[0]} chars long")
    if kind == "pattern":
        return invalid(fld, inst, f"{name} in body should match '{args[0]}'")
    if kind in ("maximum", "minimum"):
        bound, excl = args
        rel = ("less than" if kind == "maximum" else "greater than") + ("" if excl else " or equal to")
        return invalid(fld, inst, f"{name} in body should be {rel} {format_number(bound)}")
    if kind == "multipleOf":
        return invalid(fld, inst, f"{name} in body should be a multiple of {format_number(args[0])}")
    if kind == "multipleOfPositive":
        return invalid(fld, args[0], f"factor MultipleOf declared for {name} must be positive: "
                                     f"{format_number(args[0])}")
    if kind in ("maxItems", "maxProperties"):
        return too_many(fld, len(inst), int(limit))
    if kind in ("minItems", "minProperties"):
        what = "items" if kind == "minItems" else "properties"
        return invalid(fld, len(inst), f"{name} in body should have at least {int(limit)} {what}")
    if kind == "uniqueItems":
        return invalid(fld, "", f"{name} in body shouldn't contain duplicates")
    if kind == "forbiddenProperty":
        return invalid(fld, args[0], f"{name}.{args[0]} in body is a forbidden property")
    if kind == "format":
        return type_invalid(fld, inst, f"{name} in body must be of type {args[0]}: {quote(inst)}")
    if kind == "range":
        typ, fmt = args
        return invalid(root_field, "", f"Checked value must be of type {typ} with format {fmt} in {name}")
    if kind == "not":
        return invalid(root_field, "", f"{quote(name)} must not validate the schema (not)")
    if kind == "dependency":
        return invalid(root_field, "", f"{quote(name)} has a dependency on {args[0]}")
    return invalid(fld, inst if inst is not None else "", e.message)
