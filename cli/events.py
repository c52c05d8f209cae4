"""`k3c events`: docker's event stream, derived from watches.

Why derived: there is no event log to read; the objects are the truth. Watching LocalContainers and
Volumes and comparing each new status with the last one gives docker's create/start/die/stop/destroy (and
image pull) with docker's attributes, and the core/v1 Events the operator records are shown beside them.
`--since` replays what the objects and recorded Events still tell (creation, start and exit times).
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from k3c.api import EVENTS, LOCAL_CONTAINERS, VOLUMES, Resource
from k3c.cli.common import (
    Session,
    Subcommands,
    add_command,
    command,
    container_id,
    parse_time,
    session,
)
from k3c.cli.common import (
    parse_filters as common_parse_filters,
)
from k3c.cli.errors import CLIError

EVENT_FILTERS = ("container", "event", "type", "image", "label", "volume")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}

Event = dict[str, Any]


def register(sub: Subcommands) -> None:
    p = add_command(sub, "events", "Get real time events from the server", usage="k3c events [OPTIONS]")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="filter",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", metavar="string", help="Format output using a Go template (or 'json')")
    p.add_argument("--since", metavar="string", help="Show all events created since timestamp")
    p.add_argument("--until", metavar="string", help="Stream events until this timestamp")
    p.set_defaults(func=events_cmd)


# ---- times ------------------------------------------------------------------------------------------
def parse_when(value: str, now: float) -> float:
    """docker's --since/--until: RFC 3339 (date-only too), Unix seconds[.nanos], or a Go duration ago (10m)."""
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    if _DURATION_RE.fullmatch(v) or re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", v):
        return now - sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(v))
    t = parse_time(v) or (parse_time(v + "T00:00:00Z") if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) else None)
    if t is None:
        raise CLIError(f'k3c: invalid timestamp "{value}": use RFC 3339, Unix seconds or a duration like 10m', 125)
    if t.tzinfo is None:
        t = t.astimezone()
    return t.timestamp()


def format_time_nano(ns: int) -> str:
    """docker's RFC3339NanoFixed in local time: 2026-01-01T00:00:00.000000000Z."""
    t = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    offset = t.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}" + zone


def _stamp_ns(value: str | None, fallback_ns: int) -> int:
    t = parse_time(value)
    return int(t.timestamp() * 1e9) if t else fallback_ns


