"""Docker's container commands on LocalContainer objects: create, run, start, stop, restart, kill, rm, wait.

Why this shape: the CLI never talks to containerd. Each command writes the object (spec.state flips
start/stop, DELETE removes) and then follows the operator's answer in status through a watch, so it returns
when docker would (stop returns once the container exited, rm once it is gone) without polling.
Listing and inspecting live in cli/ps.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from k3c import containerlife, dockerid
from k3c.api import (
    ANONYMOUS_VOLUMES_ANNOTATION,
    LOCAL_CONTAINERS,
    NAME_ANNOTATION,
    VOLUMES,
)
from k3c.cli import runflags
from k3c.cli.common import (
    Containers,
    Session,
    Subcommands,
    WaitTimeout,
    add_command,
    api_error_message,
    check_name,
    command,
    container_id,
    for_each,
    generate_name,
    is_running,
    name_conflict,
    name_holder,
    phase,
    runtime_id,
    session,
    wait_all_gone,
    wait_for,
    wait_removed,
)
from k3c.cli.errors import CLIError, daemon_error
from k3c.containerlife import exit_code, unclaimed
from k3c.mountspec import Mount

PICKUP_TIMEOUT = float(os.environ.get("K3C_PICKUP_TIMEOUT", "30"))
START_TIMEOUT = float(os.environ.get("K3C_START_TIMEOUT", "600"))
REMOVE_TIMEOUT = float(os.environ.get("K3C_REMOVE_TIMEOUT", "60"))
FOREVER = 10 * 365 * 86400.0


def register(sub: Subcommands) -> None:
    _register_create_run(sub)
    _register_lifecycle(sub)


def _register_create_run(sub: Subcommands) -> None:
    p = add_command(sub, "create", "Create a new container", add_help=False,
                    usage="k3c create [OPTIONS] IMAGE [COMMAND] [ARG...]")
    runflags.add_run_flags(p, run=False)
    p.set_defaults(func=create_cmd)
    p = add_command(sub, "run", "Create and run a new container from an image", add_help=False,
                    usage="k3c run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    runflags.add_run_flags(p, run=True)
    p.set_defaults(func=run_cmd)


def _register_lifecycle(sub: Subcommands) -> None:
    p = add_command(sub, "start", "Start one or more stopped containers",
                    usage="k3c start [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=start_cmd)
    for name, helptext, func in (("stop", "Stop one or more running containers", stop_cmd),
                                 ("restart", "Restart one or more containers", restart_cmd)):
        p = add_command(sub, name, helptext, usage=f"k3c {name} [OPTIONS] CONTAINER [CONTAINER...]")
        p.add_argument("-t", "--time", "--timeout", dest="time", type=int, metavar="int",
                       help="Seconds to wait before killing the container")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=func)
    p = add_command(sub, "kill", "Kill one or more running containers",
                    usage="k3c kill [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-s", "--signal", default="KILL", help="Signal to send to the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=kill_cmd)
    p = add_command(sub, "rm", "Remove one or more containers", usage="k3c rm [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=rm_cmd)
    p = add_command(sub, "wait", "Block until one or more containers stop, then print their exit codes",
                    usage="k3c wait CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=wait_cmd)


# ---- create / run ------------------------------------------------------------------------------------
def _create_object(s: Session, args: argparse.Namespace, start: bool) -> dict[str, Any]:
    """POST the object (:func:`_post_container`), with docker's checks before it and `--cidfile` after it."""
    from k3c.apierrors import APIError

    if args.name:
        check_name(args.name)
    if args.cidfile and os.path.exists(args.cidfile):
        raise CLIError(f"k3c: Container ID file found, make sure the other container isn't running or delete "
                       f"{args.cidfile}", 125)
    if args.name:
        _check_name_free(s, args.name)
    try:
        created = _post_container(s, args, start)
    except APIError as err:
        raise CLIError(api_error_message(err), 125) from None
    if args.cidfile:
        _write_cidfile(args.cidfile, container_id(created))
    return created


