"""`--ulimit`, `--memory-swap`, `--cpuset-cpus`, `--security-opt`, `--pid`, `--ipc`, `--stop-signal`,
`--label-file`, `--platform`: docker's resource, security and process flags → LocalContainer spec values.

Pure functions with docker's syntax: a bad value raises argparse.ArgumentTypeError (printed as docker's
flag parser prints it, exit 125), a value k3c cannot honour a CLIError naming it (exit 125).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeVar

from k3c import runoptions
from k3c.cli.errors import CLIError, daemon_error
from k3c.cli.goflags import parse_int
from k3c.signals import signal_number

_T = TypeVar("_T")
_R = TypeVar("_R")
#: Go's names of the machine architectures k3c may run on (uname -m → GOARCH).
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64"}


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def parse_ulimit(value: str) -> dict[str, Any]:
    """NAME=SOFT[:HARD] (docker's units.ParseUlimit); -1 is unlimited; HARD defaults to SOFT."""
    name, sep, limits = value.partition("=")
    if not sep:
        raise _bad(f"invalid ulimit argument: {value}")
    if name not in runoptions.ULIMITS:
        raise _bad(f"invalid ulimit type: {name}")
    soft_text, colon, hard_text = limits.partition(":")
    try:
        soft = parse_int(soft_text)
        hard = parse_int(hard_text) if colon else soft
    except ValueError as err:
        raise _bad(str(err)) from None
    try:
        return runoptions.ulimit(name, soft, hard)
    except ValueError as err:
        raise _bad(str(err)) from None


def parse_memory_swap(value: str) -> str:
    """docker's MemSwapBytes: -1 (unlimited swap) or a size, kept as bytes."""
    from k3c.units import ram_in_bytes

    if value == "-1":
        return value
    try:
        return str(ram_in_bytes(value))
    except ValueError:
        raise _bad(f"invalid size: '{value}'") from None


def _daemon_checked(check: Callable[[_T], _R], value: _T) -> _R:
    """``check(value)``, its ValueError reported as docker's CLI reports the daemon's refusal (exit 125)."""
    try:
        return check(value)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None


def parse_cpuset(value: str) -> str:
    return _daemon_checked(runoptions.cpuset, value)


def parse_stop_signal(value: str) -> str:
    try:
        signal_number(value)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None
    return value


def security_options(values: list[str]) -> dict[str, Any]:
    """--security-opt no-new-privileges[:true|false], seccomp=unconfined|FILE, apparmor=NAME → spec fields."""
    return _daemon_checked(lambda v: runoptions.security_options(v, _seccomp_file), values)


def parse_pid_mode(value: str) -> str:
    return _daemon_checked(runoptions.pid_mode, value)


def parse_ipc_mode(value: str) -> str:
    return _daemon_checked(runoptions.ipc_mode, value)


def node_platform() -> str:
    """This node's platform as docker names it (linux/amd64)."""
    import platform  # (here: ~2 ms of every `k3c run` otherwise, and only --platform asks)

    machine = platform.machine()
    return f"linux/{_ARCHES.get(machine, machine)}"


def check_platform(value: str) -> str:
    """--platform: only the node's own (k3c runs no emulation); os alone or os/arch[/variant]."""
    own = node_platform()
    parts = value.lower().split("/")
    if parts[0] != "linux" or (len(parts) > 1 and parts[1] != own.split("/")[1]) or len(parts) > 3:
        raise daemon_error(f"--platform {value}: k3c runs images of this node's platform only ({own})", 125)
    return value


def read_label_file(path: str) -> list[tuple[str, str]]:
    """docker's --label-file: KEY=VALUE lines, # comments and blank lines skipped, KEY alone an empty value."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise CLIError(f"open {path}: {(err.strerror or str(err)).lower()}", 125) from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, val = line.partition("=")
            out.append((key, val))
    return out


def parse_duration(value: str) -> str:
    """A Go duration as docker's --health-* flags take it (kept as typed; ValueError worded as Go's)."""
    from k3c.timefmt import parse_duration_ns

    try:
        parse_duration_ns(value)
    except ValueError:
        raise ValueError(f"time: invalid duration {json.dumps(value)}") from None
    return value


def healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    """spec.healthcheck from --health-* and --no-healthcheck (None: the image's check, if any)."""
    given = {"interval": args.health_interval, "timeout": args.health_timeout,
             "startPeriod": args.health_start_period}
    if args.no_healthcheck:
        if args.health_cmd or any(given.values()) or args.health_retries:
            raise daemon_error("--no-healthcheck conflicts with --health-* options", 125)
        return {"test": ["NONE"]}
    if args.health_retries is not None and args.health_retries < 0:
        raise daemon_error("--health-retries cannot be negative", 125)
    check: dict[str, Any] = {k: v for k, v in given.items() if v}
    if args.health_cmd:
        check["test"] = ["CMD-SHELL", args.health_cmd]
    if args.health_retries:
        check["retries"] = args.health_retries
    return check or None


def log_options(values: list[str]) -> dict[str, Any] | None:
    """--log-opt max-size=10m --log-opt max-file=3 (json-file's rotation options; others refused)."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise daemon_error(f"invalid key value pair format in logging opts: {value}", 125)
        pairs[key] = val
    return _daemon_checked(runoptions.log_options, pairs)


def _seccomp_file(path: str) -> str:
    """--security-opt seccomp=FILE: the profile's content, as docker's CLI sends it (checked to be JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
        json.loads(content)
    except OSError as err:
        raise daemon_error(f"opening seccomp profile ({path}) failed: open {path}: "
                           f"{(err.strerror or str(err)).lower()}", 125) from None
    except ValueError as err:
        raise daemon_error(f"decoding seccomp profile failed: {err}", 125) from None
    return content
