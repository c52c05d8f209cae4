"""docker's events (create, start, kill, die, stop, destroy, …) derived from changes of k3c's objects.

Why derived, and from the objects: k3c keeps no event log. The objects are the truth, and a watch hands
over every change of one object in order, so comparing each version with the one before gives each docker
action once, in order, with the container's docker ID (k3c.dockerid) — including what only the CLI knows
(a stop or kill asked in ``spec``, a restart asked by the start-request annotation, a rename of the docker
name annotation). The core/v1 Events the operator records stay for ``kubectl describe``; they are only read
for what no object field tells: health status changes (reasons ``HealthStatusHealthy``/``Unhealthy``).

:class:`Tracker` remembers the last version of each object and turns a watch event into docker's
:class:`Message` list; :func:`history` tells what the current objects still say about the past (``--since``);
:func:`watched` and :func:`event_matches` are docker's filters. `k3c events` and the Docker API's
``GET /events`` both stream from here, so both say the same.
Network and exec events are not derived: k3c has no network objects, and an exec leaves no trace in one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypedDict

from k3c import dockerid
from k3c.api import (
    EVENT_IMAGE_ANNOTATION,
    EVENTS,
    HEALTH_EVENT_REASONS,
    IMAGE_PUSHES,
    IMAGE_TAGS,
    IMAGES,
    LOCAL_CONTAINERS,
    NAME_ANNOTATION,
    RESTART_TOKEN_PREFIX,
    START_REQUEST_ANNOTATION,
    VOLUMES,
    Resource,
)
from k3c.containerlife import kill_request
from k3c.timefmt import parse_time

Obj = dict[str, Any]
#: A core/v1 Event reason → docker's action (the health checks another part of k3c runs).
HEALTH_REASONS = {reason: f"health_status: {status}" for status, reason in HEALTH_EVENT_REASONS.items()}
#: The operator's Event reasons that tell a removed container's past (its object, the usual source, is gone)
GONE_REASONS = {"Created": "create", "Started": "start", "Died": "die", "Killed": "stop", "Removed": "destroy"}
_EXIT_CODE = re.compile(r"exited with code (\d+)")
#: Exit code of a process SIGKILL ended: after a stop's SIGTERM it means docker's second kill (signal 9).
_KILLED = 137
#: Exit code of a process SIGTERM ended (told when the operator removed a container without saying).
_TERMINATED = 143


class Actor(TypedDict):
    ID: str
    Attributes: dict[str, str]


@dataclass(frozen=True)
class Message:
    """One docker event (the engine API's ``events.Message``): Go's field names for ``--format``
    templates (``{{.Actor.Attributes.name}}``, ``{{.TimeNano}}``), the API's JSON from :meth:`to_json`."""

    Type: str
    Action: str
    Actor: Actor
    TimeNano: int
    Scope: str = "local"

    @property
    def Time(self) -> int:
        return self.TimeNano // 1_000_000_000

    @property
    def ID(self) -> str:
        """The deprecated top-level ``id`` docker still fills for container and image events."""
        return self.Actor["ID"] if self.Type in ("container", "image") else ""

    @property
    def Status(self) -> str:
        return self.Action if self.Type in ("container", "image") else ""

    @property
    def From(self) -> str:
        return self.Actor["Attributes"].get("image", "") if self.Type == "container" else ""

    def to_json(self) -> dict[str, Any]:
        """The API's JSON: deprecated fields only where docker fills them (its ``omitempty``)."""
        legacy = {"status": self.Status, "id": self.ID, "from": self.From}
        return {**{k: v for k, v in legacy.items() if v}, "Type": self.Type, "Action": self.Action,
                "Actor": self.Actor, "scope": self.Scope, "time": self.Time, "timeNano": self.TimeNano}


def message(kind: str, action: str, actor_id: str, attrs: dict[str, str], ns: int) -> Message:
    return Message(kind, action, Actor(ID=actor_id, Attributes=attrs), ns)


# ---- field access -----------------------------------------------------------------------------------
def _status(obj: Obj | None) -> Obj:
    return (obj or {}).get("status") or {}


def _spec(obj: Obj | None) -> Obj:
    return (obj or {}).get("spec") or {}


def _meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def _phase(obj: Obj) -> str:
    """The status phase, with a frozen container told apart: the operator keeps a paused one ``Running`` and
    sets ``status.paused`` (k3c.reconcilers.statuses), which is what pause and unpause are derived from."""
    st = _status(obj)
    phase = str(st.get("phase") or "")
    return "Paused" if phase == "Running" and st.get("paused") else phase


def _start_request(obj: Obj) -> str:
    return str((_meta(obj).get("annotations") or {}).get(START_REQUEST_ANNOTATION) or "")


def _stamp_ns(value: str | None) -> int | None:
    t = parse_time(value)
    return int(t.timestamp() * 1_000_000) * 1000 if t else None


def _familiar(ref: str) -> tuple[str, str]:
    """``(busybox:latest, busybox)`` for ``docker.io/library/busybox:latest``: an image event's actor and
    name as docker prints them (the text itself when it does not parse)."""
    from k3c.oci.reference import InvalidReference, parse

    try:
        parsed = parse(ref)
    except InvalidReference:
        return ref, ref
    return parsed.familiar(), parsed.familiar_repository


# ---- containers -------------------------------------------------------------------------------------
@dataclass
class _Container:
    """What the stream knows of one LocalContainer: its last version, and what the last stop, kill,
    restart or removal it saw asked for (docker's events after the exit depend on it)."""

    obj: Obj
    pending: str = ""  # "stop" | "kill" | "restart" | "remove"
    signal: str = ""  # of the kill reported for it


def container_attrs(obj: Obj, **extra: str) -> dict[str, str]:
    """docker's attributes of a container event: its labels, image and docker name (plus the action's)."""
    attrs = {str(k): str(v) for k, v in (_spec(obj).get("labels") or {}).items()}
    attrs.update(image=str(_spec(obj).get("image", "")), name=dockerid.docker_name(obj), **extra)
    return attrs


@dataclass
class Tracker:
    """Remembers each object's last version and turns changes into docker's events, in order."""

    containers: dict[str, _Container] = field(default_factory=dict)
    volumes: dict[str, Obj] = field(default_factory=dict)  # by object name: docker names for mounts
    images: dict[str, Obj] = field(default_factory=dict)  # by uid
    tags: dict[str, Obj] = field(default_factory=dict)
    pushes: dict[str, Obj] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)  # core Event uid → count already shown
    announced: set[str] = field(default_factory=set)  # volumes a container's create told of before they exist
    last_ns: int = 0  # the time of the last event :meth:`stamped` handed out

    def seed(self, resource: Resource, obj: Obj) -> None:
        """An object as it was when the stream began: the base its later changes are compared with."""
        meta = _meta(obj)
        if resource == LOCAL_CONTAINERS:
            self.containers[meta["uid"]] = _Container(obj)
        elif resource == VOLUMES:
            self.volumes[meta["name"]] = obj
        elif resource == EVENTS:
            self.recorded[meta.get("uid", "")] = int(obj.get("count") or 1)
        else:
            self._store(resource)[meta["uid"]] = obj

    def _store(self, resource: Resource) -> dict[str, Obj]:
        return {IMAGES: self.images, IMAGE_TAGS: self.tags, IMAGE_PUSHES: self.pushes}[resource]

    def change(self, resource: Resource, kind: str, obj: Obj, ns: int) -> list[Message]:
        """A watch event (ADDED, MODIFIED, DELETED) of ``resource`` at ``ns`` → docker's events."""
        if resource == LOCAL_CONTAINERS:
            return self.container(kind, obj, ns)
        if resource == VOLUMES:
            return self.volume(kind, obj, ns)
        if resource == EVENTS:
            return self.health(obj, ns)
        if resource == IMAGES:
            return self.image(kind, obj, ns)
        if resource == IMAGE_TAGS:
            return self.tag(kind, obj, ns)
        return self.push(kind, obj, ns)

    def stamped(self, resource: Resource, kind: str, obj: Obj, ns: int) -> list[Message]:
        """:meth:`change`, each event's time made distinct and increasing, as docker's are."""
        out = []
        for ev in self.change(resource, kind, obj, ns):
            self.last_ns = max(ev.TimeNano, self.last_ns + 1)
            out.append(dataclasses.replace(ev, TimeNano=self.last_ns))
        return out

    def container(self, kind: str, obj: Obj, ns: int) -> list[Message]:
        uid = _meta(obj)["uid"]
        seen = self.containers.get(uid)
        if seen is None:
            seen = self.containers[uid] = _Container({})
            out = self._volume_creates(obj, ns) + [self._ev(obj, "create", ns)]
        else:
            out = self._renamed(seen.obj, obj, ns)
        out += self._kill_asked(seen.obj, obj, ns) + self._requests(seen, obj, ns) + self._transitions(seen, obj, ns)
        seen.obj = obj
        if kind == "DELETED":
            if _phase(obj) in ("Running", "Paused"):  # the finalizer stopped it, status untold
                out += self._died(seen, obj, _KILLED if seen.signal == "9" else _TERMINATED, ns)
            self.containers.pop(uid, None)
            out.append(self._ev(obj, "destroy", ns))
        return out

    def _ev(self, obj: Obj, action: str, ns: int, **extra: str) -> Message:
        return message("container", action, dockerid.object_id(obj), container_attrs(obj, **extra), ns)

    def _renamed(self, old: Obj, new: Obj, ns: int) -> list[Message]:
        before, after = dockerid.docker_name(old), dockerid.docker_name(new)
        return [self._ev(new, "rename", ns, oldName=f"/{before}")] if before != after else []

    def _kill_asked(self, old: Obj, new: Obj, ns: int) -> list[Message]:
        """A `kill -s` of a running container (other than SIGKILL, which is a stop): docker's ``kill``."""
        asked = kill_request(new)
        if asked is None or asked == kill_request(old) or _phase(old) not in ("Running", "Paused"):
            return []
        return [self._ev(new, "kill", ns, signal=str(asked.signal))]

    def _requests(self, seen: _Container, new: Obj, ns: int) -> list[Message]:
        """A stop, kill, restart or removal asked of a running container: docker's ``kill`` (SIGTERM, or
        SIGKILL when no grace is given: `k3c kill`, `rm -f`), and what to say once it has exited. A restart
        of a container not running is only remembered: docker says ``restart`` after its start."""
        old = seen.obj
        old_req, new_req = _start_request(old), _start_request(new)
        if _status(old).get("phase") != "Running" or seen.pending:
            if new_req != old_req and new_req.startswith(RESTART_TOKEN_PREFIX) and not seen.pending:
                seen.pending = "restart"
            return []
        stopped = _spec(new).get("state") == "Stopped" and _spec(old).get("state") != "Stopped"
        if _meta(new).get("deletionTimestamp") and not _meta(old).get("deletionTimestamp"):
            seen.pending = "remove"
        elif stopped:
            seen.pending = "stop"
        elif new_req != old_req and _spec(new).get("state", "Running") == "Running":
            seen.pending = "restart"
        else:
            return []
        seen.signal = "9" if int(_spec(new).get("stopTimeout", 10)) == 0 else "15"
        if seen.pending == "stop" and seen.signal == "9":
            seen.pending = "kill"  # `k3c kill` (a stop without grace): docker says no "stop" after it
        return [self._ev(new, "kill", ns, signal=seen.signal)]

    def _transitions(self, seen: _Container, obj: Obj, ns: int) -> list[Message]:
        """Status changes: pull, start (each start is a fresh CRI container, so a new runtime ID is a start
        even when it exited before a watch showed it running), die, stop, restart, pause, unpause."""
        old, new = _status(seen.obj), _status(obj)
        was, now = _phase(seen.obj), _phase(obj)
        out: list[Message] = []
        if was == "Pulling" and now not in ("Pulling", "Failed"):
            actor, name = _familiar(str(_spec(obj).get("image", "")))
            out.append(message("image", "pull", actor, {"name": name}, ns))
        new_cid = bool(new.get("containerID")) and new.get("containerID") != old.get("containerID")
        if was in ("Running", "Paused") and (now in ("Exited", "Failed") or new_cid):
            code = new.get("exitCode") if now in ("Exited", "Failed") else old.get("exitCode")
            out += self._died(seen, seen.obj if new_cid else obj, code or 0, ns)
        if now in ("Running", "Exited") and (new_cid or (now == "Running" and was not in ("Running", "Paused"))):
            out += self._mounts(obj, ns) + [self._ev(obj, "start", ns)]
            if seen.pending == "restart":
                out.append(self._ev(obj, "restart", ns))
                seen.pending = ""
        if now in ("Exited", "Failed") and was not in ("Running", "Paused") and new_cid:
            out += self._died(seen, obj, new.get("exitCode") or 0, ns)
        if now == "Failed" and seen.pending == "restart":  # the restart's start failed: nothing to say
            seen.pending = ""
        if now == "Paused" and was == "Running":
            out.append(self._ev(obj, "pause", ns))
        if was == "Paused" and now == "Running" and not new_cid:
            out.append(self._ev(obj, "unpause", ns))
        return out

    def _died(self, seen: _Container, obj: Obj, code: Any, ns: int) -> list[Message]:
        out: list[Message] = []
        if seen.pending in ("stop", "restart", "remove") and seen.signal == "15" and code == _KILLED:
            out.append(self._ev(obj, "kill", ns, signal="9"))  # the grace period ran out
        out += [self._ev(obj, "die", ns, exitCode=str(code))] + self._mounts(obj, ns, unmount=True)
        stopped = seen.pending in ("stop", "restart") or (
            not seen.pending and _spec(obj).get("state") == "Stopped" and int(_spec(obj).get("stopTimeout", 10)))
        if stopped:
            out.append(self._ev(obj, "stop", ns))
        if seen.pending != "restart":
            seen.pending, seen.signal = "", ""
        return out

    def _volume_creates(self, obj: Obj, ns: int) -> list[Message]:
        """docker says ``volume create`` for each volume of a container it creates, existing or not (the
        Volume object made for it later is then not told again)."""
        out = []
        for m in _spec(obj).get("volumes") or []:
            if m.get("volume"):
                vol = self.volumes.get(m["volume"])
                if vol is None:
                    self.announced.add(m["volume"])
                actor = dockerid.docker_name(vol) if vol else m["volume"]
                out.append(message("volume", "create", actor, {"driver": "local"}, ns))
        return out

    def _mounts(self, obj: Obj, ns: int, unmount: bool = False) -> list[Message]:
        """docker's ``volume mount`` before a start and ``volume unmount`` after an exit, per named volume."""
        out = []
        for m in _spec(obj).get("volumes") or []:
            if not m.get("volume"):
                continue
            vol = self.volumes.get(m["volume"])
            attrs = {"container": dockerid.object_id(obj), "driver": "local"}
            if not unmount:
                attrs.update({"destination": str(m.get("mountPath", "")), "propagation": "",
                              "read/write": "false" if m.get("readOnly") else "true"})
            actor = dockerid.docker_name(vol) if vol else m["volume"]
            out.append(message("volume", "unmount" if unmount else "mount", actor, attrs, ns))
        return out

    # ---- volumes, images, health -----------------------------------------------------------------------
    def volume(self, kind: str, obj: Obj, ns: int) -> list[Message]:
        name = _meta(obj)["name"]
        attrs = {"driver": str(_spec(obj).get("driver") or "local")}
        if kind == "DELETED":
            self.volumes.pop(name, None)
            return [message("volume", "destroy", dockerid.docker_name(obj), attrs, ns)]
        known = name in self.volumes or name in self.announced
        self.announced.discard(name)
        self.volumes[name] = obj
        return [] if known else [message("volume", "create", dockerid.docker_name(obj), attrs, ns)]

    def image(self, kind: str, obj: Obj, ns: int) -> list[Message]:
        """``k3c pull`` (status.pull succeeded for a new request); an Image object gone is docker's
        ``untag``, and ``delete`` when no other reference of the same image is left."""
        uid = _meta(obj)["uid"]
        old = self.images.pop(uid, None)
        image_id = str(_status(obj).get("id") or _status(old).get("id") or "")
        if kind == "DELETED":
            if not image_id:
                return []
            out = [message("image", "untag", image_id, {"name": image_id}, ns)]
            if not any(_status(o).get("id") == image_id for o in self.images.values()):
                out.append(message("image", "delete", image_id, {"name": image_id}, ns))
            return out
        self.images[uid] = obj
        pull, before = _status(obj).get("pull") or {}, _status(old).get("pull") or {}
        if pull.get("state") == "Succeeded" and (before.get("state") != "Succeeded"
                                                 or before.get("request") != pull.get("request")):
            actor, name = _familiar(str(_spec(obj).get("reference", "")))
            return [message("image", "pull", actor, {"name": name}, ns)]
        return []

    def tag(self, kind: str, obj: Obj, ns: int) -> list[Message]:
        """``k3c tag``: one ``tag`` per target once the ImageTag says the targets exist."""
        uid = _meta(obj)["uid"]
        old = self.tags.pop(uid, None)
        if kind == "DELETED":
            return []
        self.tags[uid] = obj
        done = ("Tagged", "Pushing", "Ready")
        if _status(obj).get("phase") not in done or _status(old).get("phase") in done:
            return []
        image_id = str(_status(obj).get("imageID", ""))
        return [message("image", "tag", image_id, {"name": _familiar(str(t))[0]}, ns)
                for t in _spec(obj).get("targets") or []]

    def push(self, kind: str, obj: Obj, ns: int) -> list[Message]:
        uid = _meta(obj)["uid"]
        old = self.pushes.pop(uid, None)
        if kind == "DELETED":
            return []
        self.pushes[uid] = obj
        if _status(obj).get("phase") != "Succeeded" or _status(old).get("phase") == "Succeeded":
            return []
        actor, name = _familiar(str(_spec(obj).get("destination") or _spec(obj).get("image", "")))
        return [message("image", "push", actor, {"name": name}, ns)]

    def health(self, ev: Obj, ns: int) -> list[Message]:
        """A health status Event (new, or repeated: its count grew) of a container the stream knows."""
        uid = _meta(ev).get("uid", "")
        count = int(ev.get("count") or 1)
        if self.recorded.get(uid, 0) >= count:
            return []
        self.recorded[uid] = count
        return self._health_event(ev, ns)

    def _health_event(self, ev: Obj, ns: int) -> list[Message]:
        action = HEALTH_REASONS.get(str(ev.get("reason", "")))
        inv = ev.get("involvedObject") or {}
        seen = self.containers.get(str(inv.get("uid", "")))
        if action is None or inv.get("kind") != LOCAL_CONTAINERS.kind or seen is None:
            return []
        return [self._ev(seen.obj, action, ns)]