def _post_container(s: Session, args: argparse.Namespace, start: bool) -> dict[str, Any]:
    """The object named by k3c.dockerid's rule and carrying its docker name; a generated name that is taken is
    drawn again, a given one held by another container is docker's Conflict."""
    from k3c.apierrors import AlreadyExists

    for attempt in range(10):
        name = args.name or generate_name(attempt)
        req = runflags.build_container(args, dockerid.object_name(name), s.namespace, start)
        req.obj["metadata"].setdefault("annotations", {})[NAME_ANNOTATION] = name
        if attempt == 0:  # once the flags are known good
            _resolve_networks(s, args, req.obj["spec"])
            _ensure_named_volumes(s, req.named_volumes)
        try:
            return s.client.create(s.path(), req.obj)
        except AlreadyExists:
            if args.name:
                return _create_generated(s, req.obj, args.name)
    raise CLIError("k3c: could not find a free generated name; use --name", 125)


def _resolve_networks(s: Session, args: argparse.Namespace, spec: dict[str, Any]) -> None:
    """A user network given by ``--network`` (docker name, ID or ID prefix) as its object, or docker's
    "network X not found" before anything is written (the same rule as the Docker API's create)."""
    if not any(n.get("name") not in (None, "none") for n in spec.get("networks") or []):
        return
    from k3c import dockernetwork
    from k3c.api import NETWORKS

    wanted = [dockernetwork.Wanted(args.network, list(dict.fromkeys(args.network_alias)))]
    try:
        spec["networks"] = dockernetwork.spec_networks(s.client.get(NETWORKS.path(s.namespace))["items"], wanted)
    except dockernetwork.NetworkError as err:
        raise daemon_error(err.message, 125) from None
    if spec["networks"] is None:
        del spec["networks"]


def _write_cidfile(path: str, cid: str) -> None:
    """docker's --cidfile: the new container's docker ID (the one `run -d` prints), written once it exists
    (never over an existing file)."""
    try:
        with open(path, "x", encoding="ascii") as f:
            f.write(cid)
    except OSError as err:
        raise CLIError(f"k3c: failed to create the container ID file: {err.strerror or err}", 125) from None


def _create_generated(s: Session, obj: dict[str, Any], name: str) -> dict[str, Any]:
    """The object name ``name`` maps to is taken: by a container of that docker name (docker's Conflict), or
    by one renamed away from it, and then the server picks a unique object name."""
    meta = obj["metadata"]
    taken = s.client.get(s.path(LOCAL_CONTAINERS, meta["name"]))
    if dockerid.docker_name(taken) == name:
        raise name_conflict(name, taken)
    base = meta.pop("name")[:dockerid.MAX_OBJECT_NAME - 6].rstrip("-.")
    meta["generateName"] = f"{base}-"
    return s.client.create(s.path(), obj)


def _check_name_free(s: Session, name: str) -> None:
    """docker names are unique in the namespace; the object names they map to need not tell (rename)."""
    other = name_holder(name, s.client.get(s.path()).get("items", []))
    if other is not None:
        raise name_conflict(name, other)


def _ensure_named_volumes(s: Session, mounts: list[Mount]) -> None:
    """A named volume whose docker name is not its object name (`-v` or `--mount type=volume`) is created
    here, carrying that docker name (the operator creates missing volumes too, but only knows the object
    name)."""
    from k3c.apierrors import AlreadyExists

    for m in mounts:
        if m.docker_name and m.docker_name != m.spec.get("volume"):
            meta = {"name": m.spec["volume"], "namespace": s.namespace,
                    "annotations": {NAME_ANNOTATION: m.docker_name}}
            try:
                s.client.create(s.path(VOLUMES), {"apiVersion": VOLUMES.api_version, "kind": VOLUMES.kind,
                                                  "metadata": meta, "spec": {"driver": "local"}})
            except AlreadyExists:
                pass


@command(code=125, prefix="k3c: ")
def create_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    obj = _create_object(s, args, start=False)
    print(container_id(obj))
    return 0


@command(code=125, prefix="k3c: ")
def run_cmd(args: argparse.Namespace) -> int:
    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        raise CLIError("the input device is not a TTY", 1)
    s = session(args)
    if not args.detach:
        preload_streams()
    obj = _create_object(s, args, start=True)
    if not args.detach:
        code = run_attached(s, obj, stdin=args.interactive, tty=args.tty, sig_proxy=args.sig_proxy)
        if args.rm and code is not None:
            remove_quietly(s, obj)
        return code or 0
    try:
        obj = wait_started(s, obj, args.image)
    except CLIError:
        _discard(s, obj)
        raise
    print(container_id(obj))
    return 0


