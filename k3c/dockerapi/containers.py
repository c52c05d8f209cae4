"""The container endpoints: create, start, stop, kill (SIGKILL), restart, remove, wait, logs, list, inspect.

Each call is the object protocol the CLI speaks (:mod:`k3c.containerlife`): create the object Stopped, ask
for a start with a start-request token, patch the desired state, DELETE and let the operator's finalizer
tear down. Answers wait for the operator as dockerd's wait for the runtime: a start returns once the
container runs, a stop or remove once it is down or gone. IDs and names are k3c.dockerid's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from k3c import apierrors, containerlife, dockerid
from k3c.api import (
    ANONYMOUS_VOLUMES_ANNOTATION,
    CONTAINER_FINALIZER,
    CREATED_ANNOTATION,
    IMAGE_ID_ANNOTATION,
    IMAGES,
    LOCAL_CONTAINERS,
    NAME_ANNOTATION,
    NETWORKS,
    VOLUMES,
)
from k3c.apierrors import AlreadyExists, NotFound
from k3c.dockerapi import bodies, images, streams
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.createbody import container_spec
from k3c.dockerapi.endpoints import spec_networks
from k3c.dockerapi.errors import BadParameter, Conflict, DockerError
from k3c.dockerapi.errors import NotFound as NoSuch
from k3c.dockerapi.hijack import send_head
from k3c.dockerapi.replies import reply
from k3c.dockernetwork import network_names
from k3c.dockerview import (
    DOCKER_STATES,
    docker_inspect,
    docker_state,
    image_id,
    list_fields,
    sort_newest_first,
)
from k3c.oci.reference import InvalidReference, parse
from k3c.streams.protocol import STDERR, STDOUT
from k3c.timefmt import format_rfc3339_ns, parse_time

log = logging.getLogger(__name__)

#: how long a start, stop or remove waits for the operator before answering 500 with the reason
OPERATOR_TIMEOUT = 60.0
FILTERS = ("id", "name", "label", "status", "ancestor")


def _cluster(request: web.Request) -> Cluster:
    cluster: Cluster = request.app["cluster"]
    return cluster


class OperatorTimeout(DockerError):
    """The operator did not act in time: the container is in whatever state it reached (500)."""

    status = 500


#: docker's short IDs: a prefix this long is taken to name one container
SHORT_ID = 12


# ---- finding containers -------------------------------------------------------------------------------
async def find(cluster: Cluster, ref: str) -> dict[str, Any]:
    """A container by full ID, docker name, object name or unique ID prefix (k3c.dockerid.lookup)."""
    if dockerid.valid_docker_name(ref) and len(ref) != dockerid.ID_LENGTH:
        obj = await cluster.get(LOCAL_CONTAINERS, dockerid.object_name(ref))
        if obj is not None and dockerid.docker_name(obj) == ref:
            return obj
    if (by_id := await _find_known(cluster, ref)) is not None:
        return by_id
    found = dockerid.lookup(await cluster.list(LOCAL_CONTAINERS), ref)
    if len(found) > 1:
        raise BadParameter(f"multiple IDs found with provided prefix: {ref}")
    if not found:
        raise NoSuch(f"No such container: {ref}")
    return dict(found[0])


async def _find_known(cluster: Cluster, ref: str) -> dict[str, Any] | None:
    """The container whose ID starts with ``ref`` (12 hex digits or more, as docker prints them) among those
    the cluster has seen, checked with a GET; None when unsure, for the caller to list them all."""
    if len(ref) < SHORT_ID or not dockerid.is_hex(ref):
        return None
    names = {name for known, name in cluster.container_names.items() if known.startswith(ref)}
    if len(names) != 1:
        return None
    obj = await cluster.get(LOCAL_CONTAINERS, names.pop())
    return obj if obj is not None and dockerid.object_id(obj).startswith(ref) else None


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


# ---- create -------------------------------------------------------------------------------------------
def _same_image(a: str, b: str) -> bool:
    try:
        return str(parse(a)) == str(parse(b))
    except InvalidReference:
        return a == b


async def _check_image(cluster: Cluster, image: str) -> str:
    """The image's ID; 404 "No such image" unless an Image object says containerd has it (the operator keeps
    one per image from containerd's own events, so an image loaded or built a moment ago is there)."""
    return image_id(images.find(await images.ready_images(cluster), image))


