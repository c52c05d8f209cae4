"""A small subset of Go's text/template, enough for docker's `--format` habits.

Why: scripts written for docker use `{{.Names}}`, `{{json .}}`, `{{.State.Status}}`,
`{{range .Mounts}}{{.Destination}} {{end}}` or `table {{.ID}}\t{{.Image}}`; k3c should accept them
unchanged. Supported: field chains, method calls with arguments (`.Label "k"`), pipelines (`|`),
the functions docker registers (json, join, lower, upper, title, split, truncate, pad, println) plus
Go's index/len/printf/eq/ne/not/and/or, and `if`/`with`/`range`/`else`/`end` blocks and `{{-`/`-}}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from k3c.cli.errors import CLIError

NO_VALUE = "<no value>"


class TemplateError(CLIError):
    """The template cannot be parsed or executed; the message reads like Go's, and docker exits 1 with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


# ---- values ----------------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """A value as JSON shows it: a ``to_json()`` method wins (docker's JSON tags are not always its Go
    field names, which templates use: events), then dataclass fields, dicts and lists."""
    if callable(getattr(value, "to_json", None)):
        return to_jsonable(value.to_json())
    if (names := _record_fields(value)) is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def go_str(value: Any) -> str:
    """Print a value as Go's fmt %v would (nil maps print as map[], missing keys as <no value>)."""
    if type(value) is str:  # most cells are, once per row and column: the checks below are for the rest
        return value
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(v)}" for k, v in sorted(value.items())) + "]"
    if (names := _record_fields(value)) is not None:
        return "{" + " ".join(go_str(getattr(value, name)) for name in names) + "}"
    return str(value)


def _record_fields(value: Any) -> list[str] | None:
    """The public fields of a dataclass instance (a row type of some command), else None.

    ``dataclasses`` is imported here only when such a value is shown, and then its module has imported it
    already: at start-up it would cost ~10 ms of every command (it brings ``inspect``)."""
    if isinstance(value, type) or not hasattr(type(value), "__dataclass_fields__"):
        return None
    import dataclasses

    return [f.name for f in dataclasses.fields(value) if not f.name.startswith("_")]


def truthy(value: Any) -> bool:
    return bool(value) and value != NO_VALUE


def _json(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def _truncate(value: Any, n: int) -> str:
    s = go_str(value)
    return s[:n]


def _printf(fmt: str, *args: Any) -> str:
    out = []
    args_iter = iter(args)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
            elif verb == "q":
                out.append(json.dumps(go_str(next(args_iter, "")), ensure_ascii=False))
            else:
                out.append(go_str(next(args_iter, "")))
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, (list, tuple)):
            try:
                value = value[int(key)]
            except (IndexError, ValueError):
                raise TemplateError(f"template: :1: error calling index: index out of range: {key}") from None
        else:
            raise TemplateError(f"template: :1: can't index item of type {type(value).__name__}")
    return value


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": lambda items, sep: sep.join(go_str(i) for i in items or []),
    "split": lambda s, sep: go_str(s).split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: go_str(s).title(),
    "truncate": _truncate,
    "pad": lambda s, before, after: " " * int(before) + go_str(s) + " " * int(after),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_str(x) for x in a),
    "printf": _printf,
    "index": _index,
    "len": lambda v: len(v or []),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not truthy(a),
    "and": lambda *a: next((x for x in a if not truthy(x)), a[-1] if a else None),
    "or": lambda *a: next((x for x in a if truthy(x)), a[-1] if a else None),
}

# ---- lexing ----------------------------------------------------------------------------------------
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<field>(?:\.[A-Za-z_]\w*)+|\.)
                        |(?P<var>\$[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\$)|(?P<ident>[A-Za-z_]\w*)|(?P<pipe>\|)
                        |(?P<lp>\()|(?P<rp>\))|(?P<assign>:=)|(?P<comma>,))""", re.X)


class Tok:
    """One token of an action. (The parse tree's nodes are plain classes: ``dataclasses`` would cost ~10 ms
    of every command's start.)"""

    __slots__ = ("kind", "text", "names")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text
        #: a field's path (``.A.B`` → ``["A", "B"]``), split once here rather than on every row rendered
        self.names: list[str] = text[1:].split(".") if kind == "field" and text != "." else []

    def __repr__(self) -> str:
        return f"Tok({self.kind!r}, {self.text!r})"


def _lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"template: :1: unexpected {src[pos:].strip()[:10]!r} in command")
        toks.append(Tok(m.lastgroup or "", m.group(m.lastgroup or 0)))
        pos = m.end()
    return toks


# ---- parse tree ------------------------------------------------------------------------------------
class Pipeline:
    __slots__ = ("commands", "decl")

    def __init__(self, commands: list[list[Any]], decl: list[str] | None = None) -> None:
        self.commands = commands  # each command: operands (Tok or nested Pipeline)
        self.decl = decl or []  # the variables it declares (`$x :=`, `$i, $v :=` in a range)