def history(tracker: Tracker, recorded: list[Obj]) -> list[Message]:
    """What the current objects (and recorded health Events) still tell about the past, in time order, for
    ``--since``: creations, the last start and exit of each container, finished pulls."""
    out: list[Message] = []
    for seen in tracker.containers.values():
        obj, st = seen.obj, _status(seen.obj)
        out.append(tracker._ev(obj, "create", _stamp_ns(_meta(obj).get("creationTimestamp")) or 0))
        started = _stamp_ns(st.get("startedAt"))
        if started:
            out += tracker._mounts(obj, started) + [tracker._ev(obj, "start", started)]
        finished = _stamp_ns(st.get("finishedAt"))
        if st.get("phase") in ("Exited", "Failed") and finished and started:
            out += tracker._died(_Container(obj), obj, st.get("exitCode") or 0, finished)
    for vol in tracker.volumes.values():
        ns = _stamp_ns(_meta(vol).get("creationTimestamp")) or 0
        out.append(message("volume", "create", dockerid.docker_name(vol), {"driver": "local"}, ns))
    for img in tracker.images.values():
        pull = _status(img).get("pull") or {}
        done = _stamp_ns(pull.get("completionTime"))
        if pull.get("state") == "Succeeded" and done:
            actor, name = _familiar(str(_spec(img).get("reference", "")))
            out.append(message("image", "pull", actor, {"name": name}, done))
    for ev in recorded:
        ns = _stamp_ns(ev.get("eventTime") or ev.get("lastTimestamp") or ev.get("firstTimestamp")) or 0
        out += tracker._health_event(ev, ns) + _gone_container_event(tracker, ev, ns)
    return sorted(out, key=lambda m: m.TimeNano)