def conflict(name: str, other: dict[str, Any]) -> Conflict:
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{dockerid.object_id(other)}". You have to remove (or rename) that container to be able '
                    "to reuse that name.")


async def _ensure_volumes(cluster: Cluster, volumes: dict[str, str]) -> None:
    """Named volumes whose docker name is not their object name are created carrying it, as the CLI does."""
    for obj_name, docker_name in volumes.items():
        if obj_name == docker_name:
            continue
        try:
            await cluster.create(VOLUMES, {"apiVersion": VOLUMES.api_version, "kind": VOLUMES.kind,
                                           "metadata": {"name": obj_name,
                                                        "annotations": {NAME_ANNOTATION: docker_name}},
                                           "spec": {"driver": "local"}})
        except AlreadyExists:
            pass


async def create(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    body = await bodies.json_object(request)
    req = container_spec(body)
    name = request.query.get("name", "").removeprefix("/")
    if name and not dockerid.valid_docker_name(name):
        raise BadParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    iid = await _check_image(cluster, req.spec["image"])
    if name:
        for other in await cluster.list(LOCAL_CONTAINERS):
            if dockerid.docker_name(other) == name:
                raise conflict(name, other)
    networks = await spec_networks(cluster, req.network_mode, req.endpoints)
    if networks is not None:
        req.spec["networks"] = networks
    await _ensure_volumes(cluster, req.volumes)
    # the docker labels that can also be Kubernetes labels (`kubectl get lc -l com.docker.compose.project=P`)
    selectable = {k: v for k, v in (req.spec.get("labels") or {}).items() if dockerid.kubernetes_label_ok(k, v)}
    for attempt in range(10):
        docker_name = name or dockerid.generate_name(attempt)
        meta: dict[str, Any] = {"name": dockerid.object_name(docker_name), "finalizers": [CONTAINER_FINALIZER],
                                "annotations": {NAME_ANNOTATION: docker_name,
                                                CREATED_ANNOTATION: format_rfc3339_ns(time.time_ns()),
                                                **({IMAGE_ID_ANNOTATION: iid} if iid else {})}}
        if selectable:
            meta["labels"] = selectable
        obj = {"apiVersion": LOCAL_CONTAINERS.api_version, "kind": LOCAL_CONTAINERS.kind, "metadata": meta,
               "spec": {**req.spec, "state": "Stopped", "nodeName": ""}}
        try:
            created = await cluster.create(LOCAL_CONTAINERS, obj)
        except AlreadyExists:
            if not name:
                continue
            taken = await cluster.get(LOCAL_CONTAINERS, meta["name"])
            if taken is not None and dockerid.docker_name(taken) == name:
                raise conflict(name, taken) from None
            meta["generateName"] = meta.pop("name")[:dockerid.MAX_OBJECT_NAME - 6].rstrip("-.") + "-"
            created = await cluster.create(LOCAL_CONTAINERS, obj)
        return reply({"Id": dockerid.object_id(created), "Warnings": []}, status=201)
    raise Conflict("could not find a free generated name; give one")


# ---- start / stop / kill / restart --------------------------------------------------------------------
def _started(token: str, previous: str) -> Callable[[dict[str, Any] | None], bool]:
    def done(o: dict[str, Any] | None) -> bool:
        if o is None:
            return True
        st = o.get("status") or {}
        fresh = bool(st.get("containerID")) and st.get("containerID") != previous
        if st.get("startRequest") != token and not fresh:
            return False
        return st.get("phase") in ("Running", "Exited", "Failed")
    return done


async def _start(cluster: Cluster, obj: dict[str, Any], spec: dict[str, Any] | None = None,
                 restart: bool = False) -> None:
    token, patch = containerlife.start_patch(spec, restart)
    previous = (obj.get("status") or {}).get("containerID") or ""
    await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj), patch)
    try:
        now = await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), _started(token, previous), OPERATOR_TIMEOUT)
    except TimeoutError:
        # what the operator last said (e.g. "runtime error, retrying: … no IP addresses available …")
        last = await cluster.get(LOCAL_CONTAINERS, _name(obj))
        why = ((last or {}).get("status") or {}).get("message") or "is the k3c operator running?"
        raise OperatorTimeout(f"container {dockerid.docker_name(obj)} did not start within "
                              f"{OPERATOR_TIMEOUT:g}s ({why})") from None
    if now is None:
        if obj["spec"].get("autoRemove"):
            return  # it ran and is gone already (--rm)
        raise NoSuch(f"No such container: {dockerid.docker_name(obj)}")
    st = now.get("status") or {}
    if st.get("phase") == "Failed":
        raise BadParameter(st.get("message") or "the container failed to start")


