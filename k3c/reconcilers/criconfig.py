"""A LocalContainer's spec as CRI configs: pure functions, no I/O, so every mapping is easy to test.

The mapping follows what `docker run` does with the same flags, expressed the way a kubelet would for a
one-container pod: entrypoint/cmd as command/args, ports as sandbox port mappings (portmap CNI), host
network/hostname/DNS/privileged on the sandbox, everything else on the container.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.api import (
    CRI_MANAGED_LABEL,
    CRI_NAME_LABEL,
    CRI_NAMESPACE_LABEL,
    CRI_NETWORKS_ANNOTATION,
    CRI_NODE_LABEL,
    CRI_POOL_LABEL,
    CRI_SANDBOX_SPEC_ANNOTATION,
    CRI_SPEC_HASH_ANNOTATION,
    CRI_UID_LABEL,
    DEFAULT_NETWORK,
    container_log_file,
)
from k3c.cri.runtime import pb
from k3c.reconcilers.statuses import PortStatus
from k3c.units import ram_in_bytes

CGROUP_PARENT = "/k3c"
SANDBOX_NAMESPACE = "k3c"

#: What kubelet passes for a non-privileged container; containerd masks nothing unless told.
MASKED_PATHS = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_PROTOCOLS = {"TCP": pb.TCP, "UDP": pb.UDP, "SCTP": pb.SCTP}
#: Spec fields that do not shape the container: changing them never recreates it.
_NON_RUNTIME_FIELDS = {"state", "restartPolicy", "autoRemove", "stopTimeout", "nodeName"}
#: Spec fields that only set the running container's resources: a change is applied to it in place
#: (CRI UpdateContainerResources, `docker update`) instead of replacing it.
#: ``pidsLimit`` is not CRI's: the operator writes it into containerd's record of the container first
#: (k3c.reconcilers.ociamend.set_pids_limit), and CRI's update hands the record's resources to the task.
RESOURCE_FIELDS = frozenset({"memory", "cpus", "cpuShares", "cpusetCpus", "memorySwap", "pidsLimit"})


class SpecError(ValueError):
    """The spec cannot be turned into a container (bad value the schema could not catch)."""


# ------------------------------------------------------------------------------------------ parsing


def parse_memory(value: str) -> int:
    """docker -m syntax (``256m``, ``1g``, ``512Mi``, bytes) to bytes."""
    try:
        number = ram_in_bytes(value)
    except ValueError:
        raise SpecError(f"invalid memory limit {value!r}") from None
    if number < 6 * 1024 * 1024:
        raise SpecError(f"memory limit {value!r} is below the minimum of 6 MiB")
    return int(number)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """docker --restart: ``no``, ``always``, ``unless-stopped`` or ``on-failure`` with optional max retries."""

    name: str = "no"
    max_retries: int = 0  # 0: unlimited (on-failure only)

    @classmethod
    def parse(cls, value: str | None) -> RestartPolicy:
        value = (value or "no").strip()
        name, _, count = value.partition(":")
        if name not in ("no", "always", "unless-stopped", "on-failure") or (count and name != "on-failure"):
            raise SpecError(f"invalid restart policy {value!r}")
        if count and not count.isdigit():
            raise SpecError(f"invalid restart policy {value!r}: max retries must be a number")
        return cls(name, int(count or 0))

    def should_restart(self, exit_code: int, restart_count: int) -> bool:
        """Whether an exit (not caused by a stop request) leads to a new start."""
        if self.name in ("always", "unless-stopped"):
            return True
        if self.name == "on-failure" and exit_code != 0:
            return self.max_retries == 0 or restart_count < self.max_retries
        return False


def restart_delay(restart_count: int) -> float:
    """docker's back-off between restarts: 100 ms doubling per restart, at most a minute."""
    return min(60.0, 0.1 * 2.0 ** max(0, restart_count))


# ------------------------------------------------------------------------------------------ sandboxes


@dataclass(slots=True)
class PortSpec:
    """One published port, after the host port has been chosen."""

    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""

    def to_status(self) -> PortStatus:
        return {"hostIP": self.host_ip or "0.0.0.0", "hostPort": self.host_port,
                "containerPort": self.container_port, "protocol": self.protocol}


