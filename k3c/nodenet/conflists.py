"""The node's CNI configuration: the dispatcher conflist containerd loads, one conflist per network, and
k3c's own CNI bin dir (``k3c-cni`` beside links to the system's plugins).

Every network, the default one included, is a conflist named after its key in :attr:`NetworkDirs.networks`
(bridge + host-local IPAM + portmap; masquerade and forwarding are rules per network, in
:mod:`k3c.nodenet.hostrules`); containerd's conf dir holds only the dispatcher's (:mod:`k3c.nodenet.dispatcher`). A network's key names its conflist, its CNI network (libcni's and the
bridge plugin's rule comments), its IPAM lease dir and, for user networks, its bridge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k3c.nodenet import dispatcher, hostrules

#: The dispatcher's executable name in k3c's CNI bin dir (its conflist's plugin type).
DISPATCHER = "k3c-cni"
#: Prefix of user networks' keys and bridges: ``k3c-`` + 10 hex digits of the Network's uid (15 characters,
#: the kernel's limit for an interface name).
USER_PREFIX = "k3c-"
CONFLIST_SUFFIX = ".conflist"
#: k3c's own top-level key in a network's conflist
K3C_KEY = "k3c"


@dataclass(frozen=True)
class NetworkDirs:
    """Where the node's network configuration and state live (from k3c's containerd's root and state)."""

    root: Path  #: containerd's root dir (persistent)
    state: Path  #: containerd's state dir (runtime)

    @property
    def conf(self) -> Path:
        """containerd's CNI conf dir: the dispatcher's conflist only."""
        return self.root / "cni" / "net.d"

    @property
    def networks(self) -> Path:
        """One conflist per network, ``<key>.conflist``."""
        return self.root / "cni" / "networks.d"

    @property
    def ipam(self) -> Path:
        """host-local's lease files, ``<key>/<ip>``."""
        return self.state / "cni" / "networks"

    @property
    def records(self) -> Path:
        """The dispatcher's record of each sandbox's attachments, ``<container id>.json``."""
        return self.state / "cni" / "attachments"

    @property
    def plugins(self) -> Path:
        """k3c's CNI bin dir: ``k3c-cni`` and links to the system's plugins."""
        return self.state / "cni" / "bin"

    def conflist(self, key: str) -> Path:
        return self.networks / f"{key}{CONFLIST_SUFFIX}"

    def keys(self) -> list[str]:
        """Keys of the networks set up here (those with a conflist)."""
        if not self.networks.is_dir():
            return []
        return sorted(p.name[: -len(CONFLIST_SUFFIX)] for p in self.networks.glob(f"*{CONFLIST_SUFFIX}"))


@dataclass(frozen=True)
class BridgeNetwork:
    """One bridge network as the node sets it up."""

    key: str
    bridge: str
    subnet: str
    gateway: str = ""  #: empty: the subnet's first address
    ip_range: str = ""  #: empty: the whole subnet
    internal: bool = False  #: no masquerading and no default route
    mtu: int | None = None

    @property
    def gateway_address(self) -> str:
        return self.gateway or str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def prefix_length(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


def user_key(uid: str) -> str:
    """The key (and bridge name) of a user Network: stable for the object, distinct between objects."""
    return USER_PREFIX + hashlib.sha256(uid.encode()).hexdigest()[:10]


def render_conflist(net: BridgeNetwork, ipam_dir: Path) -> dict[str, Any]:
    """bridge (gateway, hairpin) + host-local + portmap; k3c's own note of what the rules need."""
    addr_range: dict[str, Any] = {"subnet": net.subnet}
    if net.gateway:
        addr_range["gateway"] = net.gateway
    if net.ip_range:
        r = ipaddress.ip_network(net.ip_range)
        hosts = list(r.hosts()) if r.num_addresses <= 4 else [r[1], r[-2]]
        addr_range["rangeStart"], addr_range["rangeEnd"] = str(hosts[0]), str(hosts[-1])
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[addr_range]], "dataDir": str(ipam_dir)}
    if not net.internal:
        ipam["routes"] = [{"dst": "0.0.0.0/0"}]
    # no ipMasq and no firewall plugin: masquerade and forwarding are rules per network (hostrules.py)
    bridge: dict[str, Any] = {"type": "bridge", "bridge": net.bridge, "isGateway": True, "ipMasq": False,
                              "hairpinMode": True, "ipam": ipam}
    if net.mtu:
        bridge["mtu"] = net.mtu
    return {
        "cniVersion": "1.0.0",
        "name": net.key,
        "plugins": [bridge, {"type": "portmap", "capabilities": {"portMappings": True}}],
        K3C_KEY: {"internal": net.internal},  # libcni and the plugins ignore it; read_network reads it back
    }


