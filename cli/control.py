"""`k3c rename`, `pause`, `unpause` and `update`: a container changed in place, keeping its object and its ID.

`rename` changes the docker name, which is the annotation `k3c.io/name` (k3c.dockerid): the object's
name cannot change in Kubernetes, and the container's ID comes from its uid, so both stay. `pause` and
`unpause` freeze and thaw the processes through the node's `pause`/`unpause` subresources (containerd's
cgroup freezer); the command returns once the operator's status says so, so a `k3c ps` right after shows it.
`update` writes the spec's resource fields (cpus, CPU weight and set, memory and swap, pids limit) and restart
policy; the operator applies resources to the running container in place (CRI UpdateContainerResources; the
pids limit, which CRI lacks, through containerd's record of the container) and the command waits until it has. Flags for
limits the LocalContainer spec has no field for are refused, each with one line naming it (exit 125).
"""

from __future__ import annotations

import argparse
from typing import Any

from k3c import dockerid
from k3c.api import LOCAL_CONTAINERS
from k3c.cli.common import (
    Containers,
    Session,
    Subcommands,
    WaitTimeout,
    add_command,
    command,
    container_id,
    for_each,
    is_running,
    name_conflict,
    name_holder,
    session,
    wait_for,
)
from k3c.cli.errors import CLIError, daemon_error

#: How long pause/unpause wait for the status to follow (containerd's event to the operator's write).
STATUS_WAIT = 10.0
#: How long update waits for the operator to apply new resources.
UPDATE_WAIT = 30.0


def register(sub: Subcommands) -> None:
    p = add_command(sub, "rename", "Rename a container", usage="k3c rename CONTAINER NEW_NAME")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=rename_cmd)
    for name, helptext, func in (("pause", "Pause all processes within one or more containers", pause_cmd),
                                 ("unpause", "Unpause all processes within one or more containers", unpause_cmd)):
        p = add_command(sub, name, helptext, usage=f"k3c {name} CONTAINER [CONTAINER...]")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=func)
    _register_update(sub)


#: docker update's flags k3c cannot honour yet: the LocalContainer spec has no field for them.
UNSUPPORTED_UPDATE_FLAGS = ("--blkio-weight", "--cpu-period", "--cpu-quota", "--cpu-rt-period", "--cpu-rt-runtime",
                            "--cpuset-mems", "--kernel-memory", "--memory-reservation")
#: docker's smallest memory limit
MIN_MEMORY = 6 * 1024 * 1024


