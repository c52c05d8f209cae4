"""Docker's view of k3c's objects: a container's state as `docker ps` words it, and what `docker inspect` prints.

Shared by the two front doors that show objects the docker way, the CLI (`k3c ps`, `k3c inspect`) and
the Docker Engine API (:mod:`k3c.dockerapi`), so both show the same fields with the same values.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from k3c import dockerid
from k3c.api import CREATED_ANNOTATION, IMAGE_ID_ANNOTATION
from k3c.containerlife import is_running
from k3c.timefmt import parse_duration_ns, parse_rfc3339_ns, since
from k3c.units import human_duration

DOCKER_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_SHM_BYTES = 64 * 1024 * 1024  # containerd's /dev/shm for a sandbox, as docker's default
# `inspect` keys for what a k3c container has no counterpart of (files a dockerd keeps per container, a graph
# driver, links and volumes-from, blkio, realtime and Windows limits, a MAC or endpoint of docker's own
# network): docker's zero values, so templates and clients that read docker's keys find them, with its types.
UNSET_TOP = {"ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "MountLabel": "", "ProcessLabel": "",
             "ExecIDs": None}
UNSET_CONFIG = {"Domainname": "", "AttachStdout": False, "AttachStderr": False, "Volumes": None, "OnBuild": None}
UNSET_HOST_CONFIG = {
    "ContainerIDFile": "", "VolumeDriver": "", "VolumesFrom": None, "CgroupnsMode": "", "Cgroup": "",
    "Links": None, "OomScoreAdj": 0, "UTSMode": "", "UsernsMode": "", "Runtime": "runc", "ConsoleSize": [0, 0],
    "Isolation": "", "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": None,
    "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetMems": "", "DeviceCgroupRules": None,
    "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0,
    "MemorySwappiness": None, "OomKillDisable": False, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
}
UNSET_NETWORK = {"Bridge": "", "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                 "SandboxKey": "", "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
                 "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPPrefixLen": 0,
                 "IPv6Gateway": "", "MacAddress": ""}


def runtime_id(obj: dict[str, Any]) -> str:
    """The CRI container of the object's current start ('' before the first): never shown as an ID, only
    used to tell one start from the next."""
    return str((obj.get("status") or {}).get("containerID") or "")


def docker_state(obj: dict[str, Any], now: float | None = None) -> tuple[str, str]:
    """(State, Status) as docker prints them: ("running", "Up 5 minutes"), ("exited", "Exited (0) 3 seconds ago")."""
    st = obj.get("status") or {}
    ph = st.get("phase") or "Pending"
    if obj["metadata"].get("deletionTimestamp"):
        return "removing", "Removal In Progress"
    if ph == "Running":
        health = (st.get("health") or {}).get("status")
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        up = "Up " + human_duration(since(st.get("startedAt"), now) or 0)
        if st.get("paused"):
            return "paused", up + " (Paused)"
        return "running", up + suffix.get(health or "", "")
    if ph == "Exited":
        ago = since(st.get("finishedAt"), now)
        code = st.get("exitCode", 0)
        if (st.get("summary") or "").startswith("Restarting"):  # the restart policy will start it again
            return "restarting", f"Restarting ({code}) {human_duration(ago or 0)} ago"
        return "exited", f"Exited ({code}) {human_duration(ago)} ago" if ago is not None else f"Exited ({code})"
    if ph == "Failed":
        return "dead", "Failed"
    if st.get("restartCount") and st.get("finishedAt"):
        restarted = human_duration(since(st.get("finishedAt"), now) or 0)
        return "restarting", f"Restarting ({st.get('exitCode', 0)}) {restarted} ago"
    return "created", "Created"


def active(obj: dict[str, Any]) -> bool:
    """Running, paused or restarting (or on its way up), as docker counts an active container: prune spares
    it, a created or exited one goes."""
    return is_running(obj) or docker_state(obj)[0] in ("running", "paused", "restarting")


def parse_bytes(value: str | None) -> int:
    """spec.memory (bytes, docker suffixes or Ki/Mi/Gi/Ti) as bytes."""
    if not value:
        return 0
    m = re.match(r"^([0-9.]+)\s*([a-zA-Z]*)$", str(value))
    if not m:
        return 0
    unit = m.group(2).lower().rstrip("b").rstrip("i")
    power = " kmgtp".index(unit) if unit and unit in "kmgtp" else 0
    return int(float(m.group(1)) * 1024 ** power)


def _port_key(p: dict[str, Any]) -> str:
    return f"{p.get('containerPort')}/{(p.get('protocol') or 'TCP').lower()}"


def _port_map(ports: list[dict[str, Any]], default_ip: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        out.setdefault(_port_key(p), []).append({"HostIp": p.get("hostIP") or default_ip,
                                                 "HostPort": str(p.get("hostPort") or "")})
    return out


def _restart_policy(value: str) -> dict[str, Any]:
    name, _, count = value.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _mounts(spec: dict[str, Any], volumes: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for m in spec.get("volumes") or []:
        if m.get("volume"):
            out.append({"Type": "volume", "Name": volumes.get(m["volume"], m["volume"]), "Source": "",
                        "Destination": m.get("mountPath"), "Driver": "local", "Mode": "z",
                        "RW": not m.get("readOnly"), "Propagation": ""})
        else:
            out.append({"Type": "bind", "Source": m.get("hostPath"), "Destination": m.get("mountPath"),
                        "Mode": "", "RW": not m.get("readOnly"), "Propagation": "rprivate"})
    return out


def image_defaults(spec: Mapping[str, Any], image: Mapping[str, Any] | None) -> dict[str, Any]:
    """What dockerd stores as a container's config at create: the asked-for fields, the image's config filling
    in the rest (its Cmd unless an entrypoint or command was given, its entrypoint, working dir and user, its
    environment variables not set by the container, its labels under the container's). A client reads the
    command a service runs from there (compose's ``ps``). ``image`` is the Image's config (status.config),
    None when unknown: then only what was asked is shown, as the CLI does."""
    image = image or {}
    entrypoint, cmd = spec.get("command"), spec.get("args")
    if not entrypoint:
        cmd = cmd or image.get("Cmd")
        entrypoint = image.get("Entrypoint") if entrypoint is None else entrypoint
    env = [f"{e['name']}={e.get('value', '')}" for e in spec.get("env") or []]
    mine = {e.partition("=")[0] for e in env}
    env += [e for e in image.get("Env") or [] if e.partition("=")[0] not in mine]
    return {"Entrypoint": entrypoint or None, "Cmd": cmd or None, "Env": env,
            "WorkingDir": spec.get("workingDir") or image.get("WorkingDir") or "",
            "User": spec.get("user") or image.get("User") or "",
            "Labels": {**(image.get("Labels") or {}), **(spec.get("labels") or {})}}


def _config(obj: dict[str, Any], image: Mapping[str, Any] | None) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    optional = {"StopSignal": spec.get("stopSignal"), "Healthcheck": _healthcheck(spec.get("healthcheck"))}
    merged = image_defaults(spec, image)
    return {
        **UNSET_CONFIG, **{k: v for k, v in optional.items() if v},
        "Hostname": spec.get("hostname") or obj["metadata"]["name"], "User": merged["User"],
        "AttachStdin": False, "Tty": bool(spec.get("tty")), "OpenStdin": bool(spec.get("stdin")),
        "StdinOnce": bool(spec.get("stdinOnce")), "Env": merged["Env"],
        "Cmd": merged["Cmd"], "Image": spec.get("image", ""), "WorkingDir": merged["WorkingDir"],
        "Entrypoint": merged["Entrypoint"], "Labels": merged["Labels"],
        "StopTimeout": spec.get("stopTimeout", 10),
        "ExposedPorts": {_port_key(p): {} for p in spec.get("ports") or []} or None,
    }


def _healthcheck(check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """spec.healthcheck as docker's Config.Healthcheck: durations in nanoseconds, unset ones left out."""
    if not check:
        return None
    out: dict[str, Any] = {"Test": list(check.get("test") or [])}
    for field, key in (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod")):
        if check.get(field):
            out[key] = parse_duration_ns(str(check[field]))
    if check.get("retries"):
        out["Retries"] = int(check["retries"])
    return out


def _network_mode(spec: dict[str, Any], networks: Mapping[str, tuple[str, str]]) -> str:
    """docker's NetworkMode: ``host``, the first network a container was created on, else ``bridge``."""
    if spec.get("hostNetwork"):
        return "host"
    first = (spec.get("networks") or [{}])[0].get("name")
    return networks.get(first, (first, ""))[0] if first else "bridge"


def _host_config(spec: dict[str, Any], volumes: Mapping[str, str],
                 networks: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    binds = [f"{volumes.get(m['volume'], m['volume']) if m.get('volume') else m.get('hostPath')}:{m.get('mountPath')}"
             + (":ro" if m.get("readOnly") else "") for m in spec.get("volumes") or []]
    return {
        **UNSET_HOST_CONFIG, **_optional_host_config(spec), **_limits(spec), **_namespaces(spec),
        "Binds": binds or None, "NetworkMode": _network_mode(spec, networks),
        "PortBindings": _port_map(spec.get("ports") or [], ""),
        "RestartPolicy": _restart_policy(spec.get("restartPolicy") or "no"), "AutoRemove": bool(spec.get("autoRemove")),
        "CapAdd": spec.get("capAdd"), "CapDrop": spec.get("capDrop"), "Dns": spec.get("dns") or [],
        "Privileged": bool(spec.get("privileged")), "ReadonlyRootfs": bool(spec.get("readOnlyRootFilesystem")),
        "Memory": parse_bytes(spec.get("memory")),
        "NanoCpus": int(float(spec["cpus"]) * 1e9) if spec.get("cpus") else 0,
    }


def _limits(spec: dict[str, Any]) -> dict[str, Any]:
    swap = spec.get("memorySwap")
    return {
        "CpuShares": spec.get("cpuShares", 0), "CpusetCpus": spec.get("cpusetCpus", ""),
        "MemorySwap": -1 if swap == "-1" else parse_bytes(swap), "PidsLimit": spec.get("pidsLimit"),
        "ShmSize": parse_bytes(spec.get("shmSize")) or DEFAULT_SHM_BYTES,
        "Ulimits": [{"Name": u["name"], "Soft": u["soft"], "Hard": u["hard"]} for u in spec.get("ulimits") or []]
        or None,
        "Devices": [{"PathOnHost": d["hostPath"], "PathInContainer": d.get("containerPath") or d["hostPath"],
                     "CgroupPermissions": d.get("permissions") or "rwm"} for d in spec.get("devices") or []],
    }


def _namespaces(spec: dict[str, Any]) -> dict[str, Any]:
    """Namespaces, names and security: the `run` flags' HostConfig fields."""
    security = [*(["no-new-privileges"] if spec.get("noNewPrivileges") else []),
                *([f"seccomp={spec['seccompProfile']}"] if spec.get("seccompProfile") else []),
                *([f"apparmor={spec['apparmorProfile']}"] if spec.get("apparmorProfile") else [])]
    return {
        "IpcMode": spec.get("ipcMode") or "private", "PidMode": spec.get("pidMode") or "",
        "GroupAdd": spec.get("groupAdd") or None, "SecurityOpt": security or None,
        "DnsOptions": spec.get("dnsOptions") or [], "DnsSearch": spec.get("dnsSearch") or [],
        "ExtraHosts": [f"{h['name']}:{h['ip']}" for h in spec.get("extraHosts") or []] or None,
        "PublishAllPorts": bool(spec.get("publishAll")),
    }


def _optional_host_config(spec: dict[str, Any]) -> dict[str, Any]:
    """What docker shows only when set (Init, Tmpfs), and the log configuration.

    The log driver is named "json-file": docker's clients decide from this name whether logs can be read
    back through the API (docker-compose shows no logs for any other driver but journald), and k3c's logs
    do behave as json-file's: readable with follow/tail/since, rotated by max-size and max-file. The file on
    disk is in the CRI's format, which no docker client reads directly (LogPath shows where it is).
    """
    opts = spec.get("logOptions") or {}
    log = {k: str(opts[o]) for k, o in (("max-size", "maxSize"), ("max-file", "maxFile")) if opts.get(o)}
    out: dict[str, Any] = {"LogConfig": {"Type": "json-file", "Config": log}}
    if spec.get("init"):
        out["Init"] = True
    if spec.get("tmpfs"):
        out["Tmpfs"] = {t["mountPath"]: t.get("options", "") for t in spec["tmpfs"]}
    return out


def docker_inspect(obj: dict[str, Any], volumes: Mapping[str, str] | None = None, subnet: str = "",
                   networks: Mapping[str, tuple[str, str]] | None = None,
                   image: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A LocalContainer in the shape of `docker inspect` (the fields scripts use), k3c's extras under K3c;
    ``volumes`` maps Volume object names to their docker names; ``subnet``, k3c's bridge network where the
    caller knows it (the Docker API does), gives the endpoint's gateway and prefix length; ``networks`` maps
    Network object names to their docker names and IDs (k3c.dockernetwork.network_names); ``image``, the
    config of its Image where the caller has it, fills in what the container did not ask for
    (:func:`image_defaults`)."""
    volumes = volumes or {}
    networks = networks or {}
    spec, st, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    config = _config(obj, image)
    argv = [*(config["Entrypoint"] or []), *(config["Cmd"] or [])]
    state, _ = docker_state(obj)
    network = "host" if spec.get("hostNetwork") else "bridge"
    return {
        **UNSET_TOP, "LogPath": st.get("logPath", ""), "AppArmorProfile": spec.get("apparmorProfile", ""),
        "GraphDriver": {"Data": None, "Name": "overlayfs"},
        "Id": dockerid.object_id(obj), "Created": meta.get("creationTimestamp"),
        "Path": argv[0] if argv else "", "Args": argv[1:],
        "State": {
            "Status": state, "Running": state in ("running", "paused"), "Paused": state == "paused",
            "Restarting": state == "restarting",
            "OOMKilled": st.get("reason") == "OOMKilled", "Dead": state == "dead", "Pid": 0,
            "ExitCode": st.get("exitCode", 0), "Error": st.get("message", "") if state == "dead" else "",
            "StartedAt": st.get("startedAt") or ZERO_TIME, "FinishedAt": st.get("finishedAt") or ZERO_TIME,
            **_health(st),
        },
        "Image": st.get("imageID") or (meta.get("annotations") or {}).get(IMAGE_ID_ANNOTATION, ""), "Name": "/" + dockerid.docker_name(obj),
        "RestartCount": st.get("restartCount", 0),
        "Driver": "overlayfs", "Platform": "linux",
        "HostConfig": _host_config(spec, volumes, networks), "Mounts": _mounts(spec, volumes), "Config": config,
        "NetworkSettings": {
            **UNSET_NETWORK, "IPAddress": st.get("ip", ""), "Ports": _port_map(st.get("ports") or [], "0.0.0.0"),
            "SandboxID": st.get("sandboxID", ""),
            **_gateway(st.get("ip", ""), subnet),
            "Networks": _networks(meta, spec, st, subnet, networks) or {network: _endpoint(st.get("ip", ""), subnet)},
        },
        "K3c": {
            "Namespace": meta.get("namespace"), "Object": meta["name"], "UID": meta.get("uid"),
            "RuntimeID": runtime_id(obj),
            "Node": st.get("node") or spec.get("nodeName") or "", "Phase": st.get("phase", "Pending"),
            "DesiredState": spec.get("state", "Running"), "Message": st.get("message", ""),
            "ResourceVersion": meta.get("resourceVersion"), "Conditions": st.get("conditions") or [],
        },
    }


def list_fields(obj: dict[str, Any], subnet: str = "", networks: Mapping[str, tuple[str, str]] | None = None,
                image: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fields of :func:`docker_inspect` a container list (``GET /containers/json``) shows, computed
    alone: a list builds them for every container, and the whole inspect document was most of its time."""
    networks = networks or {}
    spec, st, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    merged = image_defaults(spec, image)
    network = "host" if spec.get("hostNetwork") else "bridge"
    return {
        "Id": dockerid.object_id(obj), "Name": "/" + dockerid.docker_name(obj),
        "Argv": [*(merged["Entrypoint"] or []), *(merged["Cmd"] or [])],
        "Image": st.get("imageID") or (meta.get("annotations") or {}).get(IMAGE_ID_ANNOTATION, ""),
        "NetworkMode": _network_mode(spec, networks), "Mounts": _mounts(spec, {}),
        "Networks": _networks(meta, spec, st, subnet, networks) or {network: _endpoint(st.get("ip", ""), subnet)},
    }


def _gateway(ip: str, subnet: str) -> dict[str, Any]:
    """Gateway and IPPrefixLen of an address on k3c's bridge: the subnet's first host is the bridge's own
    address, as host-local hands them out ({} when either is unknown, leaving docker's zero values)."""
    if not ip or not subnet:
        return {}
    return dict(_subnet_gateway(subnet))  # (a copy: the remembered one is shared)


@functools.lru_cache(maxsize=64)
def _subnet_gateway(subnet: str) -> dict[str, Any]:
    net = ipaddress.ip_network(subnet, strict=False)
    return {"Gateway": str(net.network_address + 1), "IPPrefixLen": net.prefixlen}


def _endpoint(ip: str, subnet: str) -> dict[str, Any]:
    """One ``NetworkSettings.Networks`` entry with all of docker's EndpointSettings keys (testcontainers,
    for one, reads ``Gateway`` there to reach published ports from inside a container)."""
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": ip, "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None, **_gateway(ip, subnet)}


def _networks(meta: dict[str, Any], spec: dict[str, Any], st: dict[str, Any], subnet: str,
              names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """``NetworkSettings.Networks`` of a container on networks of its own: where the node attached it
    (``status.networks``), else where it asked to be (no address yet); {} for the default network alone,
    which the caller shows as before."""
    out: dict[str, Any] = {}
    short_id = dockerid.object_id({"metadata": meta})[:12]
    attached = {n.get("name"): n for n in st.get("networks") or []}
    for name in list(attached) or [n.get("name") for n in spec.get("networks") or []]:
        if not name:
            continue
        docker_name, net_id = names.get(name, (name, ""))
        at = attached.get(name) or {}
        wanted: dict[str, Any] = next((n for n in spec.get("networks") or [] if n.get("name") == name), {})
        entry = _endpoint(at.get("ip", ""), subnet if name == "bridge" and not at.get("prefixLength") else "")
        if at.get("gateway"):
            entry["Gateway"] = at["gateway"]
        if at.get("prefixLength"):
            entry["IPPrefixLen"] = at["prefixLength"]
        aliases = list(at.get("aliases") or wanted.get("aliases") or [])
        if name not in ("bridge", "none") and short_id not in aliases:
            aliases.append(short_id)  # docker's: a container answers to its short ID on user networks
        entry.update(NetworkID=net_id, MacAddress=at.get("mac", ""), Aliases=aliases or None)
        if wanted.get("ipv4Address"):
            entry["IPAMConfig"] = {"IPv4Address": wanted["ipv4Address"]}
        out[docker_name] = entry
    return out


def _health(status: dict[str, Any]) -> dict[str, Any]:
    """State.Health, when the container has a health check."""
    health = status.get("health")
    if not health:
        return {}
    return {"Health": {"Status": health.get("status", "starting"), "FailingStreak": health.get("failingStreak", 0),
                       "Log": [{"Start": r.get("start"), "End": r.get("end"), "ExitCode": r.get("exitCode"),
                                "Output": r.get("output", "")} for r in health.get("log") or []]}}


def users_of(name: str, containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in containers if any(m.get("volume") == name for m in (c.get("spec") or {}).get("volumes") or [])]


def docker_volume(obj: dict[str, Any]) -> dict[str, Any]:
    """A Volume as `docker volume inspect` shows one; k3c's own facts under K3c."""
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return {
        "CreatedAt": meta.get("creationTimestamp"), "Driver": spec.get("driver", "local"),
        "Labels": dockerid.docker_labels(meta), "Mountpoint": st.get("mountpoint", ""),
        "Name": dockerid.docker_name(obj),
        "Options": None, "Scope": "local",
        "K3c": {"Namespace": meta.get("namespace"), "Node": st.get("node") or spec.get("nodeName") or "",
                "Phase": st.get("phase", "Pending"), "UsedBy": st.get("usedBy") or [], "Message": st.get("message", "")},
    }


def image_reference(obj: dict[str, Any]) -> str:
    """The reference an Image object stands for (``docker.io/library/busybox:latest``)."""
    reference: str = (obj.get("spec") or {}).get("reference", "")
    return reference


def image_id(obj: dict[str, Any]) -> str:
    """An Image object's docker image ID (``sha256:`` + the config digest), '' before containerd has it."""
    return str((obj.get("status") or {}).get("id") or "")


def _familiar(obj: dict[str, Any]) -> str:
    from k3c.oci.reference import InvalidReference, parse  # only here: every CLI command imports this module

    try:
        return parse(image_reference(obj)).familiar()
    except InvalidReference:
        return image_reference(obj)


def docker_image(obj: dict[str, Any], images: list[dict[str, Any]]) -> dict[str, Any]:
    """An Image object as `docker image inspect` shows it; ``images`` are all Image objects, whose other
    references to the same image ID become its RepoTags. k3c's own facts under K3c."""
    st, meta = obj.get("status") or {}, obj["metadata"]
    iid = image_id(obj)
    same = [o for o in images if iid and image_id(o) == iid] or [obj]
    tags = sorted(_familiar(o) for o in same if (o.get("status") or {}).get("tag", "<none>") != "<none>")
    digests = sorted({d for o in same for d in (o.get("status") or {}).get("repoDigests") or []})
    os_name, _, arch = (st.get("platform") or "/").partition("/")
    return {
        "Id": iid, "RepoTags": tags, "RepoDigests": digests, "Parent": "", "Comment": "",
        "Created": st.get("created", ""), "Container": "", "ContainerConfig": {},
        "DockerVersion": "", "Author": "", "Config": st.get("config") or {},
        "Architecture": arch, "Os": os_name, "Size": st.get("size", 0), "VirtualSize": st.get("size", 0),
        "GraphDriver": {"Name": "overlayfs", "Data": None},
        "RootFS": {"Type": "layers", "Layers": st.get("diffIDs") or []},
        "Metadata": {"LastTagTime": meta.get("creationTimestamp", "")},
        "K3c": {"Object": meta["name"], "Reference": image_reference(obj), "Digest": st.get("digest", ""),
                "MediaType": st.get("mediaType", ""), "Phase": st.get("phase", ""), "Node": st.get("node", ""),
                "Layers": st.get("layers") or []},
    }


def history_steps(status: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """An Image's config history (its status), oldest first, each step with the size of the layer it made
    (0 for an ``empty_layer`` step): layers are matched to the steps that made them, in order."""
    sizes = [int(layer.get("size") or 0) for layer in status.get("layers") or []]
    steps: list[tuple[dict[str, Any], int]] = []
    layer = 0
    for step in status.get("history") or []:
        size = 0
        if not step.get("empty_layer"):
            size = sizes[layer] if layer < len(sizes) else 0
            layer += 1
        steps.append((step, size))
    return steps


def sort_newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """docker's order: the newest first, by full-precision creation time. The server's creationTimestamp
    (whole seconds) comes first; within one second the client's :data:`CREATED_ANNOTATION` (nanoseconds)
    keeps the order they were made in; the name only orders objects made without it (`kubectl apply`)."""
    return sorted(items, key=creation_order, reverse=True)


def creation_order(obj: dict[str, Any]) -> tuple[str, int, str]:
    meta = obj["metadata"]
    precise = _created_ns((meta.get("annotations") or {}).get(CREATED_ANNOTATION) or "")
    return str(meta.get("creationTimestamp") or ""), precise, str(meta["name"])


@functools.lru_cache(maxsize=4096)
def _created_ns(text: str) -> int:
    """:data:`CREATED_ANNOTATION` in nanoseconds (0 if unreadable), remembered: every list sorts by it."""
    try:
        return parse_rfc3339_ns(text)
    except ValueError:
        return 0
