"""Just enough Dockerfile parsing to know which images a build starts from.

The builder must copy base images that live only in containerd into buildah's storage *before* buildah
runs (buildah cannot read containerd). So we need the images named by ``FROM`` and ``COPY --from=`` /
``RUN --mount=...,from=`` that are not stages of the same file, with global ``ARG`` values (defaults
overridden by build args) substituted the way Docker does in ``FROM`` lines.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from k3c.builder.words import expand

__all__ = ["Heredoc", "external_images", "heredocs", "instructions", "substitute"]

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """``(KEYWORD, rest)`` per instruction: continuations joined, comments and directives dropped.

    Heredocs of RUN/COPY/ADD (``<<EOF`` … ``EOF``, ``<<-EOF`` strips leading tabs) are kept verbatim:
    ``rest`` is the instruction line, then for each heredoc a newline, its body lines and its terminator,
    which is exactly the text a shell runs (see :func:`heredocs`).
    """
    lines = text.splitlines()
    escape = "\\"
    start = 0
    for i, line in enumerate(lines):  # parser directives: only at the very top
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
        start = i + 1
    buf = ""
    i = start
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are skipped
        if stripped.endswith(escape):
            buf += stripped[:-1].rstrip() + " "
            continue
        buf += stripped
        keyword, _, rest = buf.strip().partition(" ")
        rest = rest.strip()
        if keyword.upper() in _HEREDOC_KEYWORDS:
            for m in _HEREDOC.finditer(rest.split("\n", 1)[0]):
                body, i = _heredoc_body(lines, i, m.group(3), m.group(1) == "-")
                rest += "\n" + "".join(f"{b}\n" for b in body) + m.group(3)
        yield keyword.upper(), rest
        buf = ""
    if buf.strip():
        keyword, _, rest = buf.strip().partition(" ")
        yield keyword.upper(), rest.strip()


_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
#: a heredoc is a word of its own starting with ``<<`` (as BuildKit reads it): not ``<<<`` nor ``a<<B``
_HEREDOC = re.compile(r"(?:^|(?<=\s))<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")


def _heredoc_body(lines: list[str], i: int, word: str, strip_tabs: bool) -> tuple[list[str], int]:
    body: list[str] = []
    while i < len(lines):
        line = lines[i].lstrip("\t") if strip_tabs else lines[i]
        i += 1
        if line == word:
            return body, i
        body.append(line)
    raise ValueError(f"heredoc {word!r} is not terminated")


@dataclass(frozen=True)
class Heredoc:
    """One heredoc of an instruction: its name, its body, and whether the name was quoted (no expansion)."""

    name: str
    body: str
    quoted: bool


def heredocs(rest: str) -> list[Heredoc]:
    """Each heredoc in an instruction's ``rest`` as :func:`instructions` gives it."""
    first, _, tail = rest.partition("\n")
    out: list[Heredoc] = []
    lines = tail.split("\n") if tail else []
    i = 0
    for m in _HEREDOC.finditer(first):
        body, i = _heredoc_body(lines, i, m.group(3), False)
        out.append(Heredoc(m.group(3), "".join(f"{b}\n" for b in body), bool(m.group(2))))
    return out


def substitute(word: str, env: Mapping[str, str]) -> str:
    """Variables only (``$VAR``, ``${VAR:-default}`` …) in a word already split shell-style, whose quotes
    and escapes are gone: :func:`k3c.builder.words.expand` with neither."""
    return expand(word, env, escape="", quotes=False)


def _arg_defaults(rest: str) -> Iterator[tuple[str, str | None]]:
    for item in shlex.split(rest, posix=True):
        name, eq, value = item.partition("=")
        yield name, value if eq else None


def _flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(words) and words[i].startswith("--"):
        key, _, value = words[i][2:].partition("=")
        flags[key.lower()] = value
        i += 1
    return flags, words[i:]


def external_images(text: str, build_args: Mapping[str, str] | None = None) -> list[str]:
    """Image references the Dockerfile pulls in that are not its own stages (nor ``scratch``), in order."""
    args = dict(build_args or {})
    global_env: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    out: list[str] = []

    def add(ref: str) -> None:
        if ref and ref.lower() not in stages and ref.lower() != "scratch" and not ref.isdigit() and ref not in out:
            out.append(ref)

    for keyword, rest in instructions(text):
        if keyword == "ARG" and not seen_from:
            for name, default in _arg_defaults(rest):
                value = args.get(name, default)
                if value is not None:
                    global_env[name] = substitute(value, global_env)
        elif keyword == "FROM":
            seen_from = True
            _, words = _flags(rest.split())
            if not words:
                continue
            add(substitute(words[0], global_env))
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
        elif keyword in ("COPY", "ADD"):
            flags, _ = _flags(rest.split())
            if "from" in flags:
                add(flags["from"])
        elif keyword == "RUN":
            for m in re.finditer(r"--mount=(\S+)", rest):
                opts = dict(kv.partition("=")[::2] for kv in m.group(1).split(","))
                if opts.get("from"):
                    add(opts["from"])
    return out
