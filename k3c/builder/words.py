"""Dockerfile words as BuildKit reads them: quotes, escapes and ``$`` variables in one pass.

Why not ``shlex`` followed by variable substitution: a shell-style split removes quotes and escapes
first, after which ``ENV A='$B'`` and ``ENV A=\\$B`` look like ``A=$B`` and get ``$B`` expanded, while a
Dockerfile keeps both literal. BuildKit splits an instruction into words with the quotes kept, then
processes each word: single quotes keep everything literal, double quotes expand variables and honour
``\\"``, ``\\$`` and ``\\\\`` only, and outside quotes the escape character makes the next character
literal. ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``, ``${VAR:?message}`` and
``${VAR?message}`` are understood, their ``word`` processed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["expand", "expand_words", "split"]

ESCAPE = "\\"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODIFIERS = (":-", ":+", ":?", "-", "+", "?")


def split(text: str, escape: str = ESCAPE) -> list[str]:
    """Words separated by unquoted whitespace, each still with its quotes and escapes."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and quote != "'" and i + 1 < len(text):
            cur += [ch, text[i + 1]]
            i += 2
            continue
        if not quote and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = ""
        cur.append(ch)
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def expand(word: str, env: Mapping[str, str], escape: str = ESCAPE, *, quotes: bool = True) -> str:
    """One word processed: quotes removed, escapes applied, variables expanded (ValueError if malformed).

    ``quotes=False`` leaves quote characters as they are, as BuildKit expands the body of an unquoted
    ``COPY <<EOF`` heredoc: there ``\\$`` gives ``$`` and every other escape drops its backslash too."""
    out, _ = _process(word, 0, env, escape, stop="", quotes=quotes)
    return out


def expand_words(text: str, env: Mapping[str, str], escape: str = ESCAPE) -> list[str]:
    """Each word of ``text`` expanded, an unquoted expansion splitting into words as BuildKit's
    ``ProcessWords`` does (``EXPOSE $PORTS`` with ``PORTS="80 443"`` names two ports)."""
    out: list[str] = []
    for word in split(text, escape):
        value = expand(word, env, escape)
        out += value.split() if not any(q in word for q in "'\"") else [value]
    return out


def _process(text: str, i: int, env: Mapping[str, str], escape: str, stop: str,
             quotes: bool = True) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if stop and ch == stop:
            return "".join(out), i + 1
        if escape and ch == escape:
            if i + 1 < len(text):  # (a trailing escape is dropped)
                out.append(text[i + 1])
            i += 2
        elif not quotes and ch in "'\"":
            out.append(ch)
            i += 1
        elif ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError(f"unexpected end of statement while looking for matching single-quote: {text}")
            out.append(text[i + 1:end])
            i = end + 1
        elif ch == '"':
            value, i = _double_quoted(text, i + 1, env, escape)
            out.append(value)
        elif ch == "$":
            value, i = _dollar(text, i + 1, env, escape, quotes)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    if stop:
        raise ValueError(f"missing '{stop}' in {text}")
    return "".join(out), i


def _double_quoted(text: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "$":
            value, i = _dollar(text, i + 1, env, escape)
            out.append(value)
            continue
        if ch == escape and i + 1 < len(text) and text[i + 1] in ('"', "$", escape):
            ch = text[i + 1]
            i += 1
        out.append(ch)
        i += 1
    raise ValueError(f"unexpected end of statement while looking for matching double-quote: {text}")


def _dollar(text: str, i: int, env: Mapping[str, str], escape: str, quotes: bool = True) -> tuple[str, int]:
    """What follows a ``$`` at ``text[i]``: the value, and where the text goes on."""
    if not text.startswith("{", i):
        m = _NAME.match(text, i)
        return (env.get(m.group(), ""), m.end()) if m else ("$", i)
    m = _NAME.match(text, i + 1)
    if m is None:
        raise ValueError(f"bad substitution: {text}")
    name, j = m.group(), m.end()
    if text.startswith("}", j):
        return env.get(name, ""), j + 1
    op = next((o for o in _MODIFIERS if text.startswith(o, j)), None)
    if op is None:
        raise ValueError(f"unsupported modifier ({text[j:j + 1]}) in substitution: {text}")
    word, end = _process(text, j + len(op), env, escape, stop="}", quotes=quotes)
    return _modified(name, op, word, env), end


def _modified(name: str, op: str, word: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    usable = value is not None and (value != "" or not op.startswith(":"))
    if op in (":-", "-"):
        return value if usable and value is not None else word
    if op in (":+", "+"):
        return word if usable else ""
    if not usable:  # ":?" / "?"
        raise ValueError(f"{name}: {word or ('is not allowed to be empty' if op == ':?' else 'is not set')}")
    return value or ""