async def start(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    if (obj.get("status") or {}).get("phase") == "Running" and obj["spec"].get("state") == "Running":
        return web.Response(status=304)
    await _start(cluster, obj)
    return web.Response(status=204)


async def _stop(cluster: Cluster, obj: dict[str, Any], timeout: int | None) -> None:
    spec: dict[str, Any] = {"state": "Stopped"}
    if timeout is not None:
        spec["stopTimeout"] = max(0, timeout)
    grace = timeout if timeout is not None else int(obj["spec"].get("stopTimeout", 10))
    await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj), {"spec": spec})
    try:
        await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), lambda o: o is None or not containerlife.is_running(o),
                               grace + OPERATOR_TIMEOUT)
    except TimeoutError:
        raise OperatorTimeout(f"cannot stop container: {dockerid.docker_name(obj)}: timed out waiting for the "
                              "k3c operator") from None


async def stop(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    if not containerlife.is_running(obj):
        return web.Response(status=304)
    await _stop(cluster, obj, bodies.integer(request, "t"))
    return web.Response(status=204)


async def kill_by_stop(cluster: Cluster, obj: dict[str, Any]) -> None:
    """docker kill's SIGKILL as the object's stop with no grace, so the operator records the stop (no
    restart follows, as docker's); the old timeout is put back. Other signals: :func:`nodeops.kill`."""
    old = obj["spec"].get("stopTimeout", 10)
    await _stop(cluster, obj, 0)
    try:
        await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj), {"spec": {"stopTimeout": old}})
    except NotFound:
        pass


async def restart(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    t = bodies.integer(request, "t")
    await _start(cluster, obj, {"stopTimeout": max(0, t)} if t is not None else None, restart=True)
    return web.Response(status=204)


# ---- remove -------------------------------------------------------------------------------------------
async def remove(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    await remove_container(cluster, obj, bodies.flag(request, "force"), bodies.flag(request, "v"))
    return web.Response(status=204)


async def remove_container(cluster: Cluster, obj: dict[str, Any], force: bool, volumes: bool) -> None:
    """DELETE the object and wait until the operator's finalizer is done; ``volumes`` removes its anonymous
    volumes too (``rm -v``)."""
    if containerlife.is_running(obj):
        if not force:
            raise Conflict(f"You cannot remove a running container {dockerid.object_id(obj)}. Stop the "
                           "container before attempting removal or force remove")
        obj = await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj), {"spec": {"stopTimeout": 0}})
    try:
        current = await cluster.delete(LOCAL_CONTAINERS, _name(obj))
    except NotFound:
        current = {}
    if current.get("kind") == LOCAL_CONTAINERS.kind and current["metadata"].get("finalizers"):
        if containerlife.unclaimed(current):
            try:  # nothing outside the API to clean up: drop the finalizer, unless an operator claimed it now
                await cluster.merge_patch(LOCAL_CONTAINERS, _name(obj), {"metadata": {
                    "resourceVersion": current["metadata"]["resourceVersion"], "finalizers": None}})
            except (NotFound, Conflict):
                pass
        try:
            await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), lambda o: o is None, OPERATOR_TIMEOUT)
        except TimeoutError:
            raise OperatorTimeout(f"could not remove container {dockerid.docker_name(obj)}: still being removed "
                                  f"after {OPERATOR_TIMEOUT:g}s") from None
    if volumes:
        anonymous = (obj["metadata"].get("annotations") or {}).get(ANONYMOUS_VOLUMES_ANNOTATION) or ""
        for volume in filter(None, anonymous.split(",")):
            try:
                await cluster.delete(VOLUMES, volume)
            except NotFound:
                pass