@dataclass(slots=True)
class SandboxSpec:
    """What a sandbox was made with; generic (pooled) sandboxes have only defaults here."""

    name: str
    uid: str
    hostname: str
    pooled: bool = False
    ports: list[PortSpec] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    #: ``[name, ip]`` lines for its /etc/hosts (ip may be :data:`HOST_GATEWAY`)
    extra_hosts: list[list[str]] = field(default_factory=list)
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False  # a container can join the node's PID namespace only through its sandbox
    privileged: bool = False
    #: the node's network keys it joins, in interface order (``["none"]``: loopback only; empty: the default)
    networks: list[str] = field(default_factory=list)
    owner_uid: str = ""
    owner_namespace: str = ""
    owner_name: str = ""

    def to_json(self) -> str:
        doc = {
            "name": self.name, "uid": self.uid, "hostname": self.hostname, "pooled": self.pooled,
            "ports": [vars_of(p) for p in self.ports], "dns": self.dns, "hostNetwork": self.host_network,
            "dnsSearch": self.dns_search, "dnsOptions": self.dns_options, "extraHosts": self.extra_hosts,
            "hostIPC": self.host_ipc, "hostPID": self.host_pid,
            "privileged": self.privileged, "owner": [self.owner_uid, self.owner_namespace, self.owner_name],
        }
        if self.networks:
            doc["networks"] = self.networks
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxSpec:
        doc = json.loads(text)
        owner = doc.get("owner") or ["", "", ""]
        return cls(
            name=doc["name"], uid=doc["uid"], hostname=doc.get("hostname", ""), pooled=bool(doc.get("pooled")),
            ports=[PortSpec(**p) for p in doc.get("ports", [])], dns=list(doc.get("dns", [])),
            host_network=bool(doc.get("hostNetwork")), privileged=bool(doc.get("privileged")),
            dns_search=list(doc.get("dnsSearch", [])), dns_options=list(doc.get("dnsOptions", [])),
            extra_hosts=[list(h) for h in doc.get("extraHosts", [])], host_ipc=bool(doc.get("hostIPC")),
            host_pid=bool(doc.get("hostPID")), networks=list(doc.get("networks") or []),
            owner_uid=owner[0], owner_namespace=owner[1], owner_name=owner[2],
        )


def vars_of(p: PortSpec) -> dict[str, Any]:
    return {"container_port": p.container_port, "host_port": p.host_port, "protocol": p.protocol,
            "host_ip": p.host_ip}


#: Spec fields that shape the sandbox: a container with any of them set gets a sandbox of its own.
SANDBOX_FIELDS = ("ports", "hostname", "dns", "hostNetwork", "privileged", "dnsSearch", "dnsOptions",
                  "extraHosts", "ipcMode", "pidMode", "publishAll", "networks")
#: ``--add-host NAME:host-gateway``: the node's address as the container reaches it.
HOST_GATEWAY = "host-gateway"


def needs_own_sandbox(spec: dict[str, Any]) -> bool:
    """Whether the container needs a sandbox made for it (else a warm generic one from the pool will do)."""
    return (any(spec.get(k) for k in SANDBOX_FIELDS if k not in ("ipcMode", "pidMode", "networks"))
            or spec.get("ipcMode") == "host" or spec.get("pidMode") == "host" or not on_default_network(spec))


def on_default_network(spec: dict[str, Any]) -> bool:
    """Whether the container joins the default network alone (no ``networks``, or just ``bridge``)."""
    names = [n.get("name") for n in spec.get("networks") or []]
    return not names or names == [DEFAULT_NETWORK]


def published_ports(spec: dict[str, Any], image_config: dict[str, Any]) -> list[dict[str, Any]]:
    """``ports``, plus with ``publishAll`` every exposed port (``expose``, the image's EXPOSE) not published
    yet, on a free host port (docker -P)."""
    ports = list(spec.get("ports") or [])
    if not spec.get("publishAll"):
        return ports
    taken = {(int(p["containerPort"]), str(p.get("protocol") or "TCP")) for p in ports}
    exposed = [(int(e["containerPort"]), str(e.get("protocol") or "TCP")) for e in spec.get("expose") or []]
    for key in image_config.get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if number.isdigit():
            exposed.append((int(number), (proto or "tcp").upper()))
    for port, proto in sorted(set(exposed) - taken):
        ports.append({"containerPort": port, "protocol": proto})
    return ports


