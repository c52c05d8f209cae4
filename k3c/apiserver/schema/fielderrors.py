"""apimachinery's field errors (k8s.io/apimachinery/pkg/util/validation/field) as `Cause`s.

The `message` of a Cause is field.Error's ErrorBody(): the error without its field path, which the
Invalid status puts in front (`spec.replicas: Invalid value: ...`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from k3c.apiserver import goformat
from k3c.apiserver.errors import Cause

__all__ = ["bad_value", "invalid", "type_invalid", "required", "forbidden", "not_supported", "too_long",
           "too_many", "duplicate"]


def bad_value(v: Any) -> str:
    """How ErrorBody renders a bad value: `%v` for numbers and booleans, `%q` for strings, else JSON."""
    if isinstance(v, (bool, int, float)):
        return goformat.format_number(v)
    if isinstance(v, str):
        return goformat.quote(v)
    return goformat.marshal_json(v)


def invalid(fld: str, value: Any, detail: str) -> Cause:
    body = f"Invalid value: {bad_value(value)}"
    return Cause(fld, "FieldValueInvalid", f"{body}: {detail}" if detail else body)


def type_invalid(fld: str, value: Any, detail: str) -> Cause:
    return Cause(fld, "FieldValueTypeInvalid", f"Invalid value: {bad_value(value)}: {detail}")


def required(fld: str, detail: str = "") -> Cause:
    return Cause(fld, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def forbidden(fld: str, detail: str) -> Cause:
    return Cause(fld, "FieldValueForbidden", "Forbidden" + (f": {detail}" if detail else ""))


def not_supported(fld: str, value: Any, supported: Iterable[str]) -> Cause:
    vals = ", ".join(goformat.quote(s) for s in supported)
    msg = f"Unsupported value: {bad_value(value)}"
    if vals:
        msg += f": supported values: {vals}"
    return Cause(fld, "FieldValueNotSupported", msg)


def too_long(fld: str, max_len: int) -> Cause:
    if max_len >= 0:
        return Cause(fld, "FieldValueTooLong",
                     f"Too long: may not be more than {max_len} {'byte' if max_len == 1 else 'bytes'}")
    return Cause(fld, "FieldValueTooLong", "Too long: value is too long")


def too_many(fld: str, actual: int, max_items: int) -> Cause:
    detail = (f"must have at most {max_items} {'item' if max_items == 1 else 'items'}" if max_items >= 0
              else "has too many items")
    return Cause(fld, "FieldValueTooMany", f"Too many: {actual}: {detail}")


def duplicate(fld: str, value: Any) -> Cause:
    return Cause(fld, "FieldValueDuplicate", f"Duplicate value: {bad_value(value)}")
