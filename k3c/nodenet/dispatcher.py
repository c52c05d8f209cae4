"""``k3c-cni``: the one CNI plugin containerd calls, delegating each sandbox to the networks it belongs to.

containerd 1.6's CRI attaches every sandbox to every network it loaded, so k3c gives it exactly one: this
plugin. containerd hands it the sandbox's annotations (capability ``io.kubernetes.cri.pod-annotations``);
the annotation named by the config's ``annotation`` lists the sandbox's networks as conflist names
(``key1,key2``), ``none`` for loopback only, absent for the default network. Each network's own conflist
(bridge + host-local + portmap, in ``networksDir``) is run here as libcni would run it, on interface
``eth0``, ``eth1``, … in that order; port mappings go to the first network, and ``portmap`` runs only when
there are some. The results are
merged into one, so CRI's view (``eth0``'s address is the sandbox IP) is unchanged.

What was added is recorded per container id in ``stateDir`` *before* each delegated ADD (conflist and
result included), so DEL undoes exactly that, in reverse, even once the network's conflist or the
sandbox's annotation is gone; without a record DEL falls back to what the annotation names, else the
default network. containerd keeps owning the network namespace and its teardown.

This file is copied as the executable ``k3c-cni`` into k3c's CNI bin dir and runs once per sandbox, under
``python -IS``: standard library only, and as few imports as possible (start-up is its whole cost).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing's import costs a few ms of every sandbox's start; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"
#: The pseudo-network of a sandbox with loopback only (docker --network none).
NONE = "none"
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]


class PluginError(Exception):
    """A CNI error to report: code, message, details."""

    def __init__(self, msg: str, details: str = "", code: int = 999) -> None:
        super().__init__(msg)
        self.msg, self.details, self.code = msg, details, code


def wanted_networks(conf: dict[str, Any]) -> list[str]:
    """The sandbox's networks in interface order, from its annotation: ``[]`` is loopback only."""
    annotations = (conf.get("runtimeConfig") or {}).get(ANNOTATIONS_CAPABILITY) or {}
    value = annotations.get(conf.get("annotation") or "")
    if value is None:
        return [str(conf["default"])]
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    return [] if names == [NONE] else names


def load_conflist(conf: dict[str, Any], key: str) -> dict[str, Any]:
    if "/" in key or key.startswith("."):
        raise PluginError(f"bad network name {key!r}")
    path = os.path.join(conf["networksDir"], key + ".conflist")
    try:
        with open(path) as f:
            doc: dict[str, Any] = json.load(f)
    except OSError as err:
        raise PluginError(f"network {key} is not set up on this node", str(err)) from None
    return doc


def record_path(conf: dict[str, Any], container_id: str) -> str:
    if not container_id or "/" in container_id or container_id.startswith("."):
        raise PluginError(f"bad container id {container_id!r}")
    return os.path.join(conf["stateDir"], container_id + ".json")


def read_record(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return doc


def write_record(path: str, record: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any], prev: Any,
                  runtime: dict[str, Any]) -> dict[str, Any]:
    """What a delegated plugin reads on stdin, as libcni builds it."""
    conf = {**plugin, "cniVersion": conflist.get("cniVersion", "1.0.0"), "name": conflist.get("name", "")}
    if prev is not None:
        conf["prevResult"] = prev
    wanted = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
    given = {k: v for k, v in runtime.items() if k in wanted}
    if given:
        conf["runtimeConfig"] = given
    return conf


def call(command: str, ifname: str, conf: dict[str, Any]) -> Any:
    """Run one plugin binary from ``CNI_PATH``; its parsed output (None if it printed nothing)."""
    binary = ""
    for d in os.environ.get("CNI_PATH", "").split(":"):
        if d and os.path.isfile(os.path.join(d, conf["type"])):
            binary = os.path.join(d, conf["type"])
            break
    if not binary:
        raise PluginError(f"CNI plugin {conf['type']} not found")
    env = {**os.environ, "CNI_COMMAND": command, "CNI_IFNAME": ifname}
    code, out = spawn(binary, json.dumps(conf).encode(), env)
    parsed = None
    if out.strip():
        try:
            parsed = json.loads(out)
        except ValueError:
            parsed = None
    if code != 0:
        msg = parsed.get("msg") if isinstance(parsed, dict) else ""
        raise PluginError(f"{conf['type']} {command} on {ifname}: {msg or f'exit status {code}'}",
                          (parsed or {}).get("details", "") if isinstance(parsed, dict) else "")
    return parsed