class Block:
    __slots__ = ("kind", "pipe", "body", "alt", "in_alt")

    def __init__(self, kind: str, pipe: Pipeline | None) -> None:
        self.kind = kind  # "if", "with", "range", "root"
        self.pipe = pipe
        self.body: list[Any] = []
        self.alt: list[Any] = []
        self.in_alt = False

    def add(self, node: Any) -> None:
        (self.alt if self.in_alt else self.body).append(node)


def _parse_pipeline(toks: list[Tok]) -> Pipeline:
    decl: list[str] = []
    if any(t.kind == "assign" for t in toks):
        i = next(i for i, t in enumerate(toks) if t.kind == "assign")
        decl = [t.text for t in toks[:i] if t.kind == "var"]
        toks = toks[i + 1:]
    commands: list[list[Any]] = [[]]
    stack: list[list[Any]] = []
    for t in toks:
        if t.kind == "pipe":
            commands.append([])
        elif t.kind == "lp":
            stack.append(commands)
            commands = [[]]
        elif t.kind == "rp":
            if not stack:
                raise TemplateError("template: :1: unexpected right paren")
            inner = Pipeline(commands)
            commands = stack.pop()
            commands[-1].append(inner)
        else:
            commands[-1].append(t)
    if stack or any(not c for c in commands):
        raise TemplateError("template: :1: missing value for command")
    return Pipeline(commands, decl)


def parse(src: str) -> Block:
    root = Block("root", None)
    stack = [root]
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if pending_trim:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1].add(text)
        pending_trim = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        if body.startswith("/*"):
            continue
        word, _, rest = body.partition(" ")
        if word in ("if", "with", "range"):
            block = Block(word, _parse_pipeline(_lex(rest)))
            stack[-1].add(block)
            stack.append(block)
        elif word == "else":
            if len(stack) < 2:
                raise TemplateError("template: :1: unexpected {{else}}")
            stack[-1].in_alt = True
            if rest.strip():  # {{else if ...}}
                kind, _, cond = rest.strip().partition(" ")
                block = Block(kind, _parse_pipeline(_lex(cond)))
                stack[-1].add(block)
                stack.append(block)
                block.kind = kind + "-chained"
        elif word == "end":
            if len(stack) < 2:
                raise TemplateError("template: :1: unexpected {{end}}")
            while stack[-1].kind.endswith("-chained"):
                stack[-1].kind = stack[-1].kind.removesuffix("-chained")
                stack.pop()
            stack.pop()
        else:
            stack[-1].add(_parse_pipeline(_lex(body)))
    text = src[pos:]
    if pending_trim:
        text = text.lstrip()
    if text:
        stack[-1].add(text)
    if len(stack) != 1:
        raise TemplateError("template: :1: unexpected EOF")
    return root


# ---- execution -------------------------------------------------------------------------------------
class _Scope:
    def __init__(self, root: Any) -> None:
        self.vars: dict[str, Any] = {"$": root}


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    attr = getattr(value, name, _MISSING) if not name.startswith("_") else _MISSING
    if attr is _MISSING:
        kind = type(value).__name__
        raise TemplateError(f"template: :1: can't evaluate field {name} in type {kind}")
    return attr


_MISSING = object()


def _walk(value: Any, names: list[str], args: list[Any]) -> Any:
    for i, name in enumerate(names):
        value = _field(value, name)
        if callable(value):
            value = value(*(args if i == len(names) - 1 else []))
    return value


def _operand(tok: Any, dot: Any, scope: _Scope, args: list[Any] | None = None) -> Any:
    args = args or []
    if isinstance(tok, Pipeline):
        return _eval(tok, dot, scope)
    if tok.kind == "str":
        return json.loads(tok.text) if tok.text.startswith('"') else tok.text[1:-1]
    if tok.kind == "num":
        return float(tok.text) if "." in tok.text else int(tok.text)
    if tok.kind == "field":
        return dot if tok.text == "." else _walk(dot, tok.names, args)
    if tok.kind == "var":
        name, *rest = tok.text.split(".")
        if name not in scope.vars:
            raise TemplateError(f"template: :1: undefined variable: {name}")
        return _walk(scope.vars[name], rest, args)
    if tok.kind == "ident":
        if tok.text in ("true", "false"):
            return tok.text == "true"
        if tok.text == "nil":
            return None
        fn = FUNCS.get(tok.text)
        if fn is None:
            raise TemplateError(f'template: :1: function "{tok.text}" not defined')
        try:
            return fn(*args)
        except TypeError as err:
            raise TemplateError(f"template: :1: wrong number of args for {tok.text}: {err}") from None
    raise TemplateError(f"template: :1: unexpected {tok.text!r}")


