"""`docker run` flags → a LocalContainer object.

Why a module of its own: these are pure functions (no API calls), so every docker form can be tested
directly, and `create` and `run` share one definition of the flags. Parse errors are raised as
argparse.ArgumentTypeError with docker's wording, which the parser turns into one line and exit 125.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from k3c import runoptions
from k3c.api import (
    ANONYMOUS_VOLUMES_ANNOTATION,
    ATTACHED_RUN_ANNOTATION,
    CONTAINER_FINALIZER,
    CREATED_ANNOTATION,
    LOCAL_CONTAINERS,
)
from k3c.cli import limitflags as lim
from k3c.cli.errors import daemon_error
from k3c.cli.goflags import add_bool_flag, flag_value, int_flag
from k3c.cli.mountflags import (
    check_mount_points,
    mount_entry,
    parse_device,
    parse_mount,
    parse_tmpfs,
    parse_volume,
)
from k3c.cli.networkflags import parse_add_host, parse_dns_search, parse_expose, parse_publish
from k3c.dockerid import kubernetes_label_ok as k8s_label_ok
from k3c.dockerid import object_name, valid_docker_name
from k3c.mountspec import Mount, Tmpfs
from k3c.timefmt import format_rfc3339_ns

_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$")
_CPUS_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
MIN_MEMORY = 6 * 1024 * 1024


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


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
      help="Connect a container to a network (bridge, the default; host; none; or a network's name)")
    a("--network-alias", "--net-alias", dest="network_alias", action="append", default=[], metavar="list",
      help="Add network-scoped alias for the container")
    a("-h", "--hostname", metavar="string", help="Container host name")
    a("--cap-add", action="append", default=[], metavar="list", help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], metavar="list", help="Drop Linux capabilities")
    a("--dns", action="append", default=[], metavar="list", help="Set custom DNS servers")
    a("--stop-timeout", type=int, metavar="int", help="Timeout (in seconds) to stop a container")
    a("--node", default="", metavar="NODE",
      help="Run on this node of the cluster (k3c; default: the first node's operator to claim it)")
    _add_more_flags(p, run)
    a("image", metavar="IMAGE", help="Image to run")
    a("command", nargs=argparse.REMAINDER, metavar="[COMMAND] [ARG...]",
      help="Command and arguments (override the image's CMD)")


def _add_more_flags(p: argparse.ArgumentParser, run: bool) -> None:
    """Mounts, names, limits, security, image and process control (docker's help texts)."""
    from k3c.units import ram_in_bytes

    a = p.add_argument
    a("--init", action="store_true",
      help="Run an init inside the container that forwards signals and reaps processes")
    duration = flag_value("duration", lim.parse_duration)
    a("--health-cmd", metavar="string", help="Command to run to check health")
    a("--health-interval", type=duration, metavar="duration", help="Time between running the check (ms|s|m|h) (default 0s)")
    a("--health-timeout", type=duration, metavar="duration",
      help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    a("--health-start-period", type=duration, metavar="duration",
      help="Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) "
           "(default 0s)")
    a("--health-retries", type=int_flag("--health-retries"), metavar="int",
      help="Consecutive failures needed to report unhealthy")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    a("--log-opt", action="append", default=[], metavar="list", help="Log driver options")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    a("--expose", action="append", default=[], metavar="list", help="Expose a port or a range of ports")
    a("--mount", action="append", type=parse_mount, default=[], metavar="mount",
      help="Attach a filesystem mount to the container")
    a("--tmpfs", action="append", type=parse_tmpfs, default=[], metavar="list", help="Mount a tmpfs directory")
    a("--device", action="append", type=parse_device, default=[], metavar="list",
      help="Add a host device to the container")
    a("--shm-size", type=flag_value("--shm-size", lambda v: str(ram_in_bytes(v))), metavar="bytes",
      help="Size of /dev/shm")
    a("--add-host", action="append", type=parse_add_host, default=[], metavar="list",
      help="Add a custom host-to-IP mapping (host:ip)")
    a("--dns-search", action="append", type=parse_dns_search, default=[], metavar="list",
      help="Set custom DNS search domains")
    a("--dns-option", action="append", default=[], metavar="list", help="Set DNS options")
    a("--ulimit", action="append", type=lim.parse_ulimit, default=[], metavar="ulimit", help="Ulimit options")
    a("--pids-limit", type=int_flag("--pids-limit"), metavar="int",
      help="Tune container pids limit (set -1 for unlimited)")
    a("--memory-swap", type=flag_value("--memory-swap", lim.parse_memory_swap), metavar="bytes",
      help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("-c", "--cpu-shares", type=int_flag("-c, --cpu-shares"), metavar="int", help="CPU shares (relative weight)")
    a("--cpuset-cpus", metavar="string", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--security-opt", action="append", default=[], metavar="list", help="Security Options")
    a("--pid", metavar="string", help="PID namespace to use")
    a("--ipc", metavar="string", help="IPC mode to use")
    a("--group-add", action="append", default=[], metavar="list", help="Add additional groups to join")
    a("--stop-signal", metavar="string", help='Signal to stop a container (default "SIGTERM")')
    a("--cidfile", metavar="string", help="Write the container ID to the file")
    a("--label-file", action="append", default=[], metavar="list", help="Read in a line delimited file of labels")
    a("--pull", default="missing", metavar="string",
      help='Pull image before running ("always"|"missing"|"never") (default "missing")')
    a("--platform", metavar="string", help="Set platform if server is multi-platform capable")
    if run:
        add_bool_flag(p, "--sig-proxy", default=True, help="Proxy received signals to the process (default true)")


# ---- the object --------------------------------------------------------------------------------------
class ContainerRequest(NamedTuple):
    """What the flags asked for: the object to create, plus facts the command needs afterwards.
    (A NamedTuple: ``dataclasses`` would cost ~10 ms of `k3c run`'s start.)"""

    obj: dict[str, Any]
    name_given: bool
    anonymous_volumes: list[str]
    named_volumes: list[Mount]  # docker-named ones (`-v NAME:…`, `--mount`)


def _network(value: str | None) -> bool:
    """Whether ``--network`` asks for the host's network."""
    return value == "host"


def _networks(value: str | None, aliases: list[str]) -> list[dict[str, Any]] | None:
    """``spec.networks`` for ``--network`` and ``--network-alias``: None for the default network (and host);
    ``none`` is loopback only; another name is a Network's (its object name, docker names mapped)."""
    if value in (None, "", "bridge", "default", "host"):
        if aliases:
            raise daemon_error("network-scoped alias is supported only for containers in user defined networks", 125)
        return None
    if value == "none":
        if aliases:
            raise daemon_error("network-scoped alias is supported only for containers in user defined networks", 125)
        return [{"name": "none"}]
    if not valid_docker_name(value):
        raise daemon_error(f"network {value} not found", 125)
    entry: dict[str, Any] = {"name": object_name(value)}
    if aliases:
        entry["aliases"] = list(dict.fromkeys(aliases))
    return [entry]


def _spec(args: argparse.Namespace, environ: Mapping[str, str], mounts: list[Mount],
          tmpfs: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {k: v for path in args.label_file for k, v in lim.read_label_file(path)}
    labels.update(dict(args.label))
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
        "networks": _networks(args.network, args.network_alias),
        "dns": list(args.dns) or None, "autoRemove": args.rm or None, "stopTimeout": args.stop_timeout,
        **_more_fields(args, tmpfs),
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def _more_fields(args: argparse.Namespace, tmpfs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields of :func:`_add_more_flags`' flags (None: not given)."""
    if args.pull not in ("always", "missing", "never"):
        raise daemon_error(f'invalid pull option: \'{args.pull}\': must be one of "always", "missing" or "never"',
                           125)
    return {
        "healthcheck": lim.healthcheck(args), "logOptions": lim.log_options(args.log_opt), "init": args.init or None, "publishAll": args.publish_all or None, "expose": parse_expose(args.expose) or None,
        "tmpfs": tmpfs or None, "devices": list(args.device) or None, "shmSize": args.shm_size,
        "extraHosts": list(args.add_host) or None, "dnsSearch": list(args.dns_search) or None,
        "dnsOptions": list(args.dns_option) or None,
        "ulimits": list({u["name"]: u for u in args.ulimit}.values()) or None,
        "pidsLimit": args.pids_limit if args.pids_limit and args.pids_limit > 0 else None,
        "memorySwap": args.memory_swap, "cpuShares": args.cpu_shares or None,
        "cpusetCpus": lim.parse_cpuset(args.cpuset_cpus) if args.cpuset_cpus else None,
        **lim.security_options(args.security_opt),
        "pidMode": lim.parse_pid_mode(args.pid) or None if args.pid is not None else None,
        "ipcMode": lim.parse_ipc_mode(args.ipc) if args.ipc else None,
        "groupAdd": list(args.group_add) or None,
        "stopSignal": lim.parse_stop_signal(args.stop_signal) if args.stop_signal else None,
        "pullPolicy": None if args.pull == "missing" else args.pull,
        "platform": lim.check_platform(args.platform) if args.platform else None,
    }


def _check_conflicts(args: argparse.Namespace) -> None:
    if args.rm and args.restart not in (None, "no"):
        raise daemon_error("conflicting options: cannot specify both --restart and --rm", 125)
    if args.memory is not None and int(args.memory) < MIN_MEMORY:
        raise daemon_error("Minimum memory limit allowed is 6MB", 125)
    if args.stop_timeout is not None and args.stop_timeout < 0:
        raise daemon_error("invalid stop timeout: must not be negative", 125)
    try:
        runoptions.check_limits(args.memory, args.memory_swap, args.shm_size, args.ipc)
    except ValueError as err:
        raise daemon_error(str(err), 125) from None


def build_container(args: argparse.Namespace, name: str, namespace: str, start: bool,
                    environ: Mapping[str, str] | None = None) -> ContainerRequest:
    """The LocalContainer for `k3c run`/`k3c create`: finalizer set, node the one ``--node`` names, else left
    for an operator to claim."""
    _check_conflicts(args)
    environ = os.environ if environ is None else environ
    mounts: list[Mount] = list(args.volume)
    tmpfs = list(args.tmpfs)
    for m in args.mount:
        entry = mount_entry(m)
        if isinstance(entry, Tmpfs):
            tmpfs.append(entry.spec)
        else:
            mounts.append(entry)
    check_mount_points([m.spec for m in mounts], tmpfs)
    spec = _spec(args, environ, mounts, tmpfs)
    spec["state"] = "Running" if start else "Stopped"
    spec["nodeName"] = args.node or ""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "finalizers": [CONTAINER_FINALIZER]}
    k8s_labels = {k: v for k, v in spec.get("labels", {}).items() if k8s_label_ok(k, v)}
    if k8s_labels:
        meta["labels"] = k8s_labels
    annotations: dict[str, str] = {CREATED_ANNOTATION: format_rfc3339_ns(time.time_ns())}
    anon = [m.spec["volume"] for m in mounts if m.anonymous]
    if anon:
        annotations[ANONYMOUS_VOLUMES_ANNOTATION] = ",".join(anon)
    if args.rm and start and not getattr(args, "detach", False):
        # We show the output and remove the object ourselves: the operator's removal must not beat our attach.
        annotations[ATTACHED_RUN_ANNOTATION] = "true"
    meta["annotations"] = annotations
    obj = {"apiVersion": LOCAL_CONTAINERS.api_version, "kind": LOCAL_CONTAINERS.kind, "metadata": meta,
           "spec": spec}
    return ContainerRequest(obj, name_given=bool(args.name), anonymous_volumes=anon,
                            named_volumes=[m for m in mounts if m.docker_name])
