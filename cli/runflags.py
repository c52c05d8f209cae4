"""`docker run` flags → a LocalContainer object.

Why a module of its own: these are pure functions (no API calls), so every docker form can be tested
directly, and `create` and `run` share one definition of the flags. Parse errors are raised as
argparse.ArgumentTypeError with docker's wording, which the parser turns into one line and exit 125.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k3c import dockerid
from k3c.api import (
    ANONYMOUS_VOLUMES_ANNOTATION,
    ATTACHED_RUN_ANNOTATION,
    CONTAINER_FINALIZER,
    LOCAL_CONTAINERS,
)
from k3c.cli.common import valid_name
from k3c.cli.errors import daemon_error

PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}
MOUNT_MODES = {"ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate", "nocopy",
               "consistent", "cached", "delegated"}
_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$")
_CPUS_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
MIN_MEMORY = 6 * 1024 * 1024


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


# ---- -p/--publish ------------------------------------------------------------------------------------
def _port_range(text: str, what: str, allow_empty: bool = False) -> list[int]:
    if text == "" and allow_empty:
        return []
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise _bad(f"invalid {what}: {text}") from None
    if not (0 < first <= last <= 65535):
        raise _bad(f"invalid {what}: {text}")
    return list(range(first, last + 1))


def _split_publish(raw: str) -> tuple[str, str, str]:
    """docker's nat.splitParts: [ip:][hostPort:]containerPort, the IP possibly IPv6 in brackets."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_publish(value: str) -> list[dict[str, Any]]:
    """-p forms: 80, 8080:80, 127.0.0.1:8080:80, 127.0.0.1::80, 8080:80/udp, [::1]:8080:80, 8000-8001:80-81."""
    raw, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto.lower() not in PROTOCOLS:
        raise _bad(f"invalid proto: {proto}")
    ip, host, container = _split_publish(raw)
    ip = ip.strip("[]")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _bad(f"invalid IP address: {ip}") from None
    if not container:
        raise _bad(f"no port specified: {value}<empty>")
    cports = _port_range(container, "containerPort")
    hports = _port_range(host, "hostPort", allow_empty=True)
    if hports and len(hports) != len(cports):
        raise _bad(f"invalid ranges specified for container and host Ports: {container} and {host}")
    out = []
    for i, cport in enumerate(cports):
        entry: dict[str, Any] = {"containerPort": cport, "protocol": PROTOCOLS[proto.lower()]}
        if hports:
            entry["hostPort"] = hports[i]
        if ip:
            entry["hostIP"] = ip
        out.append(entry)
    return out


# ---- -v/--volume -------------------------------------------------------------------------------------
@dataclass
class Mount:
    spec: dict[str, Any]
    anonymous: bool = False
    docker_name: str = ""  # a named volume's name as given (spec.volume is the object name it maps to)


def parse_volume(value: str) -> Mount:
    """-v NAME:/path[:ro], /host:/path[:ro|rw], ./rel:/path, or /path alone (an anonymous volume)."""
    parts = value.split(":")
    if len(parts) > 3 or not all(parts[:2]):
        raise _bad(f"invalid volume specification: '{value}'")
    if len(parts) == 1:
        return _anonymous(value)
    src, dst, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if not dst.startswith("/"):
        raise _bad(f"invalid volume specification: '{value}': invalid mount path: '{dst}' mount path must be "
                   "absolute")
    modes = [m for m in mode.split(",") if m]
    if any(m not in MOUNT_MODES for m in modes) or ("ro" in modes and "rw" in modes):
        raise _bad(f"invalid mode: {mode}")
    spec: dict[str, Any] = {"mountPath": dst}
    if src.startswith(("/", ".", "~")):
        spec["hostPath"] = os.path.abspath(os.path.expanduser(src))
    elif dockerid.valid_docker_name(src):
        spec["volume"] = dockerid.object_name(src)
    else:
        raise _bad(f'create {src}: "{src}" includes invalid characters for a local volume name, only '
                   '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use '
                   "absolute path")
    if "ro" in modes:
        spec["readOnly"] = True
    return Mount(spec, docker_name=src if "volume" in spec else "")


def _anonymous(path: str) -> Mount:
    if not path.startswith("/"):
        raise _bad(f"invalid volume specification: '{path}': invalid mount path: '{path}' mount path must be "
                   "absolute")
    return Mount({"volume": secrets.token_hex(32), "mountPath": path}, anonymous=True)


