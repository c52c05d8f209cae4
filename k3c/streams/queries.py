"""The query strings of the stream subresources, decoded and checked (400 Status for bad values).

kube's parameters (pods/log's and PodExecOptions/PodAttachOptions') keep their names and meanings;
k3c's additions are exec's ``env``/``workingDir``/``user``/``detach`` and attach's ``logs``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from k3c.apiserver import errors
from k3c.timefmt import NS, parse_rfc3339_ns

from . import protocol
from .exec import ExecRequest
from .logs import LogOptions

_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f", ""}
_STREAMS = {"all": frozenset({protocol.STDOUT, protocol.STDERR}), "stdout": frozenset({protocol.STDOUT}),
            "stderr": frozenset({protocol.STDERR})}


def flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean parameter, kube's way: true/1 or false/0 (and a few spellings of them)."""
    if name not in query:
        return default
    value = query[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f"invalid value for {name}: {query[name]!r} (want true or false)")


def _int(query: Mapping[str, str], name: str, minimum: int) -> int | None:
    """An integer parameter of at least ``minimum``, None if absent."""
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {query[name]!r} (want an integer)") from None
    if value < minimum:
        raise errors.bad_request(f"invalid value for {name}: must be at least {minimum}")
    return value


def parse_log_options(query: Mapping[str, str]) -> LogOptions:
    """pods/log's query → :class:`LogOptions` (400 Status for bad values)."""
    since_seconds = _int(query, "sinceSeconds", 1)
    since_ns = None
    if "sinceTime" in query:
        if since_seconds is not None:
            raise errors.bad_request("at most one of sinceTime or sinceSeconds may be specified")
        try:
            since_ns = parse_rfc3339_ns(query["sinceTime"])
        except ValueError as err:
            raise errors.bad_request(f"invalid value for sinceTime: {err}") from None
    elif since_seconds is not None:
        since_ns = time.time_ns() - since_seconds * NS
    stream = query.get("stream", "All").lower()
    if stream not in _STREAMS:
        raise errors.bad_request(f"invalid value for stream: {query['stream']!r} (want All, Stdout or Stderr)")
    return LogOptions(
        follow=flag(query, "follow"), tail=_int(query, "tailLines", 0), since_ns=since_ns,
        timestamps=flag(query, "timestamps"), limit_bytes=_int(query, "limitBytes", 1), channels=_STREAMS[stream],
    )


def parse_exec_request(query: Any) -> tuple[ExecRequest, bool]:
    """pods/exec's query plus k3c's env/workingDir/user/detach → (request, detach); 400 for bad values."""
    command = query.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    env = query.getall("env", [])
    for item in env:
        if not item.split("=", 1)[0] or "=" not in item:
            raise errors.bad_request(f"invalid env {item!r}: want KEY=VALUE")
    workdir = query.get("workingDir", "")
    if workdir and not workdir.startswith("/"):
        raise errors.bad_request(f"the working directory {workdir!r} is invalid, it needs to be an absolute path")
    req = ExecRequest(
        command=command, stdin=flag(query, "stdin"), stdout=flag(query, "stdout", True),
        stderr=flag(query, "stderr", True), tty=flag(query, "tty"), env=env, working_dir=workdir,
        user=query.get("user", ""),
    )
    detach = flag(query, "detach")
    if not detach and not (req.stdin or req.stdout or req.stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return req, detach
