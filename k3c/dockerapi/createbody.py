"""A docker create body (``Config`` plus ``HostConfig``) as a LocalContainer spec, honouring only what k3c can.

Clients send every HostConfig field, most of them zero. Each field is either honoured (mapped below) or
must be zero: a non-zero value of any other field is refused with 400 naming it, never silently dropped,
so a caller learns at once that k3c would run something other than what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from k3c import dockerid, mountspec
from k3c.dockerapi.bodies import strings as _strings
from k3c.dockerapi.bodies import typed as _typed
from k3c.dockerapi.errors import BadParameter
from k3c.dockerapi.hostconfig import checked, mounts, run_options

#: Config fields that are read (the others must be zero); Attach* and ArgsEscaped carry no container state
CONFIG_FIELDS = frozenset({
    "Hostname", "User", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "WorkingDir", "Entrypoint",
    "Labels", "StopTimeout", "ExposedPorts", "AttachStdin", "AttachStdout", "AttachStderr", "ArgsEscaped",
    "HostConfig", "NetworkingConfig", "StopSignal", "Healthcheck",
})
#: HostConfig fields that are honoured; a non-zero value of any other is a 400
HOST_CONFIG_FIELDS = frozenset({
    "Binds", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "Privileged", "ReadonlyRootfs",
    "CapAdd", "CapDrop", "Dns", "Memory", "NanoCpus", "PublishAllPorts", "ConsoleSize",
    # the run options k3c.dockerapi.hostconfig reads, as `k3c run`'s flags do
    "Init", "Tmpfs", "Mounts", "Devices", "ShmSize", "ExtraHosts", "DnsSearch", "DnsOptions", "Ulimits",
    "PidsLimit", "MemorySwap", "CpuShares", "CpusetCpus", "SecurityOpt", "PidMode", "IpcMode", "GroupAdd",
    "LogConfig",
})
#: values of otherwise-refused fields that mean the default (what clients send when nothing was asked)
DEFAULT_VALUES: dict[str, frozenset[Any]] = {
    "Runtime": frozenset({"runc"}), "Isolation": frozenset({"default"}), "CgroupnsMode": frozenset({"private"}),
    "MemorySwappiness": frozenset({-1}),
}


@dataclass
class CreateRequest:
    """What a create body asked for: the spec, and the named volumes its Binds refer to by docker name."""

    spec: dict[str, Any]
    volumes: dict[str, str] = field(default_factory=dict)  #: Volume object name → docker name
    #: HostConfig.NetworkMode and NetworkingConfig.EndpointsConfig: networks by docker name or ID, which
    #: k3c.dockerapi.endpoints resolves into ``spec.networks`` (only the API server knows the names)
    network_mode: str = ""
    endpoints: dict[str, Any] = field(default_factory=dict)


def is_zero(value: Any) -> bool:
    """Go's zero value, recursively: what a client sends for a field it was not asked to set."""
    if isinstance(value, dict):
        return all(is_zero(v) for v in value.values())
    if isinstance(value, list):
        return all(is_zero(v) for v in value)
    return value in (None, "", 0, False)