def _exit_code_for(status: dict[str, Any]) -> int:
    """docker run: 127 when the command was not found, 126 when it cannot be run, else 125.

    The operator says which in status.exitCode; the message is the fallback.
    """
    if status.get("exitCode") in (125, 126, 127):
        return int(status["exitCode"])
    low = (status.get("message") or "").lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "exec format error" in low:
        return 126
    return 125


def wait_started(s: Session, obj: dict[str, Any], image: str, previous_cid: str | None = None,
                 token: str | None = None, raw: bool = False) -> dict[str, Any]:
    """Follow status until the container runs (or already ran and exited); fail as docker would.

    A start of an existing object is recognised by its start-request token echoed in status or by a new
    container ID (each start is a fresh container). Two deadlines: an operator must pick the object up
    within K3C_PICKUP_TIMEOUT (else none is running), then the pull and start get K3C_START_TIMEOUT.
    Pull progress is drawn meanwhile.
    """
    from k3c.cli.progress import PullProgress

    name = obj["metadata"]["name"]
    last: dict[str, Any] = {"obj": obj}

    def seen(o: dict[str, Any]) -> None:
        last["obj"] = o
        progress.update(o)

    def picked(o: dict[str, Any] | None) -> bool:
        return o is None or not unclaimed(o)

    def started(o: dict[str, Any] | None) -> bool:
        if o is None:
            return True
        st = o.get("status") or {}
        ours = token is None or st.get("startRequest") == token
        if st.get("phase") == "Failed" and ours:
            raise daemon_error(st.get("message") or "container failed to start", _exit_code_for(st))
        cid = runtime_id(o) or None
        fresh = cid is not None and (cid != previous_cid or (token is not None and ours))
        return st.get("phase") in ("Running", "Exited") and fresh

    progress = PullProgress(image, raw=raw)
    try:
        try:
            current = wait_for(s, obj, picked, PICKUP_TIMEOUT, on_update=seen)
        except WaitTimeout:
            raise CLIError(f"k3c: no k3c operator picked up container {name} within {PICKUP_TIMEOUT:g}s: is the k3c "
                           "daemon running?", 125) from None
        if current is not None:
            current = wait_for(s, current, started, START_TIMEOUT, on_update=seen)
    except WaitTimeout:
        progress.finish(False)
        said = ((last["obj"] or {}).get("status") or {}).get("message")  # the operator's last word, if any
        raise CLIError(f"k3c: container {name} did not start within {START_TIMEOUT:g}s "
                       f"(phase {phase(last['obj'])}{': ' + said if said else ''})", 125) from None
    except CLIError:
        progress.finish(False)
        raise
    progress.finish(True)
    return current if current is not None else last["obj"]


def _discard(s: Session, obj: dict[str, Any]) -> None:
    """A run that failed leaves nothing behind (the operator finishes the cleanup through the finalizer)."""
    from k3c.apierrors import APIError

    try:
        delete_container(s, obj)
    except APIError:
        pass


def delete_container(s: Session, obj: dict[str, Any]) -> dict[str, Any] | None:
    """DELETE; returns the object if it is still finalizing, None once gone.

    An object no operator ever claimed has nothing to clean up, so its finalizer is dropped here, on the
    condition (resourceVersion) that no operator claimed it in between; else the operator does it.
    """
    from k3c.apierrors import Conflict, NotFound

    path = s.path(LOCAL_CONTAINERS, obj["metadata"]["name"])
    try:
        current = s.client.delete(path)
    except NotFound:
        return None
    if current.get("kind") != LOCAL_CONTAINERS.kind or not current["metadata"].get("finalizers"):
        return None  # gone already (the API answers a delete with the last state or a Status)
    if unclaimed(current):
        try:
            s.client.merge_patch(path, {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"],
                                                     "finalizers": None}})
            return None
        except NotFound:
            return None
        except Conflict:
            pass
    return current


def remove_quietly(s: Session, obj: dict[str, Any]) -> None:
    """--rm: the operator auto-removes too, so whoever is second simply finds nothing (404 is success)."""
    _discard(s, obj)
    _remove_anonymous_volumes(s, obj)