def spawn(binary: str, data: bytes, env: dict[str, str]) -> tuple[int, bytes]:
    """Run ``binary`` with ``data`` on stdin: (exit status, stdout). ``os.posix_spawn`` rather than
    :mod:`subprocess`, whose import alone costs more than the rest of this plugin's start. A CNI plugin
    reads all of its (small) stdin before it writes, and reports errors as JSON on stdout: stderr is not
    kept."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    try:
        pid = os.posix_spawn(binary, [binary], env, file_actions=actions)
    finally:
        os.close(in_r)
        os.close(out_w)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(in_w, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    chunks = []
    while chunk := os.read(out_r, 65536):
        chunks.append(chunk)
    os.close(out_r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), b"".join(chunks)


def run_chain(command: str, ifname: str, conflist: dict[str, Any], prev: Any, runtime: dict[str, Any]) -> Any:
    """ADD/CHECK (in order) or DEL (in reverse) of one network's plugins; the chain's result.

    ``portmap`` runs only for a sandbox with port mappings (containerd passes the same ones to DEL as to
    ADD): without any it has nothing to do, but its DEL alone costs several iptables calls."""
    plugins = [p for p in conflist.get("plugins") or []
               if p.get("type") != "portmap" or runtime.get("portMappings")]
    if command == "DEL":
        for plugin in reversed(plugins):
            call(command, ifname, plugin_config(conflist, plugin, prev, runtime))
        return None
    result = prev if command == "CHECK" else None
    for plugin in plugins:
        out = call(command, ifname, plugin_config(conflist, plugin, result, runtime))
        if command == "ADD" and out is not None:
            result = out
    return result


def merge(results: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """One result of several networks' results, interface indexes shifted. With none (loopback only)
    a placeholder address, since CRI insists on one for ``eth0`` (the operator shows none)."""
    merged: dict[str, Any] = {"cniVersion": version, "interfaces": [], "ips": [], "routes": [], "dns": {}}
    for r in results:
        offset = len(merged["interfaces"])
        merged["interfaces"] += r.get("interfaces") or []
        for ip in r.get("ips") or []:
            ip = dict(ip)
            if "interface" in ip:
                ip["interface"] += offset
            merged["ips"].append(ip)
        merged["routes"] += r.get("routes") or []
        merged["dns"] = merged["dns"] or r.get("dns") or {}
    if not results:
        merged["ips"] = [{"address": "127.0.0.1/8"}]
    return merged


def add(conf: dict[str, Any], container_id: str) -> dict[str, Any]:
    path = record_path(conf, container_id)
    runtime = {k: v for k, v in (conf.get("runtimeConfig") or {}).items() if k != ANNOTATIONS_CAPABILITY}
    record: dict[str, Any] = {"networks": []}
    results: list[dict[str, Any]] = []
    try:
        for i, key in enumerate(wanted_networks(conf)):
            conflist = load_conflist(conf, key)
            entry: dict[str, Any] = {"key": key, "ifname": f"eth{i}", "conflist": conflist, "result": None}
            record["networks"].append(entry)
            write_record(path, record)
            result = run_chain("ADD", f"eth{i}", conflist, None, runtime if i == 0 else {})
            entry["result"] = result
            results.append(result or {})
        write_record(path, record)
    except PluginError:
        delete(conf, container_id)  # undo what got added; the runtime's own DEL then finds nothing
        raise
    return merge(results, str(conf.get("cniVersion") or "1.0.0"))


def delete(conf: dict[str, Any], container_id: str) -> None:
    path = record_path(conf, container_id)
    record = read_record(path)
    if record is None:
        record = {"networks": []}
        for i, key in enumerate(wanted_networks(conf)):
            try:
                record["networks"].append({"key": key, "ifname": f"eth{i}", "conflist": load_conflist(conf, key),
                                           "result": None})
            except PluginError:
                continue  # never set up here: nothing to undo
    runtime = {k: v for k, v in (conf.get("runtimeConfig") or {}).items() if k != ANNOTATIONS_CAPABILITY}
    failed: list[str] = []
    remaining: list[dict[str, Any]] = []
    for i, entry in reversed(list(enumerate(record["networks"]))):
        try:
            run_chain("DEL", entry["ifname"], entry["conflist"], entry.get("result"), runtime if i == 0 else {})
        except PluginError as err:
            failed.append(err.msg)
            remaining.insert(0, entry)
    if remaining:
        write_record(path, {"networks": remaining})
        raise PluginError("; ".join(failed))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def check(conf: dict[str, Any], container_id: str) -> None:
    record = read_record(record_path(conf, container_id))
    if record is None:
        raise PluginError(f"no networks recorded for {container_id}")
    for entry in record["networks"]:
        run_chain("CHECK", entry["ifname"], entry["conflist"], entry.get("result"), {})


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    version = "1.0.0"
    try:
        if command == "VERSION":
            print(json.dumps({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}))
            return 0
        conf = json.load(sys.stdin)
        version = str(conf.get("cniVersion") or version)
        container_id = os.environ.get("CNI_CONTAINERID", "")
        if command == "ADD":
            print(json.dumps(add(conf, container_id)))
        elif command == "DEL":
            delete(conf, container_id)
        elif command == "CHECK":
            check(conf, container_id)
        else:
            raise PluginError(f"unknown CNI_COMMAND {command!r}", code=4)
    except ValueError as err:  # (json's errors too)
        print(json.dumps({"cniVersion": version, "code": 6, "msg": "cannot decode the network config",
                          "details": str(err)}))
        return 1
    except PluginError as err:
        print(json.dumps({"cniVersion": version, "code": err.code, "msg": err.msg, "details": err.details}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
