""".dockerignore with Docker's own semantics, which are not gitignore's.

Why a matcher of our own: pathspec and friends implement gitignore, where ``*.log`` matches at any depth;
in Docker it matches only at the context root, and ``**`` is what reaches deeper. This is a port of moby's
``dockerignore.ReadAll`` and ``patternmatcher`` (the regexp form that buildah's copy in containers/storage
also uses):

- lines starting with ``#`` are comments; blank lines are skipped; surrounding spaces are trimmed;
- each pattern is cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped (paths are relative
  to the context);
- ``*`` matches any run of non-separator characters, ``?`` one non-separator character, ``[...]`` a class,
  ``**`` any number of directories (including none), ``\\`` escapes the next character;
- a pattern that matches a directory excludes everything below it (parents are matched too);
- ``!pattern`` re-includes; the last pattern that matches a path decides.

The CLI uses :func:`walk` to build the tar it uploads; buildah applies the same rules itself to a
directory context, and the tests check both agree.

A .dockerignore comes with the context, so it is untrusted input. Its patterns run on RE2 (google-re2, as
Go's regexp: linear time, no backtracking; Python's ``re`` took minutes for eleven ``**/`` against a
24-level path, holding the GIL), repeated ``**`` segments are collapsed first, and a file may hold at
most :data:`MAX_PATTERNS` patterns of :data:`MAX_PATTERN_BYTES` each (docker and BuildKit set no bound;
these are far beyond any real file). A name that is not UTF-8 is matched as Go reads it: each stray byte
is one character, U+FFFD.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]

__all__ = ["MAX_PATTERNS", "MAX_PATTERN_BYTES", "IgnoreFileError", "IgnoreMatcher", "Pattern", "load", "parse",
           "walk"]

#: Most patterns one .dockerignore may hold.
MAX_PATTERNS = 10_000
#: Longest pattern (UTF-8 bytes).
MAX_PATTERN_BYTES = 4096
#: Largest .dockerignore read (comments and blank lines count too).
MAX_FILE_BYTES = 64 << 20

#: Characters with a meaning in regular expressions but none in filepath.Match: escaped literally.
_REGEX_SPECIAL = set(".+()|{}$^")
_BOM = "\ufeff"
#: Stray bytes of a name read with ``surrogateescape`` -> U+FFFD, as Go's regexp reads a byte that is not UTF-8.
_STRAY_BYTES = {c: 0xFFFD for c in range(0xDC80, 0xDD00)}
_OPTIONS = re2.Options()
_OPTIONS.dot_nl = True  # a name may hold a newline; ``*`` matches it as Go's does
_OPTIONS.log_errors = False


class IgnoreFileError(ValueError):
    """A .dockerignore the builder refuses (too large, or a pattern that does not compile); one line."""


class _Regexp(Protocol):
    def match(self, text: bytes) -> object | None: ...


def _utf8(text: str) -> bytes:
    return text.translate(_STRAY_BYTES).encode("utf-8")


def parse(text: str) -> list[str]:
    """The patterns of a .dockerignore text, normalized like ``dockerignore.ReadAll``; at most
    :data:`MAX_PATTERNS` of at most :data:`MAX_PATTERN_BYTES` each, else :class:`IgnoreFileError`."""
    out: list[str] = []
    for i, raw in enumerate(text.splitlines()):
        line = raw.removeprefix(_BOM) if i == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        if len(_utf8(line)) > MAX_PATTERN_BYTES:
            raise IgnoreFileError(f".dockerignore: line {i + 1}: pattern longer than {MAX_PATTERN_BYTES} bytes")
        if len(out) == MAX_PATTERNS:
            raise IgnoreFileError(f".dockerignore: more than {MAX_PATTERNS} patterns")
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = _clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


def _clean(path: str) -> str:
    """Go's filepath.Clean: posixpath.normpath, except that it keeps no leading ``//``."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern; ``exclusion`` is true for a ``!`` re-include."""

    text: str
    exclusion: bool
    regex: _Regexp

    def match(self, path: str) -> bool:
        return self.regex.match(_utf8(path)) is not None


