"""Label and field selectors, parsed and matched the way kube-apiserver does.

Why this exists: `?labelSelector=` and `?fieldSelector=` on list/watch/deletecollection must select
exactly what a real cluster selects and reject exactly what it rejects, with the same wording, because
kubectl, client-go informers and kopf rely on both. The grammar and checks follow
k8s.io/apimachinery pkg/labels/selector.go (tokenizer + recursive-descent parser, label key/value
validation) and pkg/fields/selector.go (comma-split terms, `\\` escapes, no whitespace trimming);
`object_fields` / `supported_field_labels` follow the per-kind field sets and field-label conversions of
kubernetes pkg/registry/core/* and pkg/apis/core/v1/conversion.go.

Parse errors raise ValueError with kube-apiserver's message; the HTTP layer answers 400 BadRequest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k3c.apiserver.goformat import marshal_json, quote

# Operators, spelled like k8s.io/apimachinery/pkg/selection.
EXISTS = "exists"
DOES_NOT_EXIST = "!"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]

# ------------------------------------------------------------------------------ label key/value checks

_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_VALUE_FMT = f"({_NAME_FMT})?"
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_INT64 = re.compile(r"[+-]?[0-9]+")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    eg = "".join(f"{' or ' if i else ''}'{e}', " for i, e in enumerate(examples))
    return f"{msg} (e.g. {eg}regex used for validation is '{fmt}')"


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def label_key_errors(key: str) -> list[str]:
    """Problems with a label key (optional DNS-subdomain prefix, '/', name); empty when valid."""
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a valid label key "
            + _regex_error(_NAME_MSG, _NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        errs += ["prefix part " + e for e in _subdomain_errors(parts[0])]
    if not name:
        errs.append("name part must be non-empty")
    elif _nbytes(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_NAME_FMT, name):
        errs.append("name part " + _regex_error(_NAME_MSG, _NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def _subdomain_errors(prefix: str) -> list[str]:
    if not prefix:
        return ["must be non-empty"]
    errs = []
    if _nbytes(prefix) > 253:
        errs.append("must be no more than 253 bytes")
    if not re.fullmatch(_SUBDOMAIN_FMT, prefix):
        errs.append(_regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Problems with a label value; empty when valid."""
    errs = []
    if _nbytes(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not re.fullmatch(_VALUE_FMT, value):
        errs.append(_regex_error(_VALUE_MSG, _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _invalid(path: str, value: Any, detail: str) -> str:
    """A field.Invalid error as text; a nil path prints as `<nil>` upstream."""
    if isinstance(value, str):
        shown = quote(value)
    else:  # a []string; upstream's is nil (JSON null) whenever it is empty
        shown = marshal_json(value or None)
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errs: list[str]) -> str:
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _parse_int64(s: str) -> int | None:
    if not _INT64.fullmatch(s):
        return None
    n = int(s)
    return n if -(2**63) <= n < 2**63 else None


# ------------------------------------------------------------------------------------- label selectors


@dataclass(frozen=True)
class Requirement:
    """One label requirement: `key <operator> values`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, present = self.operator, self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        if op in (GREATER_THAN, LESS_THAN) and present and len(self.values) == 1:
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        vals = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({vals})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{vals}"


@dataclass(frozen=True)
class LabelSelector:
    """AND of requirements. No requirements selects everything; `nothing=True` selects nothing."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def new_requirement(key: str, operator: str, values: list[str], path: str = "") -> Requirement:
    """Build a validated Requirement (apimachinery's NewRequirement); ValueError lists every problem."""
    sub = f"{path}." if path else ""
    values_path = sub + "values"
    errs: list[str] = []
    if key_errs := label_key_errors(key):
        errs.append(_invalid(sub + "key", key, "; ".join(key_errs)))
    errs += _operator_errors(operator, values, values_path, sub)
    for i, v in enumerate(values):
        if v_errs := label_value_errors(v):
            errs.append(_invalid(f"{values_path}[{i}][{key}]", v, "; ".join(v_errs)))
    if errs:
        raise ValueError(_aggregate(errs))
    return Requirement(key, operator, tuple(values))


_EMPTY_SET = "for 'in', 'notin' operators, values set can't be empty"
_ONE_VALUE = "exact-match compatibility requires one single value"
_NO_VALUES = "values set must be empty for exists and does not exist"
_ONE_INT = "for 'Gt', 'Lt' operators, exactly one value is required"
_NOT_INT = "for 'Gt', 'Lt' operators, the value must be an integer"


def _operator_errors(op: str, values: list[str], values_path: str, sub: str) -> list[str]:
    count_ok, count_msg = {
        IN: (bool(values), _EMPTY_SET),
        NOT_IN: (bool(values), _EMPTY_SET),
        EQUALS: (len(values) == 1, _ONE_VALUE),
        DOUBLE_EQUALS: (len(values) == 1, _ONE_VALUE),
        NOT_EQUALS: (len(values) == 1, _ONE_VALUE),
        EXISTS: (not values, _NO_VALUES),
        DOES_NOT_EXIST: (not values, _NO_VALUES),
        GREATER_THAN: (len(values) == 1, _ONE_INT),
        LESS_THAN: (len(values) == 1, _ONE_INT),
    }.get(op, (False, ""))
    if not count_msg:
        supported = ", ".join(quote(o) for o in [*_BINARY, EXISTS, DOES_NOT_EXIST])
        return [f"{sub}operator: Unsupported value: {quote(op)}: supported values: {supported}"]
    errs = [] if count_ok else [_invalid(values_path, values, count_msg)]
    if op in (GREATER_THAN, LESS_THAN):
        errs += [
            _invalid(f"{values_path}[{i}]", v, _NOT_INT)
            for i, v in enumerate(values)
            if _parse_int64(v) is None
        ]
    return errs


# Tokens of the label selector lexer.
_END, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN, _ERROR = range(14)
_SYMBOLS = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN, "<": _LT,
            "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}  # fmt: skip
_SPECIAL = set("=!(),><")
_SPACE = set(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    """Tokenize like apimachinery: greedy operator symbols, identifiers up to a symbol or blank."""
    tokens: list[tuple[int, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _SPACE:
            i += 1
        if i >= n or s[i] == "\0":
            tokens.append((_END, ""))
            return tokens
        if s[i] in _SPECIAL:
            tok, i = _lex_symbol(s, i)
        else:
            j = i
            while j < n and s[j] not in _SPECIAL and s[j] not in _SPACE and s[j] != "\0":
                j += 1
            word = s[i:j]
            tok, i = (_SYMBOLS.get(word, _IDENT), word), j
        tokens.append(tok)


def _lex_symbol(s: str, i: int) -> tuple[tuple[int, str], int]:
    buf, last, end = "", None, i
    while i < len(s) and s[i] in _SPECIAL:
        buf += s[i]
        if buf in _SYMBOLS:
            last, end = (_SYMBOLS[buf], buf), i + 1
        elif last is not None:
            break
        i += 1
    if last is None:
        return (_ERROR, f"error expected: keyword found '{buf}'"), i
    return last, end


class _LabelParser:
    def __init__(self, s: str):
        self.items = _lex(s)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[int, str]:
        return self._as(self.items[self.pos], values)

    def take(self, values: bool = True) -> tuple[int, str]:
        self.pos += 1
        return self._as(self.items[self.pos - 1], values)

    @staticmethod
    def _as(item: tuple[int, str], values: bool) -> tuple[int, str]:
        # In value position the keywords `in` / `notin` are ordinary identifiers.
        if values and item[0] in (_IN, _NOTIN):
            return _IDENT, item[1]
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok == _END:
                return reqs
            if tok not in (_IDENT, _NOT):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except ValueError as e:
                raise ValueError(f"unable to parse requirement: {e}") from None
            tok, lit = self.take()
            if tok == _END:
                return reqs
            if tok != _COMMA:
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.peek()
            if tok not in (_IDENT, _NOT):
                raise ValueError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        key, op = self.key_and_unary()
        if op is not None:
            return new_requirement(key, op, [])
        op = self.operator()
        values = self.value_set() if op in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, op, sorted(values))

    def key_and_unary(self) -> tuple[str, str | None]:
        tok, lit = self.take()
        negated = tok == _NOT
        if negated:
            tok, lit = self.take()
        if tok != _IDENT:
            raise ValueError(f"found '{lit}', expected: identifier")
        if errs := label_key_errors(lit):
            raise ValueError(_invalid("<nil>", lit, "; ".join(errs)))
        if negated:  # `!key=v` parses as `!key`, then fails on the unexpected `=`
            return lit, DOES_NOT_EXIST
        if self.peek()[0] in (_END, _COMMA):
            return lit, EXISTS
        return lit, None

    def operator(self) -> str:
        tok, lit = self.take(values=False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
               _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}  # fmt: skip
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY)}")
        return ops[tok]

    def value_set(self) -> set[str]:
        tok, lit = self.take()
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == _CLOSE:
            self.take()
            return {""}
        if tok not in (_IDENT, _COMMA):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self.identifiers()
        if self.take()[0] != _CLOSE:
            raise ValueError(f"found '{lit}', expected: ')'")
        return values

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == _IDENT:
                values.add(lit)
                nxt, nlit = self.peek()
                if nxt == _CLOSE:
                    return values
                if nxt != _COMMA:
                    raise ValueError(f"found '{nlit}', expected: ',' or ')'")
            elif tok == _COMMA:
                # Empty slots around commas are "" values: "(,a)", "(a,,b)", "(a,)".
                nxt = self.peek()[0]
                if not values or nxt in (_CLOSE, _COMMA):
                    values.add("")
                if nxt == _CLOSE:
                    return values
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.peek()[0] in (_END, _COMMA):
            return {""}
        tok, lit = self.take()
        if tok != _IDENT:
            raise ValueError(f"found '{lit}', expected: identifier")
        return {lit}


def parse_label_selector(s: str) -> LabelSelector:
    """Parse `?labelSelector=`; the empty string selects everything. Raises ValueError like kube."""
    reqs = _LabelParser(s).parse()
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def from_label_selector_dict(d: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector ({matchLabels, matchExpressions}) as a selector.

    None selects nothing and {} selects everything, as LabelSelectorAsSelector does.
    """
    if d is None:
        return LabelSelector(nothing=True)
    match_labels = d.get("matchLabels") or {}
    expressions = d.get("matchExpressions") or []
    reqs = [new_requirement(k, EQUALS, [_label_text(v)]) for k, v in match_labels.items()]
    ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    for expr in expressions:
        op = expr.get("operator")
        if op not in ops:
            raise ValueError(f"{quote(str(op or ''))} is not a valid label selector operator")
        values = [_label_text(v) for v in expr.get("values") or []]
        reqs.append(new_requirement(_label_text(expr.get("key", "")), ops[op], values))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def _label_text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"label selector keys and values must be strings, got {json.dumps(v)}")
    return v


# ------------------------------------------------------------------------------------- field selectors


@dataclass(frozen=True)
class FieldRequirement:
    """One field term: `field = value` or `field != value` (`==` is stored as `=`)."""

    field: str
    operator: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have == self.value if self.operator == EQUALS else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """AND of field terms; no terms selects everything. A missing field reads as ""."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(s: str) -> str:
    out: list[str] = []
    chars = iter(s)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise ValueError("invalid field selector: invalid escape sequence: \\")
            if nxt not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{nxt}")
            out.append(nxt)
        elif c in ",=":
            # Go prints the rune with %v, i.e. as its code point.
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(s):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in (NOT_EQUALS, DOUBLE_EQUALS, EQUALS):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def parse_field_selector(s: str) -> FieldSelector:
    """Parse `?fieldSelector=`: comma-separated `f=v`, `f==v`, `f!=v`; `\\`, `\\,`, `\\=` escape.

    Like kube, nothing is trimmed and terms with both sides empty (e.g. "=") are dropped.
    """
    reqs: list[FieldRequirement] = []
    for term in sorted(_split_terms(s)) if s else []:
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise ValueError(f"invalid selector: '{s}'; can't understand '{term}'")
        field, op, raw = split
        value = _unescape_field_value(raw)
        if field or value:
            reqs.append(FieldRequirement(field, NOT_EQUALS if op == NOT_EQUALS else EQUALS, value))
    return FieldSelector(tuple(reqs))


# ----------------------------------------------------------------------------------- per-kind fields

_META = ("metadata.name", "metadata.namespace")
_EVENT = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_POD = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")
_CORE_FIELDS: dict[str, frozenset[str]] = {
    "Namespace": frozenset({"metadata.name", "status.phase"}),
    "Secret": frozenset({*_META, "type"}),
    "Event": frozenset({*_META, *_EVENT}),
    "Pod": frozenset({*_META, *_POD}),
    "Service": frozenset({*_META, "spec.clusterIP", "spec.type"}),
}


def supported_field_labels(kind: str, api_version: str = "v1") -> frozenset[str]:
    """Field labels kube-apiserver accepts in a field selector for this kind (anything else is a 400).

    Core (`v1`) Namespace, Secret, Event, Pod and Service have extra fields; every other kind, custom resources
    included, supports metadata.name and metadata.namespace. Note Namespace does not accept
    metadata.namespace.
    """
    if api_version == "v1" and kind in _CORE_FIELDS:
        return _CORE_FIELDS[kind]
    return frozenset(_META)


def check_field_selector(selector: FieldSelector, kind: str, api_version: str = "v1") -> None:
    """Raise ValueError(`field label not supported: X`) for the first unsupported field, as kube does."""
    supported = supported_field_labels(kind, api_version)
    for r in selector.requirements:
        if r.field not in supported:
            raise ValueError(f"field label not supported: {r.field}")


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _get(obj: Mapping[str, Any], *path: str) -> str:
    cur: Any = obj
    for p in path:
        cur = cur.get(p) if isinstance(cur, Mapping) else None
    return _text(cur)


def object_fields(obj: Mapping[str, Any], kind: str) -> dict[str, str]:
    """The field-selector values of `obj`: exactly the keys of `supported_field_labels`.

    The group comes from obj["apiVersion"] (missing means core v1). Values are taken as stored, with no
    defaulting: a Secret without `type` yields "", a Namespace without status.phase yields "".
    """
    api_version = _text(obj.get("apiVersion")) or "v1"
    labels = supported_field_labels(kind, api_version)
    fields = {
        "metadata.name": _get(obj, "metadata", "name"),
        "metadata.namespace": _get(obj, "metadata", "namespace"),
    }
    if api_version == "v1" and kind == "Namespace":
        fields["status.phase"] = _get(obj, "status", "phase")
    elif api_version == "v1" and kind == "Secret":
        fields["type"] = _get(obj, "type")
    elif api_version == "v1" and kind == "Event":
        fields.update(_event_fields(obj))
    elif api_version == "v1" and kind in ("Pod", "Service"):
        for label in labels - set(_META):
            fields[label] = _get(obj, *label.split("."))
        if kind == "Pod":
            fields["spec.hostNetwork"] = "true" if (obj.get("spec") or {}).get("hostNetwork") is True else "false"
    return {k: v for k, v in fields.items() if k in labels}


def _event_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    fields = {f"involvedObject.{k}": _get(obj, "involvedObject", k)
              for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}  # fmt: skip
    reporting = _get(obj, "reportingComponent")  # core/v1 name of ReportingController
    fields["reason"] = _get(obj, "reason")
    fields["reportingComponent"] = reporting
    fields["source"] = _get(obj, "source", "component") or reporting
    fields["type"] = _get(obj, "type")
    return fields