def render_dispatcher_conflist(name: str, dirs: NetworkDirs, default_key: str, annotation: str) -> dict[str, Any]:
    """The one conflist containerd loads: ``k3c-cni`` with what it needs to find each sandbox's networks."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": DISPATCHER,
            "capabilities": {"portMappings": True, dispatcher.ANNOTATIONS_CAPABILITY: True},
            "networksDir": str(dirs.networks), "stateDir": str(dirs.records),
            "default": default_key, "annotation": annotation,
        }],
    }


def write_json(path: Path, doc: dict[str, Any]) -> bool:
    """Write ``doc`` atomically unless the file already says exactly that; whether it was written."""
    text = json.dumps(doc, indent=2) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def install_plugins(dirs: NetworkDirs, system_dir: Path, python: str = sys.executable) -> None:
    """k3c's CNI bin dir: links to every plugin of ``system_dir`` and ``k3c-cni`` itself, run by
    ``python -IS`` (isolated, no site: the fastest start, and nothing of the environment leaks in)."""
    dirs.plugins.mkdir(parents=True, exist_ok=True)
    for plugin in system_dir.iterdir() if system_dir.is_dir() else []:
        link = dirs.plugins / plugin.name
        if plugin.name == DISPATCHER or (link.is_symlink() and os.readlink(link) == str(plugin)):
            continue
        tmp = dirs.plugins / f".{plugin.name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(plugin)
        os.replace(tmp, link)
    source = Path(dispatcher.__file__).read_text()
    text = f"#!{python} -IS\n{source}"
    target = dirs.plugins / DISPATCHER
    if not target.exists() or target.read_text() != text:
        tmp = dirs.plugins / f".{DISPATCHER}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, target)


def read_network(dirs: NetworkDirs, key: str) -> BridgeNetwork | None:
    """The network set up under ``key``, read back from its conflist (None: not set up here)."""
    try:
        doc = json.loads(dirs.conflist(key).read_text())
        bridge = doc["plugins"][0]
        ranges = bridge["ipam"]["ranges"][0][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    # a conflist of an earlier k3c said internal by leaving masquerade off
    internal = (doc.get(K3C_KEY) or {}).get("internal", not bridge.get("ipMasq", True))
    return BridgeNetwork(key=key, bridge=bridge["bridge"], subnet=ranges["subnet"], gateway=ranges.get("gateway", ""),
                         internal=bool(internal), mtu=bridge.get("mtu"))


def members(dirs: NetworkDirs, default_key: str) -> list[hostrules.Member]:
    """The networks set up on disk as the host's rules need them, the default one first (None: it is not
    set up, so there are no rules to write yet)."""
    default = read_network(dirs, default_key)
    if default is None:
        return []
    out = [hostrules.Member(default.bridge, default.subnet)]
    for key in dirs.keys():
        net = read_network(dirs, key)
        if net is not None and key != default_key:
            out.append(hostrules.Member(net.bridge, net.subnet, net.internal))
    return out


def read_default_key(dirs: NetworkDirs) -> str | None:
    """The default network's key, as the dispatcher's conflist names it (None: no dispatcher set up)."""
    for path in sorted(dirs.conf.glob(f"*{CONFLIST_SUFFIX}")) if dirs.conf.is_dir() else []:
        try:
            plugin = json.loads(path.read_text())["plugins"][0]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
        if plugin.get("type") == DISPATCHER:
            return str(plugin["default"])
    return None