def _check_allowed(doc: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key, value in doc.items():
        if key in allowed or is_zero(value):
            continue
        if isinstance(value, (str, int)) and value in DEFAULT_VALUES.get(key, frozenset()):
            continue
        raise BadParameter(f"{where}.{key} is not supported by k3c (got {value!r})")


def _ports(bindings: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, hosts in bindings.items():
        port, _, proto = key.partition("/")
        if not port.isdigit():
            raise BadParameter(f"invalid port specification: {key!r}")
        if not isinstance(hosts, list | None) or not all(isinstance(h, dict | None) for h in hosts or []):
            raise BadParameter(f"json: cannot unmarshal HostConfig.PortBindings[{key!r}]: want a list of objects")
        for host in hosts or [{}]:
            hp = str((host or {}).get("HostPort") or "0")
            if not hp.isdigit():
                raise BadParameter(f"invalid host port {hp!r} for {key}")
            entry: dict[str, Any] = {"containerPort": int(port), "protocol": (proto or "tcp").upper()}
            if int(hp):
                entry["hostPort"] = int(hp)
            if (host or {}).get("HostIp"):
                entry["hostIP"] = host["HostIp"]
            out.append(entry)
    return out


def _restart(policy: dict[str, Any]) -> str | None:
    name = policy.get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise BadParameter(f"invalid restart policy '{name}'")
    count = policy.get("MaximumRetryCount") or 0
    if not isinstance(count, int) or isinstance(count, bool):
        raise BadParameter("json: cannot unmarshal HostConfig.RestartPolicy.MaximumRetryCount of type int")
    if name == "on-failure" and count:
        return f"on-failure:{int(count)}"
    return None if name == "no" else name


def _binds(binds: list[str], volumes: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for bind in binds:
        parts = bind.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            raise BadParameter(f"invalid volume specification: '{bind}'")
        src, dst, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        if set(mode.split(",")) - {"", "ro", "rw", "z", "Z"}:
            raise BadParameter(f"invalid mode: {mode}")
        mount: dict[str, Any] = {"mountPath": dst}
        if src.startswith("/"):
            mount["hostPath"] = src
        elif dockerid.valid_docker_name(src):
            mount["volume"] = dockerid.object_name(src)
            volumes[mount["volume"]] = src
        else:
            raise BadParameter(f'create {src}: "{src}" includes invalid characters for a local volume name')
        if "ro" in mode.split(","):
            mount["readOnly"] = True
        out.append(mount)
    return out


def _network(mode: str | None) -> bool | None:
    if mode and mode.startswith("container:"):
        raise BadParameter(f"network mode {mode} is not supported by k3c (a container's own network only)")
    return True if mode == "host" else None


def _endpoints(body: dict[str, Any]) -> dict[str, Any]:
    networking = _typed(body, "NetworkingConfig", dict, "Config") or {}
    endpoints = _typed(networking, "EndpointsConfig", dict, "NetworkingConfig") or {}
    for name, config in endpoints.items():
        if config is not None and not isinstance(config, dict):
            raise BadParameter(f"json: cannot unmarshal NetworkingConfig.EndpointsConfig[{name!r}]: want an object")
    return {str(k): v or {} for k, v in endpoints.items()}


def container_spec(body: dict[str, Any]) -> CreateRequest:
    """The LocalContainer spec of a create body; 400 for a wrong type or a field k3c does not honour."""
    _check_allowed(body, CONFIG_FIELDS, "Config")
    host = _typed(body, "HostConfig", dict, "Config") or {}
    _check_allowed(host, HOST_CONFIG_FIELDS, "HostConfig")
    image = _typed(body, "Image", str, "Config")
    if not image:
        raise BadParameter("config cannot be empty in order to create a container")
    env = _strings(body, "Env", "Config") or []
    labels = _typed(body, "Labels", dict, "Config") or {}
    volumes: dict[str, str] = {}
    memory = _typed(host, "Memory", int, "HostConfig")
    nano = _typed(host, "NanoCpus", int, "HostConfig")
    exposed = _typed(body, "ExposedPorts", dict, "Config") or {}
    mounted, tmpfs = mounts(host)
    volumes.update({m.spec["volume"]: m.docker_name for m in mounted if m.docker_name})
    binds = _binds(_strings(host, "Binds", "HostConfig") or [], volumes) + [m.spec for m in mounted]
    checked(mountspec.check_mount_points, binds, tmpfs)
    optional: dict[str, Any] = {
        "command": _strings(body, "Entrypoint", "Config") or None,
        "args": _strings(body, "Cmd", "Config") or None,
        "env": [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in env)] or None,
        "workingDir": _typed(body, "WorkingDir", str, "Config") or None,
        "user": _typed(body, "User", str, "Config") or None,
        "hostname": _typed(body, "Hostname", str, "Config") or None,
        "tty": _typed(body, "Tty", bool, "Config") or None,
        "stdin": _typed(body, "OpenStdin", bool, "Config") or None,
        "stdinOnce": _typed(body, "StdinOnce", bool, "Config") or None,
        "labels": {str(k): str(v) for k, v in labels.items()} or None,
        "stopTimeout": _typed(body, "StopTimeout", int, "Config"),
        "expose": [{"containerPort": int(k.partition("/")[0]), "protocol": (k.partition("/")[2] or "tcp").upper()}
                   for k in exposed if k.partition("/")[0].isdigit()] or None,
        "ports": _ports(_typed(host, "PortBindings", dict, "HostConfig") or {}) or None,
        "volumes": binds or None, "tmpfs": tmpfs or None,
        "hostNetwork": _network(_typed(host, "NetworkMode", str, "HostConfig")),
        "restartPolicy": _restart(_typed(host, "RestartPolicy", dict, "HostConfig") or {}),
        "autoRemove": _typed(host, "AutoRemove", bool, "HostConfig") or None,
        "privileged": _typed(host, "Privileged", bool, "HostConfig") or None,
        "readOnlyRootFilesystem": _typed(host, "ReadonlyRootfs", bool, "HostConfig") or None,
        "capAdd": _strings(host, "CapAdd", "HostConfig") or None,
        "capDrop": _strings(host, "CapDrop", "HostConfig") or None,
        "dns": _strings(host, "Dns", "HostConfig") or None,
        "memory": str(memory) if memory else None,
        "cpus": f"{nano / 1e9:g}" if nano else None,
        "publishAll": _typed(host, "PublishAllPorts", bool, "HostConfig") or None,
        **run_options(body, host, str(memory) if memory else None),
    }
    spec = {"image": image, **{k: v for k, v in optional.items() if v is not None}}
    return CreateRequest(spec, volumes, _typed(host, "NetworkMode", str, "HostConfig") or "", _endpoints(body))
