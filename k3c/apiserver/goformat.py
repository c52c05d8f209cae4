"""Values rendered the way Go renders them, for messages that must read like kube-apiserver's.

kube-apiserver builds its error texts with fmt's `%q` and `%v` and with encoding/json; clients and tests
compare those texts, so the server renders values exactly as Go would. A leaf module: it imports
nothing from the rest of the server, so every part of it (schema, selectors, lifecycle) can use it.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

__all__ = ["escape_unprintable", "quote", "format_number", "marshal_json"]

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
            '"': '\\"', "\\": "\\\\"}


def quote(s: str) -> str:
    """strconv.Quote (fmt's `%q`): printable characters kept, the rest escaped as Go escapes them."""
    return '"' + "".join(_quote_char(ch) for ch in s) + '"'


def escape_unprintable(s: str) -> str:
    """``s`` with what `%q` would escape escaped, except quotes and backslashes (for whole messages)."""
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _quote_char(ch) for ch in s)


def _quote_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def format_number(v: bool | int | float) -> str:
    """fmt's `%v` of a bool, an int64 or a float64."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return _format_float(float(v))


def _format_float(f: float) -> str:
    """`%v` of a float64: strconv 'g' with the shortest representation, %e from exponent 6 on."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digit_tuple, exp = Decimal(repr(f)).as_tuple()
    digits = "".join(str(d) for d in digit_tuple).rstrip("0") or "0"
    point = len(digit_tuple) + int(exp)  # the value is 0.<digits> * 10**point
    x = point - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{neg}{digits}{'0' * (point - len(digits))}"
    return f"{neg}{digits[:point]}.{digits[point:]}"


def marshal_json(v: Any) -> str:
    """encoding/json.Marshal: sorted keys, compact, floats without '.0', HTML characters escaped."""
    s = _json(v)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return _json_float(x)
    if isinstance(x, dict):
        return "{" + ",".join(f"{_json_str(str(k))}:{_json(x[k])}" for k in sorted(x)) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(_json(i) for i in x) + "]"
    return _json_str(str(x))


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _json_float(x: float) -> str:
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    s = repr(x)
    a = abs(x)
    if (a < 1e-6 or a >= 1e21) and "e" in s:
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", s)
    return s