def short_id() -> str:
    return uuid.uuid4().hex[:12]


def generic_sandbox_spec() -> SandboxSpec:
    sid = short_id()
    return SandboxSpec(name=f"k3c-pool-{sid}", uid=uuid.uuid4().hex, hostname=sid, pooled=True)


def own_sandbox_spec(obj: dict[str, Any], ports: list[PortSpec], networks: list[str] | None = None,
                     nameservers: list[str] | None = None) -> SandboxSpec:
    """The sandbox of a container that needs its own: ``networks`` are the node's keys of the networks it
    joins (see :attr:`SandboxSpec.networks`), ``nameservers`` its networks' resolvers unless ``dns`` is set."""
    meta, spec = obj["metadata"], obj.get("spec", {})
    host = bool(spec.get("hostNetwork"))
    return SandboxSpec(
        name=f"{meta['name']}-{short_id()[:6]}", uid=uuid.uuid4().hex, networks=[] if host else list(networks or []),
        hostname=spec.get("hostname") or short_id(), ports=ports,
        dns=list(spec.get("dns") or ([] if host else nameservers or [])),
        dns_search=list(spec.get("dnsSearch") or []), dns_options=list(spec.get("dnsOptions") or []),
        extra_hosts=[[h["name"], h["ip"]] for h in spec.get("extraHosts") or []],
        host_network=bool(spec.get("hostNetwork")), host_ipc=spec.get("ipcMode") == "host",
        host_pid=spec.get("pidMode") == "host",
        privileged=bool(spec.get("privileged")),
        owner_uid=meta["uid"], owner_namespace=meta.get("namespace", ""), owner_name=meta["name"],
    )


def sandbox_config(sb: SandboxSpec, node: str, log_dir: Path) -> pb.PodSandboxConfig:
    """The CRI config of a sandbox; rebuilt identically from :class:`SandboxSpec` after a restart."""
    labels = {CRI_MANAGED_LABEL: "true", CRI_NODE_LABEL: node}
    if sb.pooled:
        labels[CRI_POOL_LABEL] = "true"
    if sb.owner_uid:
        labels.update({CRI_UID_LABEL: sb.owner_uid, CRI_NAMESPACE_LABEL: sb.owner_namespace,
                       CRI_NAME_LABEL: sb.owner_name})
    network = pb.NODE if sb.host_network else pb.POD
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=sb.name, uid=sb.uid, namespace=SANDBOX_NAMESPACE),
        hostname="" if sb.host_network else sb.hostname,
        log_directory=str(log_dir),
        dns_config=(pb.DNSConfig(servers=sb.dns, searches=sb.dns_search, options=sb.dns_options)
                    if sb.dns or sb.dns_search or sb.dns_options else None),
        port_mappings=[
            pb.PortMapping(protocol=_PROTOCOLS[p.protocol], container_port=p.container_port,
                           host_port=p.host_port, host_ip=p.host_ip)
            for p in ([] if sb.host_network else sb.ports)
        ],
        labels=labels,
        annotations={CRI_SANDBOX_SPEC_ANNOTATION: sb.to_json(),
                     **({CRI_NETWORKS_ANNOTATION: ",".join(sb.networks)} if sb.networks else {})},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=CGROUP_PARENT,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=network, pid=pb.NODE if sb.host_pid else pb.CONTAINER,
                                                     ipc=pb.NODE if sb.host_ipc else pb.POD),
                privileged=sb.privileged,
            ),
        ),
    )


# ------------------------------------------------------------------------------------------ containers


@dataclass(slots=True)
class UserSpec:
    """``user[:group]`` resolved as far as CRI needs: numeric ids, or a user name containerd resolves."""

    uid: int | None = None
    username: str = ""
    gid: int | None = None


def split_user(value: str) -> tuple[str, str]:
    user, _, group = value.partition(":")
    return user, group


