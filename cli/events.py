"""`k3c events`: docker's event stream, one line per action in order, derived from watches of k3c's objects.

Why here: the derivation itself (which change of which object is which docker action) and docker's filter
matching live in k3c.dockerevents, shared with the Docker API's ``GET /events``; this module is the command
around them — docker's flags (``--filter``, ``--since``/``--until`` in docker's time forms, ``--format``),
the replay for ``--since``,
and the stream: one watch per resource, each change turned into docker's events once, stamped in the order
they are handled.
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

from k3c.api import EVENTS, Resource
from k3c.cli.common import Session, Subcommands, add_command, command, parse_time, session
from k3c.cli.errors import CLIError, daemon_error
from k3c.dockerevents import NAMESPACED, Message, Tracker, event_matches, history, known_filters, watched

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


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


# ---- lines -----------------------------------------------------------------------------------------
def format_line(ev: Message) -> str:
    """docker's line: time, type, action, actor ID, then the attributes sorted by key."""
    attrs = ev.Actor["Attributes"]
    text = f"{format_time_nano(ev.TimeNano)} {ev.Type} {ev.Action} {ev.Actor['ID']}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


# ---- filters ----------------------------------------------------------------------------------------
def parse_filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise CLIError(f'k3c: invalid argument "{value}" for "-f, --filter" flag: bad format of filter '
                           "(expected name=value)", 125)
        out.setdefault(key, []).append(val)
    return known_filters(out)


# ---- the stream -------------------------------------------------------------------------------------
#: What a watch thread hands the main thread: (resource, watch event type, object), or ("error", "", the
#: exception) when its watch failed.
_Queued = tuple[Resource | str, str, Any]


def _path(s: Session, resource: Resource) -> str:
    return resource.path(s.namespace if resource in NAMESPACED else None)


def _list(s: Session, resources: tuple[Resource, ...]) -> dict[Resource, dict[str, Any]]:
    """One list per resource: the base the stream compares with, and the replay's material. A kind the
    server does not serve (its CRD not installed) is left out."""
    from k3c.apierrors import NotFound

    lists = {}
    for resource in resources:
        try:
            lists[resource] = s.client.get(_path(s, resource))
        except NotFound:
            continue
    return lists


def _watch(s: Session, resource: Resource, rv: str, out: queue.Queue[_Queued]) -> None:
    """One watch, re-opened from the last resourceVersion until the process ends. Runs in a daemon thread."""
    try:
        while True:
            try:
                rv = _watch_once(s, resource, rv, out)
            except TimeoutError:
                continue
    except BaseException as err:  # handed to the main thread, which reports it
        out.put(("error", "", err))


def _watch_once(s: Session, resource: Resource, rv: str, out: queue.Queue[_Queued]) -> str:
    """Queue events until the server ends the watch; a 410 (history compacted) relists. Returns the last rv."""
    for ev in s.client.watch(_path(s, resource), timeout=90, resourceVersion=rv,
                             allowWatchBookmarks="true", timeoutSeconds=60):
        obj = ev.get("object") or {}
        if ev.get("type") == "ERROR":
            if obj.get("code") != 410:
                raise CLIError(f"Error response from daemon: {obj.get('message', 'watch failed')}", 1)
            relisted: str = s.client.get(_path(s, resource))["metadata"]["resourceVersion"]
            return relisted
        rv = obj.get("metadata", {}).get("resourceVersion", rv)
        if ev.get("type") != "BOOKMARK":
            out.put((resource, ev["type"], obj))
    return rv


def _emit(ev: Message, filters: dict[str, list[str]], render: Callable[[Message], str]) -> None:
    if event_matches(ev, filters):
        sys.stdout.write(render(ev) + "\n")
        sys.stdout.flush()


def _renderer(fmt: str | None) -> Callable[[Message], str]:
    from k3c.cli.template import Template, unescape

    if not fmt:
        return format_line
    if fmt == "json":  # docker 23's form; 20.10 prints the word
        return lambda ev: json.dumps(ev.to_json(), ensure_ascii=False, separators=(",", ":"))
    tmpl = Template(unescape(fmt))
    return tmpl.render


@command()
def events_cmd(args: argparse.Namespace) -> int:
    now = time.time()
    since_t = parse_when(args.since, now) if args.since else None
    until_t = parse_when(args.until, now) if args.until else None
    if since_t is not None and until_t is not None and since_t > until_t:
        raise daemon_error(f"`since` time ({int(since_t)}) cannot be after `until` time ({int(until_t)})")
    filters = parse_filters(args.filter)
    render = _renderer(args.format)
    s = session(args)
    tracker = Tracker()
    lists = _list(s, watched(filters))
    for resource, doc in lists.items():
        for obj in doc.get("items", []):
            tracker.seed(resource, obj)
    if since_t is not None:
        recorded = lists.get(EVENTS, {}).get("items", [])
        for ev in history(tracker, recorded):
            if ev.TimeNano >= since_t * 1e9 and (until_t is None or ev.TimeNano <= until_t * 1e9):
                _emit(ev, filters, render)
    if until_t is not None and until_t <= time.time():
        return 0
    try:
        return _stream(s, lists, tracker, filters, render, until_t)
    except KeyboardInterrupt:
        return 0


def _stream(s: Session, lists: dict[Resource, dict[str, Any]], tracker: Tracker,
            filters: dict[str, list[str]], render: Callable[[Message], str], until_t: float | None) -> int:
    """Follow every listed resource from its list's version; each change is stamped when handled, so the
    lines are in the order the changes happened per object and in time order overall."""
    q: queue.Queue[_Queued] = queue.Queue()
    for resource, doc in lists.items():
        rv = doc.get("metadata", {}).get("resourceVersion", "")
        threading.Thread(target=_watch, args=(s, resource, rv, q), daemon=True,
                         name=f"watch-{resource.plural}").start()
    while until_t is None or time.time() < until_t:
        try:
            source, kind, obj = q.get(timeout=0.25)
        except queue.Empty:
            continue
        if not isinstance(source, Resource):
            raise obj
        for ev in tracker.stamped(source, kind, obj, time.time_ns()):
            _emit(ev, filters, render)
    return 0