def _register_update(sub: Subcommands) -> None:
    from k3c.cli import limitflags as lim
    from k3c.cli.goflags import flag_value, int_flag
    from k3c.cli.runflags import parse_cpus, parse_memory, parse_restart

    p = add_command(sub, "update", "Update configuration of one or more containers",
                    usage="k3c update [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("--cpus", type=parse_cpus, metavar="decimal", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int_flag("-c, --cpu-shares"), metavar="int",
                   help="CPU shares (relative weight)")
    p.add_argument("--cpuset-cpus", type=lim.parse_cpuset, metavar="string",
                   help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("-m", "--memory", type=parse_memory, metavar="bytes", help="Memory limit")
    p.add_argument("--memory-swap", type=flag_value("--memory-swap", lim.parse_memory_swap), metavar="bytes",
                   help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    p.add_argument("--pids-limit", type=int_flag("--pids-limit"), metavar="int",
                   help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", type=parse_restart, metavar="string",
                   help="Restart policy to apply when a container exits")
    for flag in UNSUPPORTED_UPDATE_FLAGS:
        p.add_argument(flag, dest="unsupported_" + flag[2:].replace("-", "_"), metavar="value",
                       help="(not supported by k3c: refused)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=update_cmd)


# ---- rename -----------------------------------------------------------------------------------------
@command()
def rename_cmd(args: argparse.Namespace) -> int:
    old, new = args.container.strip(), args.new_name.strip()
    if not old or not new:
        raise CLIError("Error: Neither old nor new names may be empty", 1)
    s = session(args)
    cs = Containers(s)
    obj = cs.get(old)
    refusal = dockerid.rename_refusal(obj, new)
    if refusal:
        raise daemon_error(refusal)
    holder = name_holder(new, cs.all())
    if holder is not None:
        raise name_conflict(new, holder, 1)
    s.client.merge_patch(s.path(LOCAL_CONTAINERS, obj["metadata"]["name"]), dockerid.rename_patch(obj, new))
    return 0


# ---- pause / unpause --------------------------------------------------------------------------------
@command()
def pause_cmd(args: argparse.Namespace) -> int:
    return _freeze(args, "pause", paused=True)


@command()
def unpause_cmd(args: argparse.Namespace) -> int:
    return _freeze(args, "unpause", paused=False)


def _freeze(args: argparse.Namespace, sub: str, paused: bool) -> int:
    """docker's habit: each container's name on success, each failure on its own line, exit 1 if any."""
    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        obj = cs.get(ref)
        s.client.request("POST", s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], sub))
        _await_status(s, obj, paused)
        print(ref, flush=True)

    return for_each(args.containers, one)


def _await_status(s: Session, obj: dict[str, Any], paused: bool) -> None:
    """Until the operator has written the new state (or the container is gone, or it takes too long)."""
    from k3c.containerlife import freeze_settled

    try:
        wait_for(s, obj, lambda current: freeze_settled(current, paused), STATUS_WAIT)
    except WaitTimeout:
        pass  # containerd did it; the status follows when the operator gets to it


# ---- update -----------------------------------------------------------------------------------------
@command()
def update_cmd(args: argparse.Namespace) -> int:
    for flag in UNSUPPORTED_UPDATE_FLAGS:
        if getattr(args, "unsupported_" + flag[2:].replace("-", "_")) is not None:
            raise CLIError(f"k3c: update {flag} is not supported: the LocalContainer spec has no field for it", 125)
    change = _update_change(args)
    if not change:
        raise CLIError("you must provide one or more flags when using this command", 1)
    if args.memory is not None and int(args.memory) < MIN_MEMORY:
        raise daemon_error("Minimum memory limit allowed is 6MB")
    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        obj = cs.get(ref)
        cid = container_id(obj)
        if "restartPolicy" in change and (obj.get("spec") or {}).get("autoRemove") and change["restartPolicy"] != "no":
            raise daemon_error(f"Cannot update container {cid}: Restart policy cannot be updated because AutoRemove "
                               "is enabled for the container")
        _check_swap(cid, {**(obj.get("spec") or {}), **change})
        meta = obj["metadata"]
        updated = s.client.merge_patch(s.path(LOCAL_CONTAINERS, meta["name"]), {
            "spec": change, "metadata": {"resourceVersion": meta["resourceVersion"]}})
        if is_running(updated):
            message = _await_update(s, updated)
            if message:
                raise daemon_error(f"Cannot update container {cid}: {message}")
        print(ref, flush=True)

    return for_each(args.containers, one)


def _update_change(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the flags set (a merge patch: None removes one). docker's 0 and -1 pids limits, and
    a 0 CPU weight, mean none."""
    change: dict[str, Any] = {k: v for k, v in (
        ("cpus", args.cpus), ("memory", args.memory), ("restartPolicy", args.restart),
        ("cpusetCpus", args.cpuset_cpus), ("memorySwap", args.memory_swap)) if v is not None}
    if args.cpu_shares is not None:
        change["cpuShares"] = args.cpu_shares or None
    if args.pids_limit is not None:
        change["pidsLimit"] = args.pids_limit if args.pids_limit > 0 else None
    return change


def _check_swap(cid: str, spec: dict[str, Any]) -> None:
    """docker's rule, checked before the write: a swap limit needs a memory limit at most as large."""
    swap, memory = spec.get("memorySwap"), spec.get("memory")
    if swap in (None, "-1"):
        return
    if not memory:
        raise daemon_error(f"Cannot update container {cid}: Memory limit should be set for memoryswap limit")
    from k3c.units import ram_in_bytes

    if ram_in_bytes(str(swap)) < ram_in_bytes(str(memory)):
        raise daemon_error(f"Cannot update container {cid}: Minimum memoryswap limit should be larger than memory "
                           "limit, see usage")


def _await_update(s: Session, obj: dict[str, Any]) -> str:
    """Until the operator has acted on this generation of a running container; its complaint, if any."""
    generation = obj["metadata"].get("generation") or 0

    def done(current: dict[str, Any] | None) -> bool:
        st = (current or {}).get("status") or {}
        return current is None or (st.get("observedGeneration") or 0) >= generation or not is_running(current)

    try:
        last = wait_for(s, obj, done, UPDATE_WAIT)
    except WaitTimeout:
        return "the operator did not apply it in time (is the k3c daemon running?)"
    message = str(((last or {}).get("status") or {}).get("message") or "")
    return message.removeprefix("cannot update the container's resources: ") if message.startswith("cannot update") else ""