def log_file_name(obj: dict[str, Any]) -> str:
    """The object's log file in the node's log dir (:func:`k3c.api.container_log_file`)."""
    meta = obj["metadata"]
    return container_log_file(meta.get("namespace", "default"), meta["name"], meta["uid"])


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the fields that shape the container; state/restart policy etc. do not count."""
    shaped = {k: v for k, v in spec.items() if k not in _NON_RUNTIME_FIELDS}
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:16]


def frame_hash(spec: dict[str, Any]) -> str:
    """:func:`spec_hash` without the resource fields: equal frames mean a change can be applied in place."""
    return spec_hash({k: v for k, v in spec.items() if k not in RESOURCE_FIELDS})


#: Where ``spec.init``'s init is mounted (docker's path for it).
INIT_PATH = "/sbin/docker-init"


def argv(spec: dict[str, Any], image_config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """CRI's command and args: the spec's overrides, or with ``init`` the whole command line after the init
    (entrypoint and cmd resolved against the image as docker does, see :func:`command_line`)."""
    if not spec.get("init"):
        return list(spec.get("command") or []), list(spec.get("args") or [])
    entrypoint = spec.get("command") or image_config.get("Entrypoint") or []
    args = spec.get("args") or ([] if spec.get("command") else image_config.get("Cmd") or [])
    return [INIT_PATH, "--", *entrypoint, *args], []


def container_config(
    obj: dict[str, Any], *, image: str, node: str, attempt: int, mounts: list[pb.Mount], user: UserSpec,
    image_config: dict[str, Any] | None = None, groups: list[int] | None = None,
) -> pb.ContainerConfig:
    """The CRI ContainerConfig for ``obj`` (``image`` is the resolved image id, ``mounts`` and ``groups``, the
    ``groupAdd`` IDs, resolved)."""
    meta, spec = obj["metadata"], obj.get("spec", {})
    command, args = argv(spec, image_config or {})
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    labels.update({
        CRI_MANAGED_LABEL: "true", CRI_NODE_LABEL: node, CRI_UID_LABEL: meta["uid"],
        CRI_NAMESPACE_LABEL: meta.get("namespace", ""), CRI_NAME_LABEL: meta["name"],
    })
    privileged = bool(spec.get("privileged"))
    security = pb.LinuxContainerSecurityContext(
        privileged=privileged,
        readonly_rootfs=bool(spec.get("readOnlyRootFilesystem")),
        capabilities=pb.Capability(
            add_capabilities=[normalize_capability(c) for c in spec.get("capAdd") or []],
            drop_capabilities=[normalize_capability(c) for c in spec.get("capDrop") or []],
        ),
        namespace_options=pb.NamespaceOption(
            network=pb.NODE if spec.get("hostNetwork") else pb.POD,
            pid=pb.NODE if spec.get("pidMode") == "host" else pb.CONTAINER,
            ipc=pb.NODE if spec.get("ipcMode") == "host" else pb.POD,
        ),
        run_as_username=user.username,
        masked_paths=[] if privileged else MASKED_PATHS,
        readonly_paths=[] if privileged else READONLY_PATHS,
        seccomp=seccomp_profile(spec),
        apparmor=apparmor_profile(spec),
        supplemental_groups=groups or [],
        no_new_privs=bool(spec.get("noNewPrivileges")),
    )
    if user.uid is not None:
        security.run_as_user.value = user.uid
    if user.gid is not None:
        security.run_as_group.value = user.gid
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=meta["name"], attempt=attempt),
        image=pb.ImageSpec(image=image),
        command=command,
        args=args,
        working_dir=spec.get("workingDir") or "",
        envs=[pb.KeyValue(key=e["name"], value=e.get("value") or "") for e in spec.get("env") or []],
        mounts=mounts,
        labels=labels,
        annotations={CRI_SPEC_HASH_ANNOTATION: spec_hash(spec)},
        log_path=log_file_name(obj),
        stdin=bool(spec.get("stdin")),
        stdin_once=bool(spec.get("stdinOnce")),
        tty=bool(spec.get("tty")),
        devices=devices(spec),
        linux=pb.LinuxContainerConfig(resources=resources(spec), security_context=security),
    )


#: docker's bind propagation → CRI's (rprivate is CRI's default).
PROPAGATIONS = {"rprivate": pb.PROPAGATION_PRIVATE, "rslave": pb.PROPAGATION_HOST_TO_CONTAINER,
                "rshared": pb.PROPAGATION_BIDIRECTIONAL}
#: ``uname -m`` → the architecture's name in image platforms.
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def check_platform(spec: dict[str, Any]) -> None:
    """``platform`` must be the node's own (os[/arch[/variant]]): k3c runs no emulation."""
    import platform

    value = str(spec.get("platform") or "")
    if not value:
        return
    machine = platform.machine()
    own = ["linux", _ARCHES.get(machine, machine)]
    parts = value.lower().split("/")
    if len(parts) > 3 or parts[:2] != own[:len(parts[:2])]:
        raise SpecError(f"platform {value}: this node runs images of {'/'.join(own)} only")