def _gone_container_event(tracker: Tracker, ev: Obj, ns: int) -> list[Message]:
    """What an Event the operator recorded says about a container that has since been removed (docker
    replays a ``run --rm``'s create, start, die and destroy for ``--since``; here only the Events, kept for
    the API server's event TTL, still know them). Containers still there are told by their objects."""
    inv = ev.get("involvedObject") or {}
    action = GONE_REASONS.get(str(ev.get("reason", "")))
    uid = str(inv.get("uid", ""))
    if action is None or inv.get("kind") != LOCAL_CONTAINERS.kind or not uid or uid in tracker.containers:
        return []
    notes = _meta(ev).get("annotations") or {}
    attrs = {"name": str(notes.get(NAME_ANNOTATION) or inv.get("name", ""))}
    if notes.get(EVENT_IMAGE_ANNOTATION):
        attrs["image"] = str(notes[EVENT_IMAGE_ANNOTATION])
    if action == "die":
        code = _EXIT_CODE.search(str(ev.get("message", "")))
        attrs["exitCode"] = code.group(1) if code else "0"
    return [message("container", action, dockerid.container_id(uid), attrs, ns)]


# ---- docker's filters -----------------------------------------------------------------------------
#: The filter keys docker's daemon knows for events; it ignores any other key, and so does k3c.
EVENT_FILTERS = ("config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope",
                 "secret", "service", "type", "volume")
