"""CRD `pattern`s read and run as Go's regexp does: RE2 syntax, matched in linear time.

Why RE2 and not Python's `re`: a CRD author's pattern runs on every write of every object of that
kind. Python's backtracking engine admits what Go rejects (backreferences, lookaround, possessive
repeats) and can take exponential time (`(a+)+$` on `aaaa…b`); kube-apiserver compiles patterns with Go's
regexp, RE2's syntax and its linear-time matching. google-re2 is RE2 itself; its error texts are
worded here as Go's regexp/syntax words them (`error parsing regexp: invalid escape sequence: `\\1``).
"""

from __future__ import annotations

import functools
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]

__all__ = ["InvalidPattern", "compile_error", "search"]


class InvalidPattern(ValueError):
    """A pattern Go's regexp.Compile refuses; the message is Go's error text."""


class _Regexp(Protocol):
    def search(self, text: bytes) -> object | None: ...


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is the caller's to report, not RE2's to log on stderr

# RE2's error codes (C++ wording) as Go's regexp/syntax ErrorCode reads.
_GO_CODES = {
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
}


def compile_error(pattern: str) -> str | None:
    """Go's regexp.Compile error for `pattern` (`error parsing regexp: ...`), None when it compiles."""
    compiled = _compile(pattern)
    return compiled if isinstance(compiled, str) else None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text` (Go's MatchString); InvalidPattern if it cannot compile.
    """
    compiled = _compile(pattern)
    if isinstance(compiled, str):
        raise InvalidPattern(compiled)
    return compiled.search(_utf8(text)) is not None


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> _Regexp | str:
    """The compiled pattern, or Go's error text for it."""
    if _has_any_byte_escape(pattern):
        return _go_error("invalid escape sequence", "\\C")
    try:
        return cast(_Regexp, re2.compile(_utf8(pattern), _OPTIONS))
    except re2.error as exc:
        text = exc.args[0].decode("utf-8", "replace") if exc.args else ""
        code, _, arg = text.partition(": ")
        return _go_error(_GO_CODES.get(code, code), arg)


def _go_error(code: str, expr: str) -> str:
    """regexp/syntax.Error.Error()."""
    return f"error parsing regexp: {code}: `{expr}`"


def _has_any_byte_escape(pattern: str) -> bool:
    """RE2 has `\\C` (any single byte) outside classes; Go's regexp refuses it as an invalid escape."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] != "\\":
            i += 1
        elif pattern[i + 1] == "C":
            return True
        elif pattern[i + 1] == "Q":  # \Q...\E is literal text
            end = pattern.find("\\E", i + 2)
            if end < 0:
                return False
            i = end + 2
        else:
            i += 2
    return False


def _utf8(s: str) -> bytes:
    """Go strings are bytes; a lone surrogate (YAML allows one) becomes bytes RE2 refuses or never matches."""
    return s.encode("utf-8", "surrogatepass")
