"""The Dockerfile reading both engines share: instructions, heredocs, flags, ARGs and the base images.

The native engine builds its stages from :func:`instructions` (with :mod:`.instructions`); the buildah
fallback needs :func:`external_images` to copy base images that live only in containerd into buildah's
storage before buildah runs (it cannot read containerd): the images named by ``FROM`` and ``COPY --from=``
/ ``RUN --mount=...,from=`` that are not stages of the same file, with global ``ARG`` values (defaults
overridden by build args and the automatic platform ARGs) substituted as Docker does in ``FROM`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from k3c.builder.words import expand, split

__all__ = ["Heredoc", "arg_items", "automatic_args", "external_images", "heredocs", "instructions", "platform_args",
           "split_flags", "substitute"]

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


def split_flags(rest: str) -> tuple[dict[str, list[str]], str]:
    """An instruction's leading ``--name[=value]`` flags (a repeated one keeps every value), and the rest."""
    flags: dict[str, list[str]] = {}
    rest = rest.strip()
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        flags.setdefault(name.lower(), []).append(value if eq else "true")
        rest = after.strip()
    return flags, rest


def arg_items(rest: str, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``ARG a=1 b`` → ``[("a", "1"), ("b", None)]`` with defaults substituted from ``env``."""
    out: list[tuple[str, str | None]] = []
    for item in split(rest):
        name, eq, value = item.partition("=")
        out.append((name, expand(value, env) if eq else None))
    return out


def platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs (``ARG TARGETARCH`` in a stage, ``$BUILDPLATFORM`` in FROM…).
    Builds run for the node's own platform, so target and build platform are both this one."""
    from k3c.oci.layout import host_architecture

    arch = host_architecture()
    variant = "v7" if arch == "arm" else ""
    platform = f"linux/{arch}" + (f"/{variant}" if variant else "")
    out: dict[str, str] = {}
    for prefix in ("TARGET", "BUILD"):
        out.update({f"{prefix}PLATFORM": platform, f"{prefix}OS": "linux", f"{prefix}OSVERSION": "",
                    f"{prefix}ARCH": arch, f"{prefix}VARIANT": variant})
    return out


def automatic_args(build_args: Mapping[str, str], target: str = "") -> dict[str, str]:
    """The ARGs BuildKit defines before the first line (its platform.go): the platform ones and
    ``TARGETSTAGE``; a build arg of the same name overrides one."""
    automatic = {**platform_args(), "TARGETSTAGE": target or "default"}
    return {k: build_args.get(k, v) for k, v in automatic.items()}


def external_images(text: str, build_args: Mapping[str, str] | None = None) -> list[str]:
    """Image references the Dockerfile pulls in that are not its own stages (nor ``scratch``), in order,
    with global ARGs (BuildKit's automatic ones included) expanded as in FROM lines."""
    args = dict(build_args or {})
    global_env = automatic_args(args)
    stages: set[str] = set()
    seen_from = False
    out: list[str] = []

    def add(ref: str) -> None:
        if ref and ref.lower() not in stages and ref.lower() != "scratch" and not ref.isdigit() and ref not in out:
            out.append(ref)

    for keyword, rest in instructions(text):
        if keyword == "ARG" and not seen_from:
            for name, default in arg_items(rest, global_env):
                value = args.get(name, default)
                if value is not None:
                    global_env[name] = value
        elif keyword == "FROM":
            seen_from = True
            _, body = split_flags(rest)
            words = body.split()
            if not words:
                continue
            add(expand(words[0], global_env))
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
        elif keyword in ("COPY", "ADD"):
            add(split_flags(rest)[0].get("from", [""])[-1])
        elif keyword == "RUN":
            for mount in split_flags(rest)[0].get("mount", []):
                add(dict(kv.partition("=")[::2] for kv in mount.split(",")).get("from", ""))
    return out
