"""``/_ping``, ``/version`` and ``/info``: what every docker client asks first, and what `docker info` shows.

The answers describe k3c honestly (its own version, containerd, k3c's root dir) in docker's field names
and types; the fields docker clients read unconditionally are always present, with empty values when
k3c has no such thing (swarm is inactive, there are no plugins).
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from k3c import __version__
from k3c.api import IMAGES, LOCAL_CONTAINERS, VOLUMES
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.replies import reply
from k3c.dockerapi.versions import API_VERSION, MIN_API_VERSION
from k3c.dockerview import docker_state

#: on every ``/_ping`` answer, as dockerd sends them (clients read the version and builder from these)
PING_HEADERS = {"API-Version": API_VERSION, "OSType": "linux", "Builder-Version": "1",
                "Docker-Experimental": "false", "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache"}


@dataclass(frozen=True)
class Host:
    """The node the socket serves: its name and k3c's root dir (``DockerRootDir`` in `docker info`), and its
    container network's subnet and bridge (the ``bridge`` network; containers' gateway in inspect)."""

    node_name: str
    root_dir: Path
    subnet: str = ""
    bridge: str = ""


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _mem_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=PING_HEADERS)


async def version(request: web.Request) -> web.Response:
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": _arch(),
               "KernelVersion": platform.release(), "GitCommit": "", "GoVersion": "", "BuildTime": "",
               "Experimental": False}
    return reply({
        "Platform": {"Name": f"k3c {__version__}"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": {
            k: str(v).lower() if isinstance(v, bool) else v for k, v in details.items()}}],
        "Version": __version__, **details,
    })


async def info(request: web.Request) -> web.Response:
    cluster: Cluster = request.app["cluster"]
    host: Host = request.app["host"]
    containers = await cluster.list(LOCAL_CONTAINERS)
    running = sum(1 for o in containers if docker_state(o)[0] == "running")
    images = await cluster.list(IMAGES, namespaced=False)
    await cluster.list(VOLUMES)  # the API server answers, so the socket is worth using
    return reply(_info_doc(host, len(containers), running, len(images)))


def _info_doc(host: Host, containers: int, running: int, images: int) -> dict[str, Any]:
    return {
        "ID": hashlib.sha256(f"k3c:{host.node_name}".encode()).hexdigest()[:48].upper(),
        "Containers": containers, "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": containers - running, "Images": images,
        "Driver": "overlayfs", "DriverStatus": [], "SystemStatus": None,
        "Plugins": {"Volume": ["local"], "Network": ["bridge"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": False, "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "IPv4Forwarding": True, "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": False,
        "NFd": 0, "OomKillDisable": False, "NGoroutines": 0, "SystemTime": "", "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists()
        else "1", "NEventsListener": 0, "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
        "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(), "IndexServerAddress":
        "https://index.docker.io/v1/", "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
        "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs": ["127.0.0.0/8"],
        "IndexConfigs": {}, "Mirrors": []}, "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
        "GenericResources": None, "DockerRootDir": str(host.root_dir), "HttpProxy": "", "HttpsProxy": "",
        "NoProxy": "", "Name": host.node_name, "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": __version__, "Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "", "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""}, "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [], "Warnings": None,
    }


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"