# ---- events -----------------------------------------------------------------------------------------
def make_event(kind: str, action: str, actor_id: str, attrs: dict[str, str], ns: int,
               image: str | None = None) -> Event:
    ev: Event = {"Type": kind, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                 "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
    if kind == "container":  # docker's legacy fields, still in its JSON
        ev = {"status": action, "id": actor_id, "from": image or "", **ev}
    return ev


def format_line(ev: Event) -> str:
    attrs = ev["Actor"]["Attributes"]
    text = f"{format_time_nano(ev['timeNano'])} {ev['Type']} {ev['Action']} {ev['Actor']['ID']}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def _container_attrs(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj.get("spec") or {}
    attrs = dict(spec.get("labels") or {})
    attrs.update(image=spec.get("image", ""), name=obj["metadata"]["name"])
    return attrs


class Tracker:
    """Remembers each object's last state and turns changes into docker's events."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}

    def seed(self, resource: Resource, obj: dict[str, Any]) -> None:
        (self.containers if resource == LOCAL_CONTAINERS else self.volumes)[obj["metadata"]["uid"]] = obj

    def container(self, kind: str, obj: dict[str, Any], ns: int) -> list[Event]:
        uid = obj["metadata"]["uid"]
        prev = self.containers.get(uid)
        if kind == "DELETED":
            self.containers.pop(uid, None)
            return self._transitions(prev or obj, obj, ns) + [self._ev(obj, "destroy", ns)]
        self.containers[uid] = obj
        out = [] if prev else [self._ev(obj, "create", ns)]
        return out + self._transitions(prev, obj, ns)

    def _transitions(self, prev: dict[str, Any] | None, obj: dict[str, Any], ns: int) -> list[Event]:
        old = ((prev or {}).get("status") or {})
        new = obj.get("status") or {}
        was, now = old.get("phase"), new.get("phase")
        out: list[Event] = []
        if was == "Pulling" and now != "Pulling" and now != "Failed":
            image = obj["spec"].get("image", "")
            out.append(make_event("image", "pull", image, {"name": image}, ns))
        # each start is a fresh container: a new ID means a start, even one that exited before it showed Running
        new_cid = bool(new.get("containerID")) and new.get("containerID") != old.get("containerID")
        if was == "Running" and (now in ("Exited", "Failed") or new_cid):
            code = new.get("exitCode", 0) if now in ("Exited", "Failed") else old.get("exitCode", 0)
            out.append(self._ev(prev or obj, "die", ns, exitCode=str(code)))
            if obj["spec"].get("state") == "Stopped":
                out.append(self._ev(obj, "stop", ns))
        if now in ("Running", "Exited") and (new_cid or (now == "Running" and was != "Running")):
            out.append(self._ev(obj, "start", ns))
        if now in ("Exited", "Failed") and was != "Running" and new_cid:
            out.append(self._ev(obj, "die", ns, exitCode=str(new.get("exitCode", 0))))
        return out

    def _ev(self, obj: dict[str, Any], action: str, ns: int, **extra: str) -> Event:
        attrs = {**_container_attrs(obj), **extra}
        return make_event("container", action, container_id(obj), attrs, ns, obj["spec"].get("image"))

    def volume(self, kind: str, obj: dict[str, Any], ns: int) -> list[Event]:
        uid = obj["metadata"]["uid"]
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.volumes.pop(uid, None)
            return [make_event("volume", "destroy", name, {"driver": "local"}, ns)]
        known = uid in self.volumes
        self.volumes[uid] = obj
        return [] if known else [make_event("volume", "create", name, {"driver": "local"}, ns)]

    def recorded(self, ev: dict[str, Any]) -> Event:
        """A core/v1 Event the operator (or anyone) recorded, in docker's line shape."""
        inv = ev.get("involvedObject") or {}
        involved = inv.get("kind", "")
        kind = {LOCAL_CONTAINERS.kind: "container", VOLUMES.kind: "volume"}.get(involved, involved.lower())
        known = self.containers.get(inv.get("uid", ""))
        actor = container_id(known) if known else inv.get("name", "")
        attrs = {"name": inv.get("name", ""), "type": ev.get("type", "Normal"), "message": ev.get("message", "")}
        if known:
            attrs["image"] = known["spec"].get("image", "")
        ns = _stamp_ns(ev.get("eventTime") or ev.get("lastTimestamp") or ev.get("firstTimestamp"), time.time_ns())
        return make_event(kind or "event", ev.get("reason", ""), actor, attrs, ns)


def history(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], recorded: list[dict[str, Any]],
            tracker: Tracker) -> list[Event]:
    """What the current objects still tell about the past, for --since."""
    out: list[Event] = []
    for obj in containers:
        st = obj.get("status") or {}
        out.append(tracker._ev(obj, "create", _stamp_ns(obj["metadata"].get("creationTimestamp"), 0)))
        if st.get("startedAt"):
            out.append(tracker._ev(obj, "start", _stamp_ns(st["startedAt"], 0)))
        if st.get("phase") in ("Exited", "Failed") and st.get("finishedAt"):
            out.append(tracker._ev(obj, "die", _stamp_ns(st["finishedAt"], 0), exitCode=str(st.get("exitCode", 0))))
    for obj in volumes:
        ns = _stamp_ns(obj["metadata"].get("creationTimestamp"), 0)
        out.append(make_event("volume", "create", obj["metadata"]["name"], {"driver": "local"}, ns))
    out += [tracker.recorded(ev) for ev in recorded]
    return sorted(out, key=lambda e: e["timeNano"])


# ---- filters ----------------------------------------------------------------------------------------
def parse_filters(values: list[str]) -> dict[str, list[str]]:
    return common_parse_filters(values, EVENT_FILTERS)


def event_matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    attrs = ev["Actor"]["Attributes"]

    def label(v: str) -> bool:
        k, sep, val = v.partition("=")
        return k in attrs and (not sep or attrs[k] == val)

    checks: dict[str, Callable[[str], bool]] = {
        "type": lambda v: ev["Type"] == v,
        "event": lambda v: ev["Action"] == v,
        "container": lambda v: ev["Type"] == "container" and (attrs.get("name") == v or ev["Actor"]["ID"].startswith(v)),
        "image": lambda v: attrs.get("image") == v or (ev["Type"] == "image" and ev["Actor"]["ID"] == v),
        "label": label,
        "volume": lambda v: ev["Type"] == "volume" and ev["Actor"]["ID"] == v,
    }
    return all(any(checks[k](v) for v in vals) for k, vals in filters.items())


