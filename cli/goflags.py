"""Go's flag syntax as docker's CLI reads it (pflag over strconv): numbers, booleans, and their errors.

Why: scripts written for docker pass `--sig-proxy=false`, `--pids-limit 100` or `-c 512`, and people
compare error lines. docker's CLI parses flags with pflag, whose values go through Go's strconv; a bad
value is reported as ``invalid argument "V" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "V":
invalid syntax``. These helpers reproduce that syntax and wording. Standard library only: the CLI's
parser imports this module at start-up.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")
_INT = re.compile(r"[+-]?[0-9]+")


def quote(text: str) -> str:
    """Go's ``%q`` of a string (close enough: JSON's escaping, non-ASCII kept)."""
    return json.dumps(text, ensure_ascii=False)


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"strconv.ParseBool: parsing {quote(text)}: invalid syntax")


def parse_int(text: str, bits: int = 64, name: str = "ParseInt") -> int:
    """strconv.ParseInt(text, 10, bits) (``name`` Atoi for strconv.Atoi's wording)."""
    if not _INT.fullmatch(text):
        raise ValueError(f"strconv.{name}: parsing {quote(text)}: invalid syntax")
    value = int(text)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"strconv.{name}: parsing {quote(text)}: value out of range")
    return value


def parse_uint(text: str, bits: int = 64) -> int:
    """strconv.ParseUint(text, 10, bits)."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2 ** bits:
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: value out of range")
    return value


def flag_value(label: str, parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse ``type`` that reports a bad value as pflag does: ``invalid argument "V" for "LABEL" flag:
    DETAIL`` (``label`` as docker's help lists the flag, e.g. ``-c, --cpu-shares``)."""

    def convert(value: str) -> _T:
        try:
            return parse(value)
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentTypeError(f"invalid argument {quote(value)} for {quote(label)} flag: {err}") from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def int_flag(label: str, bits: int = 64) -> Callable[[str], int]:
    return flag_value(label, lambda text: parse_int(text, bits))


def add_bool_flag(p: argparse.ArgumentParser, *names: str, default: bool = False, help: str = "") -> None:
    """A boolean flag as pflag has them: ``--flag`` sets it, ``--flag=false`` (any strconv.ParseBool
    spelling) sets it to that value. :class:`k3c.cli.common.DockerArgumentParser` turns ``NAME=VALUE`` into
    ``NAME`` or the hidden ``NAME=false`` registered here, before argparse sees it."""
    dest = next(n for n in names if n.startswith("--")).lstrip("-").replace("-", "_")
    action = p.add_argument(*names, dest=dest, action="store_const", const=True, default=default, help=help)
    vars(action)["go_bool"] = True  # marks the flags expand_bool_flags rewrites
    for name in names:
        p.add_argument(f"{name}=false", dest=dest, action="store_const", const=False, help=argparse.SUPPRESS)


def expand_bool_flags(parser: argparse.ArgumentParser, args: list[str],
                      error: Callable[[str], Any]) -> list[str]:
    """``--flag=VALUE`` of an :func:`add_bool_flag` flag → ``--flag`` or ``--flag=false``; flags only, up to
    the first positional argument (what follows an image is the container's command, never touched)."""
    actions: dict[str, argparse.Action] = parser._option_string_actions
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--" or token == "-" or not token.startswith("-"):
            return out + args[i:]
        name, sep, value = token.partition("=")
        action = actions.get(name)
        if sep and action is not None and getattr(action, "go_bool", False):
            try:
                out.append(name if parse_bool(value) else f"{name}=false")
            except ValueError as err:
                label = ", ".join(s for s in action.option_strings)
                error(f"invalid argument {quote(value)} for {quote(label)} flag: {err}")
        else:
            out.append(token)
            if not sep and action is not None and action.nargs != 0 and i + 1 < len(args):
                i += 1
                out.append(args[i])  # the flag's value
        i += 1
    return out