# ---- -e/--env, --env-file ----------------------------------------------------------------------------
def _env_entry(item: str, environ: Mapping[str, str], where: str) -> tuple[str, str] | None:
    name, sep, val = item.partition("=")
    if not name:
        raise daemon_error(f"invalid environment variable: {item}", 125)
    if any(c.isspace() for c in name):
        raise daemon_error(f"{where}variable '{name}' contains whitespaces", 125)
    if sep:
        return name, val
    return (name, environ[name]) if name in environ else None


def read_env_file(path: str, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """docker's env-file: KEY=VALUE lines taken literally, bare KEY from the environment, # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise daemon_error(f"open {path}: {(err.strerror or str(err)).lower()}", 125) from None
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        entry = _env_entry(line, environ, f"{path}: ")
        if entry:
            out.append(entry)
    return out


def build_env(env: list[str], env_files: list[str], environ: Mapping[str, str]) -> list[dict[str, str]]:
    """--env-file entries first, then -e; a later value for the same name wins, in first-seen order."""
    merged: dict[str, str] = {}
    for path in env_files:
        merged.update(read_env_file(path, environ))
    for item in env:
        entry = _env_entry(item, environ, "")
        if entry:
            merged[entry[0]] = entry[1]
    return [{"name": k, "value": v} for k, v in merged.items()]


# ---- scalar flags ------------------------------------------------------------------------------------
def parse_memory(value: str) -> str:
    """docker's RAMInBytes (binary units, optional i/b suffixes), stored as a plain byte count."""
    from k3c.units import ram_in_bytes

    try:
        return str(ram_in_bytes(value))
    except ValueError:
        raise _bad(f'invalid argument "{value}" for "-m, --memory" flag: invalid size: \'{value}\'') from None


def parse_cpus(value: str) -> str:
    if not _CPUS_RE.match(value) or float(value) <= 0:
        raise _bad(f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a rational number')
    return value


def parse_restart(value: str) -> str:
    if not _RESTART_RE.match(value):
        raise _bad(f"invalid restart policy '{value}': use no, always, unless-stopped or on-failure[:max-retries]")
    return value


def parse_label(value: str) -> tuple[str, str]:
    key, _, val = value.partition("=")
    if not key:
        raise _bad(f'invalid argument "{value}" for "-l, --label" flag: empty label key')
    return key, val


def normalize_cap(cap: str) -> str:
    cap = cap.strip().upper()
    return cap if cap == "ALL" else cap.removeprefix("CAP_")


def k8s_label_ok(key: str, value: str) -> bool:
    """Whether a docker label can also be a Kubernetes label (then selectors and kubectl -l see it)."""
    prefix, _, name = key.rpartition("/")
    if prefix and not valid_name(prefix):
        return False
    return (0 < len(name) <= 63 and bool(_LABEL_NAME_RE.match(name)) and len(value) <= 63
            and bool(_LABEL_NAME_RE.match(value)))


# ---- flag registration -------------------------------------------------------------------------------
def add_run_flags(p: argparse.ArgumentParser, run: bool) -> None:
    """The docker run/create flags k3c understands, with docker's help texts."""
    a = p.add_argument
    if run:
        a("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("--rm", action="store_true", help="Automatically remove the container when it exits")
    a("--name", help="Assign a name to the container")
    a("-p", "--publish", action="append", type=parse_publish, default=[], metavar="list",
      help="Publish a container's port(s) to the host")
    a("-v", "--volume", action="append", type=parse_volume, default=[], metavar="list", help="Bind mount a volume")
    a("-e", "--env", action="append", default=[], metavar="list", help="Set environment variables")
    a("--env-file", action="append", default=[], metavar="list", help="Read in a file of environment variables")
    a("--entrypoint", metavar="string", help="Overwrite the default ENTRYPOINT of the image")
    a("-w", "--workdir", metavar="string", help="Working directory inside the container")
    a("-u", "--user", metavar="string", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-l", "--label", action="append", type=parse_label, default=[], metavar="list",
      help="Set meta data on a container")
    a("--restart", type=parse_restart, metavar="string",
      help='Restart policy to apply when a container exits (default "no")')
    a("-m", "--memory", type=parse_memory, metavar="bytes", help="Memory limit")
    a("--cpus", type=parse_cpus, metavar="decimal", help="Number of CPUs")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    a("--network", "--net", dest="network", metavar="network",
      help="Connect a container to a network (bridge, the default, or host)")
    a("-h", "--hostname", metavar="string", help="Container host name")
    a("--cap-add", action="append", default=[], metavar="list", help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], metavar="list", help="Drop Linux capabilities")
    a("--dns", action="append", default=[], metavar="list", help="Set custom DNS servers")
    a("--stop-timeout", type=int, metavar="int", help="Timeout (in seconds) to stop a container")
    a("image", metavar="IMAGE", help="Image to run")
    a("command", nargs=argparse.REMAINDER, metavar="[COMMAND] [ARG...]",
      help="Command and arguments (override the image's CMD)")


# ---- the object --------------------------------------------------------------------------------------
@dataclass
class ContainerRequest:
    """What the flags asked for: the object to create, plus facts the command needs afterwards."""

    obj: dict[str, Any]
    name_given: bool
    anonymous_volumes: list[str] = field(default_factory=list)


def _network(value: str | None) -> bool:
    if value in (None, "", "bridge", "default"):
        return False
    if value == "host":
        return True
    raise daemon_error(f"network {value} not found (k3c offers bridge, the default, and host)", 125)


def _spec(args: argparse.Namespace, environ: Mapping[str, str], mounts: list[Mount]) -> dict[str, Any]:
    labels = dict(args.label)
    spec: dict[str, Any] = {"image": args.image}
    optional = {
        "command": [args.entrypoint] if args.entrypoint else None,
        "args": list(args.command) or None,
        "env": build_env(args.env, args.env_file, environ) or None,
        "workingDir": args.workdir, "user": args.user,
        "tty": args.tty or None, "stdin": args.interactive or None,
        # docker: an attached -i closes the container's stdin when that first attach ends (StdinOnce)
        "stdinOnce": (args.interactive and not getattr(args, "detach", False)) or None,
        "ports": [p for group in args.publish for p in group] or None,
        "volumes": [m.spec for m in mounts] or None,
        "labels": labels or None, "restartPolicy": args.restart, "memory": args.memory, "cpus": args.cpus,
        "privileged": args.privileged or None, "readOnlyRootFilesystem": args.read_only or None,
        "capAdd": [normalize_cap(c) for c in args.cap_add] or None,
        "capDrop": [normalize_cap(c) for c in args.cap_drop] or None,
        "hostNetwork": _network(args.network) or None, "hostname": args.hostname,
        "dns": list(args.dns) or None, "autoRemove": args.rm or None, "stopTimeout": args.stop_timeout,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def _check_conflicts(args: argparse.Namespace) -> None:
    if args.rm and args.restart not in (None, "no"):
        raise daemon_error("conflicting options: cannot specify both --restart and --rm", 125)
    if args.memory is not None and int(args.memory) < MIN_MEMORY:
        raise daemon_error("Minimum memory limit allowed is 6MB", 125)
    if args.stop_timeout is not None and args.stop_timeout < 0:
        raise daemon_error("invalid stop timeout: must not be negative", 125)


def build_container(args: argparse.Namespace, name: str, namespace: str, start: bool,
                    environ: Mapping[str, str] | None = None) -> ContainerRequest:
    """The LocalContainer for `k3c run`/`k3c create`: finalizer set, node left for an operator to claim."""
    _check_conflicts(args)
    environ = os.environ if environ is None else environ
    mounts: list[Mount] = list(args.volume)
    spec = _spec(args, environ, mounts)
    spec["state"] = "Running" if start else "Stopped"
    spec["nodeName"] = ""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "finalizers": [CONTAINER_FINALIZER]}
    k8s_labels = {k: v for k, v in spec.get("labels", {}).items() if k8s_label_ok(k, v)}
    if k8s_labels:
        meta["labels"] = k8s_labels
    annotations: dict[str, str] = {}
    anon = [m.spec["volume"] for m in mounts if m.anonymous]
    if anon:
        annotations[ANONYMOUS_VOLUMES_ANNOTATION] = ",".join(anon)
    if args.rm and start and not getattr(args, "detach", False):
        # We show the output and remove the object ourselves: the operator's removal must not beat our attach.
        annotations[ATTACHED_RUN_ANNOTATION] = "true"
    if annotations:
        meta["annotations"] = annotations
    obj = {"apiVersion": LOCAL_CONTAINERS.api_version, "kind": LOCAL_CONTAINERS.kind, "metadata": meta,
           "spec": spec}
    return ContainerRequest(obj, name_given=bool(args.name), anonymous_volumes=anon)