# ---- the stream -------------------------------------------------------------------------------------
#: What the stream follows: containers and volumes for docker's own events, core Events for the operator's.
WATCHED = (LOCAL_CONTAINERS, VOLUMES, EVENTS)
#: What a watch thread hands the main thread: (resource, event type, object, time in ns), or
#: ("error", "", the exception, 0) when its watch failed.
_Queued = tuple[Resource | str, str, Any, int]


def _watch(s: Session, resource: Resource, rv: str, out: queue.Queue[_Queued]) -> None:
    """One watch, re-opened from the last resourceVersion until the process ends. Runs in a daemon thread."""
    try:
        while True:
            try:
                rv = _watch_once(s, resource, rv, out)
            except TimeoutError:
                continue
    except BaseException as err:  # handed to the main thread, which reports it
        out.put(("error", "", err, 0))


def _watch_once(s: Session, resource: Resource, rv: str, out: queue.Queue[_Queued]) -> str:
    """Queue events until the server ends the watch; a 410 (history compacted) relists. Returns the last rv."""
    for ev in s.client.watch(resource.path(s.namespace), timeout=90, resourceVersion=rv,
                             allowWatchBookmarks="true", timeoutSeconds=60):
        obj = ev.get("object") or {}
        if ev.get("type") == "ERROR":
            if obj.get("code") != 410:
                raise CLIError(f"Error response from daemon: {obj.get('message', 'watch failed')}", 1)
            relisted: str = s.client.get(resource.path(s.namespace))["metadata"]["resourceVersion"]
            return relisted
        rv = obj.get("metadata", {}).get("resourceVersion", rv)
        if ev.get("type") != "BOOKMARK":
            out.put((resource, ev["type"], obj, time.time_ns()))
    return rv


def _emit(ev: Event, filters: dict[str, list[str]], render: Callable[[Event], str]) -> None:
    if event_matches(ev, filters):
        sys.stdout.write(render(ev) + "\n")
        sys.stdout.flush()


def _renderer(fmt: str | None) -> Callable[[Event], str]:
    from k3c.cli.template import Template, unescape

    if not fmt:
        return format_line
    if fmt == "json":
        return lambda ev: json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    tmpl = Template(unescape(fmt))
    return tmpl.render


@command()
def events_cmd(args: argparse.Namespace) -> int:
    now = time.time()
    since_t = parse_when(args.since, now) if args.since else None
    until_t = parse_when(args.until, now) if args.until else None
    filters = parse_filters(args.filter)
    render = _renderer(args.format)
    s = session(args)
    tracker = Tracker()
    lists = {resource: s.client.get(resource.path(s.namespace)) for resource in WATCHED}
    for resource in (LOCAL_CONTAINERS, VOLUMES):
        for obj in lists[resource].get("items", []):
            tracker.seed(resource, obj)
    if since_t is not None:
        for ev in history(lists[LOCAL_CONTAINERS].get("items", []), lists[VOLUMES].get("items", []),
                          lists[EVENTS].get("items", []), tracker):
            if ev["timeNano"] >= since_t * 1e9 and (until_t is None or ev["timeNano"] <= until_t * 1e9):
                _emit(ev, filters, render)
    if until_t is not None and until_t <= time.time():
        return 0
    try:
        return _stream(s, lists, tracker, filters, render, until_t)
    except KeyboardInterrupt:
        return 0


def _stream(s: Session, lists: dict[Resource, dict[str, Any]], tracker: Tracker,
            filters: dict[str, list[str]], render: Callable[[Event], str], until_t: float | None) -> int:
    q: queue.Queue[_Queued] = queue.Queue()
    for resource, doc in lists.items():
        rv = doc.get("metadata", {}).get("resourceVersion", "")
        threading.Thread(target=_watch, args=(s, resource, rv, q), daemon=True,
                         name=f"watch-{resource.plural}").start()
    while until_t is None or time.time() < until_t:
        try:
            source, kind, obj, ns = q.get(timeout=0.25)
        except queue.Empty:
            continue
        if source == "error":
            raise obj
        if source == LOCAL_CONTAINERS:
            evs = tracker.container(kind, obj, ns)
        elif source == VOLUMES:
            evs = tracker.volume(kind, obj, ns)
        else:
            evs = [tracker.recorded(obj)] if kind == "ADDED" else []
        for ev in evs:
            _emit(ev, filters, render)
    return 0