# ---- list / inspect -----------------------------------------------------------------------------------
def _label_match(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _matches(obj: dict[str, Any], state: str, filters: dict[str, list[str]]) -> bool:
    labels = (obj.get("spec") or {}).get("labels") or {}
    image = (obj.get("spec") or {}).get("image", "")
    checks: dict[str, Callable[[str], bool]] = {
        "id": lambda v: dockerid.object_id(obj).startswith(v),
        "name": lambda v: re.search(v, dockerid.docker_name(obj)) is not None,
        "label": lambda v: _label_match(labels, v),
        "status": lambda v: state == v,
        "ancestor": lambda v: _same_image(image, v),
    }
    # docker: the values of one key are alternatives, except labels, which must all match
    return all((all if key == "label" else any)(checks[key](v) for v in values)
               for key, values in filters.items() if values)


def _summary(obj: dict[str, Any], subnet: str = "", networks: dict[str, tuple[str, str]] | None = None,
             image: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of ``GET /containers/json``: the fields inspect shows for it (k3c.dockerview.list_fields)."""
    doc = list_fields(obj, subnet=subnet, networks=networks, image=image)
    state, status = docker_state(obj)
    spec = obj.get("spec") or {}
    created = parse_time(obj["metadata"].get("creationTimestamp"))
    ports = [{"IP": p.get("hostIP") or "0.0.0.0", "PrivatePort": p.get("containerPort"),
              "PublicPort": p.get("hostPort"), "Type": (p.get("protocol") or "TCP").lower()}
             for p in (obj.get("status") or {}).get("ports") or []]
    argv = doc["Argv"]
    return {
        "Id": doc["Id"], "Names": [doc["Name"]], "Image": spec.get("image", ""), "ImageID": doc["Image"],
        "Command": _command(argv[0] if argv else "", argv[1:]),
        "Created": int(created.timestamp()) if created else 0, "Ports": ports, "Labels": spec.get("labels") or {},
        "State": state, "Status": status, "HostConfig": {"NetworkMode": doc["NetworkMode"]},
        "NetworkSettings": {"Networks": doc["Networks"]}, "Mounts": doc["Mounts"],
    }


def _command(path: str, args: list[str]) -> str:
    """dockerd's list ``Command``: the path, then the arguments, those with a space in single quotes."""
    return " ".join([path, *(f"'{a}'" if " " in a else a for a in args)]) if args else path


async def image_configs(cluster: Cluster) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The image config of a container (the Image its ID names, else its reference's), or None: what
    dockerd merges into a container's config at create (k3c.dockerview.image_defaults)."""
    return configs_of(await images.ready_images(cluster))


def configs_of(objs: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """:func:`image_configs` from the ready Image objects ``objs``."""
    by_id = {image_id(o): o for o in objs}

    def config(obj: dict[str, Any]) -> dict[str, Any] | None:
        iid = (obj.get("status") or {}).get("imageID") or (obj["metadata"].get("annotations") or {}).get(IMAGE_ID_ANNOTATION)
        found = by_id.get(iid or "")
        if found is None:
            try:
                found = images.find(objs, (obj.get("spec") or {}).get("image", ""))
            except DockerError:
                return None
        conf = (found.get("status") or {}).get("config")
        return conf if isinstance(conf, dict) else None

    return config


@dataclass
class ListRows:
    """The rows of the last container list, but for their state, by object uid and resourceVersion: valid
    while the Networks and Images it was made from are the same lists (:meth:`Cluster.snapshot` hands out
    the same list while nothing changed). The state ("Up 5 minutes") is made afresh for every answer."""

    networks: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def kept_for(self, networks: list[dict[str, Any]], images: list[dict[str, Any]]) -> ListRows:
        """These rows if made from the same lists, else an empty set for them."""
        return self if networks is self.networks and images is self.images else ListRows(networks, images)


async def list_containers(request: web.Request) -> web.Response:
    filters = bodies.filters(request, FILTERS)
    for value in filters.get("status", []):
        if value not in DOCKER_STATES:
            raise BadParameter(f"invalid filter 'status={value}'")
    show_all = bodies.flag(request, "all") or bool(filters.get("status"))
    cluster = _cluster(request)
    # one small list tells whether anything was written since the last answer; if not, its lists serve again
    revision = await cluster.revision()
    listed, all_networks, all_images = await asyncio.gather(  # (each a round trip to the API server)
        cluster.snapshot(LOCAL_CONTAINERS, revision), cluster.snapshot(NETWORKS, revision),
        cluster.snapshot(IMAGES, revision, namespaced=False))
    states = {o["metadata"]["uid"]: docker_state(o) for o in listed}
    shown = [o for o in sort_newest_first(listed) if (show_all or states[o["metadata"]["uid"]][0] == "running")
             and _matches(o, states[o["metadata"]["uid"]][0], filters)]
    kept: ListRows = request.app["list_rows"].kept_for(all_networks, all_images)
    fresh = ListRows(all_networks, all_images)
    networks, config = network_names(all_networks), configs_of(images.only_ready(all_images))
    out = []
    for obj in shown:
        key = (obj["metadata"]["uid"], obj["metadata"].get("resourceVersion", ""))
        row = fresh.rows[key] = kept.rows.get(key) or _summary(obj, request.app["host"].subnet, networks, config(obj))
        state, status = states[key[0]]
        out.append({**row, "State": state, "Status": status})
    request.app["list_rows"] = fresh
    limit = bodies.integer(request, "limit")
    return reply(out[:limit] if limit and limit > 0 else out)


async def inspect(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    obj = await find(cluster, request.match_info["id"])
    named = [m["volume"] for m in obj["spec"].get("volumes") or [] if m.get("volume")]
    names = {v["metadata"]["name"]: dockerid.docker_name(v) for v in await cluster.list(VOLUMES)} if named else {}
    networks = await _network_names(cluster, [obj])
    image = (await image_configs(cluster))(obj)
    return reply(docker_inspect(obj, names, request.app["host"].subnet, networks, image))


async def _network_names(cluster: Cluster, containers: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Network object name → docker name and ID, listed only when a container is on networks of its own."""
    if not any((c.get("spec") or {}).get("networks") or (c.get("status") or {}).get("networks") for c in containers):
        return {}
    return network_names(await cluster.list(NETWORKS))


# ---- wait ---------------------------------------------------------------------------------------------
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def exited(o: dict[str, Any]) -> bool:
    """The container's last run is over (or it was stopped before it ran)."""
    st = o.get("status") or {}
    if st.get("phase") in ("Exited", "Failed"):
        return True
    return bool(st.get("phase", "Pending") == "Pending" and o["spec"].get("state") == "Stopped" and st)


def exit_mark(o: dict[str, Any]) -> tuple[str, str]:
    """What tells one exit from the next: the CRI container and when it finished."""
    st = o.get("status") or {}
    return str(st.get("containerID") or ""), str(st.get("finishedAt") or "")


def _wait_done(condition: str, first: dict[str, Any], last: dict[str, dict[str, Any]],
               ) -> Callable[[dict[str, Any] | None], bool]:
    # Any state but a running one is "before": a container not started yet has no exit mark, and its
    # status being written (the operator claiming it) must not pass for its exit (`docker run` waits on
    # next-exit before it starts the container).
    before = None if containerlife.is_running(first) else exit_mark(first)

    def done(o: dict[str, Any] | None) -> bool:
        if o is None:
            return True
        last["obj"] = o
        if condition == "removed":
            return False
        if condition == "not-running":
            return not containerlife.is_running(o)
        return exited(o) and exit_mark(o) != before and not containerlife.is_running(o)
    return done


async def wait(request: web.Request) -> web.StreamResponse:
    """The headers at once (clients wait on the body), the exit code once the condition is met."""
    cluster = _cluster(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise BadParameter(f"invalid condition: {condition!r}")
    obj = await find(cluster, request.match_info["id"])
    last = {"obj": obj}
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await send_head(request, response)
    done = _wait_done(condition, obj, last)

    def done_or_gone(o: dict[str, Any] | None) -> bool:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client went away")  # nobody is waiting any more: stop polling
        return done(o)

    error = None
    try:
        if await cluster.wait_for(LOCAL_CONTAINERS, _name(obj), done_or_gone, float("inf")) is None:
            since = last["obj"]["metadata"].get("resourceVersion") or ""
            last["obj"] = await cluster.deleted_state(LOCAL_CONTAINERS, _name(obj), since) or last["obj"]
    except ConnectionResetError:
        return response
    except Exception as err:  # the headers are out: the failure goes in the body, as dockerd does
        error = {"Message": str(err) or type(err).__name__}
    with contextlib.suppress(ConnectionError):
        await response.write(json.dumps({"StatusCode": containerlife.exit_code(last["obj"]),
                                         "Error": error}).encode())
        await response.write_eof()
    return response


# ---- logs ---------------------------------------------------------------------------------------------
def _log_query(request: web.Request) -> list[tuple[str, str]]:
    """docker's logs parameters as pods/log's: follow, tailLines, sinceTime, timestamps."""
    query: list[tuple[str, str]] = []
    if bodies.flag(request, "follow"):
        query.append(("follow", "true"))
    tail = request.query.get("tail", "all")
    if tail not in ("", "all"):
        if not tail.isdigit():
            raise BadParameter(f"invalid value for tail: {tail!r}")
        query.append(("tailLines", tail))
    since = request.query.get("since", "")
    if since not in ("", "0"):
        try:
            query.append(("sinceTime", format_rfc3339_ns(int(float(since) * 1e9))))
        except ValueError:
            raise BadParameter(f"invalid value for since: {since!r}") from None
    if request.query.get("until", "0") not in ("", "0"):
        raise BadParameter("until is not supported by k3c")
    if bodies.flag(request, "timestamps"):
        query.append(("timestamps", "true"))
    return query


def frame(stream: int, payload: bytes) -> bytes:
    """docker's multiplexed framing: stream byte, three zero bytes, big-endian length, payload."""
    return bytes((stream, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


async def logs(request: web.Request) -> web.StreamResponse:
    """The log as docker streams it: raw for a Tty container, else 8-byte framed per stream."""
    cluster = _cluster(request)
    want = {STDOUT: bodies.flag(request, "stdout"), STDERR: bodies.flag(request, "stderr")}
    if not any(want.values()):
        raise BadParameter("Bad parameters: you must choose at least one stream")
    query = _log_query(request)
    obj = await find(cluster, request.match_info["id"])
    tty = bool(obj["spec"].get("tty"))
    chunks = streams.frames(cluster.connection(), _name(obj), "log", query)
    first = await anext(chunks, None)  # a refusal (e.g. no log yet) is still an error answer, not a body
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.docker.raw-stream"})
    await response.prepare(request)
    try:
        pending = [first] if first is not None else []
        while True:
            for channel, payload in pending:
                if want.get(channel):
                    await response.write(payload if tty else frame(channel, payload))
            nxt = await anext(chunks, None)
            if nxt is None:
                break
            pending = [nxt]
    except (ConnectionError, apierrors.APIError):
        pass  # the client left, or the stream failed after the headers: the body just ends
    finally:
        await chunks.aclose()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