def _remove_anonymous_volumes(s: Session, obj: dict[str, Any]) -> None:
    from k3c.apierrors import APIError

    names = ((obj["metadata"].get("annotations") or {}).get(ANONYMOUS_VOLUMES_ANNOTATION) or "").split(",")
    for name in filter(None, names):
        try:
            s.client.delete(s.path(VOLUMES, name))
        except APIError:
            pass


class StartWatch(threading.Thread):
    """Follows status while the main thread is attached: draws pull progress and notices a failed start
    or a missing operator, removing the object then (which also ends the waiting attach)."""

    def __init__(self, s: Session, obj: dict[str, Any], token: str | None, previous: str | None,
                 raw: bool) -> None:
        super().__init__(daemon=True, name="k3c-start-watch")
        from k3c.kubeclient import Client

        self.s = Session(Client(s.client.conn), s.namespace, s.server)  # its own connection
        self.obj, self.token, self.previous, self.raw = obj, token, previous, raw
        self.failure: CLIError | None = None

    def run(self) -> None:
        try:
            wait_started(self.s, self.obj, self.obj["spec"]["image"], self.previous, self.token, self.raw)
        except CLIError as err:
            self.failure = err
            if self.token is None:  # a new object (run): a failed run leaves nothing behind
                _discard(self.s, self.obj)
        except Exception as err:  # reported by the main thread
            self.failure = CLIError(_describe(err), 125)


def _describe(err: Exception) -> str:
    from k3c.apierrors import APIError

    return api_error_message(err) if isinstance(err, APIError) else f"k3c: {err}"


def run_attached(s: Session, obj: dict[str, Any], stdin: bool, tty: bool, token: str | None = None,
                 previous: str | None = None, sig_proxy: bool = True) -> int | None:
    """Attach at once (the server waits for the start and replays early output), watch status beside it.

    The exit code comes from status, as docker's CLI takes it from the wait API rather than the stream.
    Returns None when the user detached (Ctrl-P Ctrl-Q).
    """
    from k3c.apierrors import APIError, Conflict, NotFound

    watch = StartWatch(s, obj, token, previous, raw=tty and stdin)
    watch.start()
    from k3c.streams.client import attach, attach_from_start

    # A new object's container can only be this run's: replay its output from the first line, so even a
    # container that exits before the attach arrives shows everything. `start -a` (a token) attaches live.
    attach_fn = attach_from_start if token is None else attach
    try:
        code = attach_fn(s.client, s.namespace, obj["metadata"]["name"], stdin=stdin, tty=tty, sig_proxy=sig_proxy)
    except APIError as err:
        watch.join()
        if watch.failure:
            raise watch.failure from None
        if isinstance(err, Conflict):  # it ran and exited before the attach arrived: show its log instead
            _print_logs(s, obj)
        elif not isinstance(err, NotFound) or err.details.get("name"):
            raise
        code = -1  # the exit code comes from status
    except Exception as err:
        if not hasattr(err, "exit_code"):  # not the stream's own StreamError
            raise
        watch.join(10)
        if watch.failure:
            raise watch.failure from None
        raise
    if code is None:
        # Detached, or the stream ended because the start failed (the watch removed the object): say which.
        watch.join(10)
        if watch.failure:
            raise watch.failure from None
        return None
    try:
        return exit_code(wait_exited(s, obj, previous, token, timeout=FOREVER if code == -1 else 30))
    except WaitTimeout:
        return max(code, 0)


def _print_logs(s: Session, obj: dict[str, Any]) -> None:
    """Best effort: the output of a container that finished before we could attach."""
    try:
        from k3c.streams.client import logs

        logs(s.client, s.namespace, obj["metadata"]["name"])
    except Exception:  # the exit code still follows; the log may already be gone
        pass


def preload_streams() -> None:
    """Import the stream client before creating the object, so the attach goes out right after the POST
    (a fast container may otherwise finish before we are attached)."""
    import k3c.streams.client  # noqa: F401