def seccomp_profile(spec: dict[str, Any]) -> pb.SecurityProfile:
    """RuntimeDefault, or Unconfined when privileged or asked. A profile document (docker's JSON) starts
    from RuntimeDefault here and replaces it in the OCI spec (:mod:`k3c.reconcilers.ociamend`)."""
    value = str(spec.get("seccompProfile") or "")
    if spec.get("privileged") or value == "unconfined":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)
    if value and not value.lstrip().startswith("{"):
        raise SpecError(f"seccompProfile {value!r}: give unconfined or a profile (docker's JSON format)")
    return pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)


def apparmor_profile(spec: dict[str, Any]) -> pb.SecurityProfile | None:
    """Unconfined when asked, or a profile loaded on the node (the reconciler checks AppArmor runs)."""
    value = str(spec.get("apparmorProfile") or "")
    if value == "unconfined":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)
    if value:
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost, localhost_ref=value)
    return None


def devices(spec: dict[str, Any]) -> list[pb.Device]:
    return [pb.Device(host_path=d["hostPath"], container_path=d.get("containerPath") or d["hostPath"],
                      permissions=d.get("permissions") or "rwm") for d in spec.get("devices") or []]


def resources(spec: dict[str, Any]) -> pb.LinuxContainerResources:
    res = pb.LinuxContainerResources()
    if spec.get("memory"):
        res.memory_limit_in_bytes = parse_memory(str(spec["memory"]))
    if spec.get("cpus"):
        cpus = float(spec["cpus"])
        if cpus <= 0:
            raise SpecError(f"invalid cpus {spec['cpus']!r}: must be more than 0")
        res.cpu_period = 100_000
        res.cpu_quota = int(cpus * 100_000)
    if spec.get("cpuShares"):
        res.cpu_shares = int(spec["cpuShares"])
    if spec.get("cpusetCpus"):
        res.cpuset_cpus = str(spec["cpusetCpus"])
    if spec.get("memorySwap"):
        res.memory_swap_limit_in_bytes = memory_swap(spec, res.memory_limit_in_bytes)
    return res


def memory_swap(spec: dict[str, Any], memory: int) -> int:
    """docker's --memory-swap: memory plus swap, at least the memory limit; -1 for unlimited swap."""
    value = str(spec["memorySwap"])
    if value == "-1":
        return -1
    if not memory:
        raise SpecError("memorySwap needs memory (docker: set --memory with --memory-swap)")
    try:
        swap = ram_in_bytes(value)
    except ValueError:
        raise SpecError(f"invalid memorySwap {value!r}") from None
    if swap < memory:
        raise SpecError("memorySwap must be at least memory (the limit of memory and swap together)")
    return swap


def normalize_capability(name: str) -> str:
    """``net_admin``/``CAP_NET_ADMIN`` → ``NET_ADMIN`` (what kubelet sends; ``ALL`` stays)."""
    name = name.strip().upper()
    return name.removeprefix("CAP_")


def command_line(spec: dict[str, Any], image_config: dict[str, Any]) -> str:
    """The command the container runs, as docker shows it: entrypoint + cmd after the overrides."""
    entrypoint = spec.get("command") or image_config.get("Entrypoint") or []
    if spec.get("args"):
        args = spec["args"]
    elif spec.get("command"):
        args = []
    else:
        args = image_config.get("Cmd") or []
    return shlex.join([*entrypoint, *args])


def port_summary(ports: list[PortStatus]) -> str:
    """docker ps style: ``0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp``."""
    return ", ".join(
        f"{p.get('hostIP') or '0.0.0.0'}:{p['hostPort']}->{p['containerPort']}/{str(p.get('protocol', 'TCP')).lower()}"
        for p in ports
    )