#: Keys docker matches by prefix of the actor's ID or name (``container=we`` matches ``web``).
_NAME_FILTERS = ("config", "container", "daemon", "network", "node", "plugin", "secret", "service", "volume")


def known_filters(given: dict[str, list[str]]) -> dict[str, list[str]]:
    """The filters docker's daemon reads, the rest dropped (it ignores a key it does not know)."""
    return {key: values for key, values in given.items() if key in EVENT_FILTERS}


def _strip_tag(image: str) -> str:
    """docker's stripTag: the familiar repository of a reference (``busybox`` for ``busybox:1``)."""
    from k3c.oci.reference import InvalidReference, parse

    try:
        return parse(image).familiar_repository
    except InvalidReference:
        return image


def event_matches(ev: Message, filters: dict[str, list[str]]) -> bool:
    """docker's rules: values of one key are OR-ed, keys AND-ed; names and IDs match by prefix; every
    ``label`` filter must hold (docker AND-s labels); ``image`` matches the reference with or without tag."""
    attrs = ev.Actor["Attributes"]

    def exact(key: str, *sources: str) -> bool:
        return key not in filters or any(v in sources for v in filters[key])

    def prefix(key: str, *sources: str) -> bool:
        return key not in filters or any(s.startswith(v) for v in filters[key] for s in sources if s)

    def labels() -> bool:
        for v in filters.get("label", []):
            k, sep, val = v.partition("=")
            if k not in attrs or (sep and attrs[k] != val):
                return False
        return True

    def image() -> bool:
        name = attrs.get("name" if ev.Type == "image" else "image", "")
        return exact("image", ev.Actor["ID"], name, _strip_tag(ev.Actor["ID"]), _strip_tag(name))

    fuzzy_event = any(v in ("health_status", "exec_create", "exec_start") for v in filters.get("event", []))
    return ((prefix if fuzzy_event else exact)("event", ev.Action) and exact("type", ev.Type)
            and exact("scope", ev.Scope) and image() and labels()
            and all(prefix(key, ev.Actor["ID"], attrs.get("name", "")) for key in _NAME_FILTERS))


#: The watched resources that live in a namespace; the image kinds are cluster-scoped.
NAMESPACED = (LOCAL_CONTAINERS, VOLUMES, EVENTS)


def watched(filters: dict[str, list[str]]) -> tuple[Resource, ...]:
    """The resources whose changes can give an event the ``type`` filter lets through (all without one):
    containers (their pulls are image events, their mounts volume events), volumes (the names mounts show),
    core Events (health), and the image kinds (pull, tag, untag, delete, push)."""
    types = set(filters.get("type") or ("container", "image", "volume"))
    out = [LOCAL_CONTAINERS] if types & {"container", "image", "volume"} else []
    out += [VOLUMES] if "volume" in types else []
    out += [EVENTS] if "container" in types else []
    out += [IMAGES, IMAGE_TAGS, IMAGE_PUSHES] if "image" in types else []
    return tuple(out)