def wait_exited(s: Session, obj: dict[str, Any], previous: str | None = None, token: str | None = None,
                timeout: float = FOREVER) -> dict[str, Any]:
    """The object as it was when the container exited (its last state if it was removed meanwhile).

    With a start token (start -a), an exit counts only once it belongs to that start.
    """
    last = {"obj": obj}

    def exited(o: dict[str, Any] | None) -> bool:
        if o is None:
            return True
        last["obj"] = o
        st = o.get("status") or {}
        fresh_cid = bool(runtime_id(o)) and runtime_id(o) != previous
        if token is not None and st.get("startRequest") != token and not fresh_cid:
            return False  # still the state of the previous start
        if st.get("phase") in ("Exited", "Failed"):
            return True
        return bool(st.get("phase", "Pending") == "Pending" and o["spec"].get("state") == "Stopped")

    wait_for(s, obj, exited, timeout)
    return last["obj"]


# ---- start / stop / restart / kill -------------------------------------------------------------------
def _patch(s: Session, obj: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return s.client.merge_patch(s.path(LOCAL_CONTAINERS, obj["metadata"]["name"]), {"spec": spec})


def _patch_start(s: Session, obj: dict[str, Any], spec: dict[str, Any] | None = None, restart: bool = False,
                 ) -> tuple[str, str | None, dict[str, Any]]:
    """Ask for a fresh start now (:func:`k3c.containerlife.start_patch`)."""
    token, patch = containerlife.start_patch(spec, restart)
    previous = runtime_id(obj) or None
    patched = s.client.merge_patch(s.path(LOCAL_CONTAINERS, obj["metadata"]["name"]), patch)
    return token, previous, patched


def request_start(s: Session, obj: dict[str, Any], spec: dict[str, Any] | None = None,
                  restart: bool = False) -> dict[str, Any]:
    """start/restart: patch, then follow status until the fresh container runs."""
    token, previous, patched = _patch_start(s, obj, spec, restart)
    return wait_started(s, patched, patched["spec"]["image"], previous, token)


def start_one(s: Session, obj: dict[str, Any]) -> dict[str, Any]:
    """docker start: a running container is left alone; anything else gets a fresh start."""
    if phase(obj) == "Running" and obj["spec"].get("state") == "Running":
        return obj
    return request_start(s, obj)


def stop_one(s: Session, obj: dict[str, Any], timeout: int | None) -> None:
    spec: dict[str, Any] = {"state": "Stopped"}
    if timeout is not None:
        spec["stopTimeout"] = max(0, timeout)
    grace = timeout if timeout is not None else int(obj["spec"].get("stopTimeout", 10))
    obj = _patch(s, obj, spec)
    try:
        wait_for(s, obj, lambda o: o is None or not is_running(o), grace + 30)
    except WaitTimeout:
        raise daemon_error(f"cannot stop container: {obj['metadata']['name']}: timed out waiting for the k3c "
                           "operator (is the k3c daemon running?)") from None


@command()
def start_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    cs = Containers(s)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise CLIError("k3c: you cannot start and attach multiple containers at once", 1)
        return start_attached(s, cs.get(args.containers[0]), args.interactive)

    def one(ref: str) -> None:
        start_one(s, cs.get(ref))
        print(ref, flush=True)

    return for_each(args.containers, one)


def start_attached(s: Session, obj: dict[str, Any], stdin: bool) -> int:
    """start -a/-i: ask for the start and attach right away, so no early output is missed."""
    tty = bool(obj["spec"].get("tty"))
    if phase(obj) == "Running" and obj["spec"].get("state") == "Running":
        from k3c.streams.client import attach

        return attach(s.client, s.namespace, obj["metadata"]["name"], stdin=stdin, tty=tty) or 0
    token, previous, patched = _patch_start(s, obj)
    return run_attached(s, patched, stdin, tty, token, previous) or 0


@command()
def stop_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        stop_one(s, cs.get(ref), args.time)
        print(ref, flush=True)

    return for_each(args.containers, one)


@command()
def restart_cmd(args: argparse.Namespace) -> int:
    """One patch: the operator stops the old container (stopTimeout) and starts a fresh one."""
    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        request_start(s, cs.get(ref), {"stopTimeout": max(0, args.time)} if args.time is not None else None,
                      restart=True)
        print(ref, flush=True)

    return for_each(args.containers, one)


@command()
def kill_cmd(args: argparse.Namespace) -> int:
    """SIGKILL is the object's stop without grace (the operator records the stop; the old timeout is put
    back); any other signal is recorded on the object (containerlife.kill_patch), then sent to the
    container's init through the node's ``kill`` subresource."""
    from k3c.signals import signal_number

    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        try:
            number = signal_number(args.signal)
        except ValueError as err:  # docker's daemon refuses it for each container
            raise daemon_error(str(err)) from None
        obj = cs.get(ref)
        if not is_running(obj):
            raise daemon_error(f"Cannot kill container: {ref}: Container {container_id(obj)} is not running")
        if number == signal.SIGKILL:
            old = obj["spec"].get("stopTimeout", 10)
            stop_one(s, obj, 0)
            _restore_timeout(s, obj, old)
        else:  # recorded first: docker's kill event, and no restart of what it ends (containerlife)
            name = obj["metadata"]["name"]
            s.client.merge_patch(s.path(LOCAL_CONTAINERS, name), containerlife.kill_patch(obj, number))
            s.client.request("POST", s.path(LOCAL_CONTAINERS, name, "kill"), query={"signal": str(number)})
        print(ref, flush=True)

    return for_each(args.containers, one)


def _restore_timeout(s: Session, obj: dict[str, Any], value: int) -> None:
    from k3c.apierrors import NotFound

    try:
        _patch(s, obj, {"stopTimeout": value})
    except NotFound:
        pass


# ---- rm / wait ---------------------------------------------------------------------------------------
def begin_remove(s: Session, obj: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """Ask for the removal (killing first with ``force``); the object if it is still finalizing."""
    if is_running(obj):
        if not force:
            raise daemon_error(f"You cannot remove a running container {container_id(obj)}. Stop the container "
                               "before attempting removal or force remove")
        obj = _patch(s, obj, {"stopTimeout": 0})  # docker rm -f kills; the finalizer then stops with SIGKILL
    return delete_container(s, obj)


def finish_remove(s: Session, obj: dict[str, Any], current: dict[str, Any] | None, volumes: bool) -> None:
    """Wait until a removal asked for by :func:`begin_remove` is done, then drop anonymous volumes."""
    name = dockerid.docker_name(obj)
    if current is not None:  # still finalizing: docker's rm returns once it is gone
        wait_removed(s, current, LOCAL_CONTAINERS, f"could not remove container {name}", REMOVE_TIMEOUT)
    if volumes:
        _remove_anonymous_volumes(s, obj)


@command()
def rm_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    cs = Containers(s)
    asked: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}

    def ask(ref: str) -> None:
        obj = cs.get(ref)
        asked[ref] = (obj, begin_remove(s, obj, args.force))

    # Every removal is asked for first, so the operator tears the containers down side by side; then one
    # watch follows them all, and each is reported, in the order given, once it is gone (as docker prints).
    refs = list(dict.fromkeys(args.containers))  # a container named twice is removed once
    failed = for_each(refs, ask)
    order = [ref for ref in refs if ref in asked]
    finalizing = {ref: current for ref, (_, current) in asked.items() if current is not None}
    refs_of: dict[str, list[str]] = {}
    for ref, current in finalizing.items():
        refs_of.setdefault(current["metadata"]["name"], []).append(ref)
    gone: set[str] = {ref for ref in order if ref not in finalizing}

    def finish(ref: str) -> None:
        obj, _ = asked.pop(ref)
        if ref not in gone:
            raise daemon_error(f"could not remove container {dockerid.docker_name(obj)}: still being removed, "
                               f"and none went for {REMOVE_TIMEOUT:g}s (is the k3c daemon running?)")
        finish_remove(s, obj, None, args.volumes)
        print(ref, flush=True)

    def report_ready() -> int:
        status = 0
        while order and order[0] in gone:
            status = max(status, for_each([order.pop(0)], finish))
        return status

    status = report_ready()
    for name in wait_all_gone(s, list(finalizing.values()), REMOVE_TIMEOUT):
        gone.update(refs_of[name])
        status = max(status, report_ready())
    return max(failed, status, for_each(order, finish))


@command()
def wait_cmd(args: argparse.Namespace) -> int:
    s = session(args)
    cs = Containers(s)

    def one(ref: str) -> None:
        print(exit_code(wait_exited(s, cs.get(ref))), flush=True)

    return for_each(args.containers, one)