def compile_pattern(text: str) -> Pattern:
    """Compile one pattern (possibly ``!``-prefixed) to an RE2 expression anchored at both ends."""
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:]
        if not text:
            raise ValueError('illegal exclusion pattern: "!"')
    text = _clean(text)
    try:
        regex = re2.compile(_utf8(_to_regex(_collapse(text))), _OPTIONS)
    except re2.error as err:
        detail = err.args[0].decode("utf-8", "replace") if err.args and isinstance(err.args[0], bytes) else err
        raise IgnoreFileError(f".dockerignore: syntax error in pattern {text!r}: {detail}") from None
    return Pattern(text, exclusion, cast(_Regexp, regex))


def _collapse(pattern: str) -> str:
    """``**/**`` is ``**``: repeated ``**`` segments merged, so the expression has one optional group each."""
    out: list[str] = []
    for seg in pattern.split("/"):
        if not (seg == "**" and out and out[-1] == "**"):
            out.append(seg)
    return "/".join(out)


def _to_regex(pattern: str) -> str:
    out = ["^"]
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        i += 1
        if in_class:
            out.append(_class_char(ch, pattern, i))
            if ch == "\\" and i < n:
                i += 1
            elif ch == "]":
                in_class = False
            continue
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            out.append(re.escape(pattern[i]) if i < n else "\\\\")
            i += 1 if i < n else 0
        elif ch == "[":
            in_class = True
            out.append("[")
            if i < n and pattern[i] == "^":  # Go negation; Python spells it the same
                out.append("^")
                i += 1
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(re.escape(ch))
    if in_class:
        raise ValueError(f"syntax error in pattern {pattern!r}: unterminated [")
    out.append("$")
    return "".join(out)


def _class_char(ch: str, pattern: str, i: int) -> str:
    if ch == "\\":
        return re.escape(pattern[i]) if i < len(pattern) else "\\\\"
    if ch in "[&~|":  # literal in Go classes; Python would warn about set operations
        return "\\" + ch
    return ch


@dataclass
class IgnoreMatcher:
    """The patterns of one .dockerignore, in order (moby's ``PatternMatcher``)."""

    patterns: list[Pattern] = field(default_factory=list)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreMatcher:
        return cls([compile_pattern(p) for p in lines if p.strip()])

    @property
    def has_exclusions(self) -> bool:
        """Whether some ``!`` pattern may re-include a path below an excluded directory."""
        return any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative, ``/``-separated) is ignored: ``MatchesOrParentMatches``."""
        path = _clean(path)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # an include can only change a non-matched path, an exclusion a matched one
            hit = pat.match(path)
            if not hit and parents:
                hit = any(pat.match("/".join(parents[: k + 1])) for k in range(len(parents)))
            if hit:
                matched = not pat.exclusion
        return matched


def load(context: str | os.PathLike[str], ignorefile: str | os.PathLike[str] | None = None) -> IgnoreMatcher:
    """The matcher of ``ignorefile`` (default ``CONTEXT/.dockerignore``); empty when there is none."""
    path = Path(ignorefile) if ignorefile else Path(context) / ".dockerignore"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return IgnoreMatcher()
    if len(data) > MAX_FILE_BYTES:
        raise IgnoreFileError(f".dockerignore: larger than {MAX_FILE_BYTES >> 20} MiB")
    return IgnoreMatcher.from_lines(parse(data.decode("utf-8", "surrogateescape")))


def walk(root: str | os.PathLike[str], matcher: IgnoreMatcher, keep: Iterable[str] = ()) -> Iterator[str]:
    """Relative paths under ``root`` that the matcher keeps, parents before children, sorted.

    An excluded directory is not entered unless some ``!`` pattern could re-include what is below it.
    Paths in ``keep`` (the Dockerfile, .dockerignore) are always yielded, as the docker CLI does.
    """
    keep_set = {_clean(k) for k in keep}
    yield from _walk(Path(root), "", matcher, keep_set)


def _walk(root: Path, rel: str, matcher: IgnoreMatcher, keep: set[str]) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(root / rel if rel else root), key=lambda e: e.name)
    except NotADirectoryError:
        return
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if path not in keep and matcher.excluded(path):
            if is_dir and (matcher.has_exclusions or any(k.startswith(path + "/") for k in keep)):
                yield from _walk(root, path, matcher, keep)
            continue
        yield path
        if is_dir:
            yield from _walk(root, path, matcher, keep)