def _eval(pipe: Pipeline, dot: Any, scope: _Scope) -> Any:
    if len(pipe.commands) == 1 and len(pipe.commands[0]) == 1:  # `{{.Field}}`, the usual action: no arguments
        head = pipe.commands[0][0]
        if isinstance(head, Tok) and head.kind == "field":
            return dot if head.text == "." else _walk(dot, head.names, [])
    value: Any = _MISSING
    for command in pipe.commands:
        head, *rest = command
        args = [_operand(t, dot, scope) for t in rest]
        if value is not _MISSING:
            args.append(value)
        if isinstance(head, Tok) and head.kind in ("ident", "field", "var"):
            if head.kind != "ident" and args and not callable(_operand_peek(head, dot, scope)):
                raise TemplateError(f"template: :1: can't give argument to non-function {head.text}")
            value = _operand(head, dot, scope, args)
        else:
            value = _operand(head, dot, scope)
    return value


def _operand_peek(tok: Tok, dot: Any, scope: _Scope) -> Any:
    """The method itself (not its result), to tell `.Label "k"` from a plain field given arguments."""
    names = tok.text[1:].split(".") if tok.kind == "field" else tok.text.split(".")[1:]
    base = dot if tok.kind == "field" else scope.vars.get(tok.text.split(".")[0])
    for name in names[:-1]:
        base = _field(base, name)
    return _field(base, names[-1]) if names and names[-1] else base


def _iterate(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return [(k, value[k]) for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if value is None or value == NO_VALUE:
        return []
    if isinstance(value, int):
        return [(i, i) for i in range(value)]
    raise TemplateError(f"template: :1: range can't iterate over {go_str(value)}")


def _run(nodes: list[Any], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Pipeline):
            value = _eval(node, dot, scope)
            if node.decl:
                scope.vars[node.decl[0]] = value
            else:
                out.append(go_str(value))
        else:
            _run_block(node, dot, scope, out)


def _run_block(block: Block, dot: Any, scope: _Scope, out: list[str]) -> None:
    assert block.pipe is not None
    value = _eval(block.pipe, dot, scope)
    if block.kind == "range":
        items = _iterate(value)
        for key, item in items:
            if len(block.pipe.decl) == 2:
                scope.vars[block.pipe.decl[0]], scope.vars[block.pipe.decl[1]] = key, item
            elif block.pipe.decl:
                scope.vars[block.pipe.decl[0]] = item
            _run(block.body, item, scope, out)
        if not items:
            _run(block.alt, dot, scope, out)
        return
    if block.pipe.decl:
        scope.vars[block.pipe.decl[0]] = value
    if truthy(value):
        _run(block.body, value if block.kind == "with" else dot, scope, out)
    else:
        _run(block.alt, dot, scope, out)


class Template:
    """A parsed template; render(value) executes it with `.` bound to value."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.root = parse(src)

    def render(self, value: Any) -> str:
        out: list[str] = []
        _run(self.root.body, value, _Scope(value), out)
        return "".join(out)


# ---- docker's --format conventions ------------------------------------------------------------------
def unescape(fmt: str) -> str:
    """Docker turns the two characters \\t and \\n typed in a shell into a tab and a newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def tabwrite(rows: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Align cells like Go's tabwriter as docker configures it (minwidth 10, padding 3, last cell free)."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    lines = []
    for row in rows:
        cells = [cell.ljust(max(minwidth, widths[i] + padding)) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(lines) + ("\n" if lines else "")


class Format(NamedTuple):
    """A docker --format value: table (with optional template), json, or a bare template."""

    kind: str  # "table", "json" or "template"
    template: Template | None

    @classmethod
    def parse(cls, value: str | None, default_table: str) -> Format:
        value = (value or "").strip()
        if value in ("", "table"):
            return cls("table", Template(unescape(default_table)))
        if value == "json":
            return cls("json", Template("{{json .}}"))
        if value.startswith("table ") or value.startswith("table\t"):
            return cls("table", Template(unescape(value[6:].strip())))
        return cls("template", Template(unescape(value)))

    def render(self, items: list[Any], headers: dict[str, str]) -> str:
        """All rows, with the header row of a table made by running the template over `headers`."""
        assert self.template is not None
        if self.kind != "table":
            return "".join(self.template.render(item) + "\n" for item in items)
        head = self.template.render(_Headers(headers))
        rows = [head.split("\t")] + [self.template.render(item).split("\t") for item in items]
        return tabwrite(rows)


class _Headers(dict[str, str]):
    """Header context: every field evaluates to its column title (docker renders headers this way)."""

    def get(self, key: str, default: Any = None) -> Any:
        return _HeaderValue(super().get(key, key.upper()))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        title = super().get(name, name.upper())
        return _HeaderValue(title)


class _HeaderValue(str):
    def __call__(self, *args: Any) -> str:
        return str(self)
