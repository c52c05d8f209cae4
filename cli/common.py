"""What every docker-style command shares: global flags, the API session, docker's errors and exit codes,
container addressing (name or ID prefix), generated names and waiting on an object through a watch.

Why one module: each command is a few lines of intent on top of these; keeping them here keeps the
docker habits (wording, exit codes, resolution order) identical across commands. Only the standard
library and leaves of k3c (the API vocabulary, docker identity, the CLI's error type) are imported at
module level so `k3c ps` stays instant.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeAlias

from k3c import dockerid
from k3c.api import GROUP, LOCAL_CONTAINERS, Resource
from k3c.cli.errors import CLIError, daemon_error, no_such_container
from k3c.containerlife import ACTIVE_PHASES as ACTIVE_PHASES
from k3c.containerlife import is_running as is_running
from k3c.dockerid import generate_name as generate_name
from k3c.dockerview import runtime_id as runtime_id
from k3c.timefmt import parse_time as parse_time
from k3c.timefmt import since as since
from k3c.units import human_duration as human_duration

if TYPE_CHECKING:
    from k3c.apierrors import APIError
    from k3c.kubeclient import Client




# ---- errors -----------------------------------------------------------------------------------------
_current: dict[str, Any] = {}


def _describe_os_error(err: OSError) -> str:
    """A local file problem names the file; anything else is a connection problem, said docker's way."""
    if err.filename:
        return f"k3c: {err.strerror or err}: {err.filename}"
    server = _current.get("server", "the k3c API server")
    import ssl

    if isinstance(err, ssl.SSLCertVerificationError):
        return f"Cannot connect to the k3c daemon at {server}: TLS verification failed ({err.verify_message})"
    if isinstance(err, TimeoutError):
        return f"Timed out talking to the k3c daemon at {server}. Is the k3c daemon running?"
    return f"Cannot connect to the k3c daemon at {server}. Is the k3c daemon running?"


def _report(message: str, prefix: str) -> None:
    if message.startswith(prefix):
        prefix = ""
    sys.stderr.write(f"{prefix}{message}\n")
    sys.stderr.flush()


def command(code: int = 1, prefix: str = "") -> Callable[[Callable[[argparse.Namespace], int]],
                                                           Callable[[argparse.Namespace], int]]:
    """Wrap a command: every failure becomes one line on stderr and docker's exit code, never a traceback.

    `code` is the exit code for errors the API returned (docker: 1, but 125 for `run`/`create`);
    `prefix` is what docker puts before such lines (`docker: ` for run/create).
    """

    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            from k3c.apierrors import APIError
            from k3c.kubeclient import ConfigError

            try:
                return int(fn(args) or 0)
            except CLIError as err:
                _report(err.message, prefix)
                return err.code
            except APIError as err:
                _report(api_error_message(err), prefix)
                return code
            except ConfigError as err:
                _report(str(err), prefix)
                return 125
            except KeyboardInterrupt:
                return 130
            except BrokenPipeError:
                _silence_stdout()
                return 0
            except OSError as err:
                _report(_describe_os_error(err), prefix)
                return 125
            except Exception as err:  # the promise is: no traceback reaches the user
                exit_code = getattr(err, "exit_code", None)  # k3c.streams' StreamError
                if isinstance(exit_code, int):
                    _report(str(err), prefix)
                    return exit_code
                if os.environ.get("K3C_DEBUG"):
                    raise
                _report(f"k3c: unexpected error: {type(err).__name__}: {err} (set K3C_DEBUG=1 for details)", "")
                return 125

        return run

    return wrap


def api_error_message(err: APIError) -> str:
    """An API Status as docker would say it; a 404 for the resource type itself means no CRDs."""
    from k3c.apierrors import NotFound

    if isinstance(err, NotFound) and not err.details.get("name"):
        return (f"Error response from daemon: the {GROUP} resources are not installed on this cluster "
                "(is the k3c daemon running? `k3c daemon` installs them)")
    return f"Error response from daemon: {err.message}"


def _silence_stdout() -> None:
    """After the reader of a pipe went away (`k3c ps | head`), keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


# ---- argument parsing -------------------------------------------------------------------------------
# What each command module's register() adds its commands to. The class is generic in typeshed only, so
# the alias stays a string at run time.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, as argparse asks it: ``$COLUMNS``, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class DockerArgumentParser(argparse.ArgumentParser):
    """argparse with docker's error habits: one line, exit 125 for a bad flag and 1 for a wrong arg count."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        """argparse's own, told the terminal's width: argparse would ask shutil, whose import (bz2, lzma)
        is ~3 ms of every command's start, and it makes a formatter for every add_argument."""
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)  # type: ignore[call-arg]

    def error(self, message: str) -> NoReturn:
        text, code = _docker_usage_error(self.prog, message)
        sys.stderr.write(f"k3c: {text}. See '{self.prog} --help'.\n")
        sys.exit(code)

    # typeshed types argparse's version as three overloads (a namespace given or not): this serves all three
    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        """Extras are errors here, in this command's words (argparse would report them for `k3c` itself);
        ``--flag=false`` of pflag-style booleans is read first (:mod:`k3c.cli.goflags`)."""
        if args is not None:
            from k3c.cli.goflags import expand_bool_flags

            args = expand_bool_flags(self, list(args), self.error)
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            if extras[0].startswith("-") and extras[0] != "-":
                self.error(f"unknown flag: {extras[0]}")
            if not self._get_positional_actions():
                self.error("accepts no arguments")
            self.error(f"too many arguments: {' '.join(extras)}")
        return ns, extras


def _docker_usage_error(prog: str, message: str) -> tuple[str, int]:
    """argparse's message → docker's wording and exit code (flags 125, argument counts 1)."""
    if message.startswith("unknown flag"):
        return message, 125
    if message.startswith(("accepts no arguments", "too many arguments")):
        return f"'{prog}' {message}", 1
    if message.startswith("the following arguments are required"):
        return f"'{prog}' requires at least 1 argument", 1
    m = re.match(r"argument ([^:]+): (.*)", message, re.S)
    if m:
        flag, detail = m.group(1).replace("/", ", "), m.group(2)
        bad = re.match(r"invalid (\w+) value: '(.*)'", detail)
        if bad:
            return f'invalid argument "{bad.group(2)}" for "{flag}" flag: not a valid {bad.group(1)}', 125
        if detail.startswith("expected one argument"):
            return f"flag needs an argument: {flag.split(', ')[0]}", 125
        if detail.startswith("invalid choice"):
            return f"unknown command or value: {detail.removeprefix('invalid choice: ')}", 1
        if detail.startswith(("not allowed with", "ignored explicit")):
            return f"{flag}: {detail}", 125
        return detail, 125  # our own flag parsers word their messages completely, as docker does
    return message, 125


def global_flags() -> argparse.ArgumentParser:
    """--kubeconfig/--context/-n on every command, kubectl's meaning (K3C_KUBECONFIG is the env default)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    g.add_argument("--kubeconfig", metavar="FILE", default=None,
                   help="Kubeconfig to use (default $K3C_KUBECONFIG, else the local k3c's)")
    g.add_argument("--context", default=None, help="Kubeconfig context to use")
    g.add_argument("-n", "--namespace", default=None, help="Namespace (default: the context's, else default)")
    return p


_GLOBAL = global_flags()


def add_command(sub: Subcommands, name: str, help: str, usage: str | None = None,
                add_help: bool = True, global_flags: bool = True, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand with docker's help layout, docker's error habits and (on leaf commands) the global flags.

    A group such as `volume` takes no global flags itself: argparse would let its subcommand's defaults
    overwrite them.
    """
    saved = sub._parser_class
    sub._parser_class = DockerArgumentParser
    try:
        p = sub.add_parser(name, help=help, description=help + ".", parents=[_GLOBAL] if global_flags else [],
                           add_help=add_help, usage=usage, **kw)
    finally:
        sub._parser_class = saved
    if not add_help:
        p.add_argument("--help", action="help", help="Show this help message and exit")
    return p


def add_group(sub: Subcommands, name: str, help: str) -> Subcommands:
    """A command group such as `k3c volume COMMAND` (no global flags of its own, see :func:`add_command`;
    its help when no command is given), and the place for its commands."""
    group = add_command(sub, name, help, usage=f"k3c {name} COMMAND", global_flags=False)
    group.set_defaults(func=lambda _args: group.print_help())
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND", prog=f"k3c {name}", title="commands")


def add_inspect(sub: Subcommands, noun: str, func: Callable[[argparse.Namespace], int]) -> None:
    """`k3c NOUN inspect [-f FORMAT] NAME...` of a group, with docker's flags and help (names in ``names``)."""
    metavar = noun.upper()
    p = add_command(sub, "inspect", f"Display detailed information on one or more {noun}s",
                    usage=f"k3c {noun} inspect [OPTIONS] {metavar} [{metavar}...]")
    p.add_argument("-f", "--format", metavar="string", help="Format output using a Go template (or 'json')")
    p.add_argument("names", nargs="+", metavar=metavar)
    p.set_defaults(func=func)


# ---- session ----------------------------------------------------------------------------------------
class Session(NamedTuple):
    """The API client and namespace a command works in (one connection, reused for every call).
    (A NamedTuple, as the other records every command imports: ``dataclasses`` costs ~10 ms of a start.)"""

    client: Client
    namespace: str
    server: str

    def path(self, resource: Resource = LOCAL_CONTAINERS, name: str | None = None,
             sub: str | None = None) -> str:
        """An object's URL; with ``sub``, one of its node-side subresources (top, stats, archive, pause, …),
        which are the embedded server's own, or on a cluster the node agents' aggregated group."""
        if sub is not None:
            with _DISCOVERY:  # (asked once, on this session's one connection: threads may ask at once)
                return self.client.stream_path(resource, self.namespace, name or "", sub)
        return resource.path(self.namespace, name, sub)


_DISCOVERY = threading.Lock()


@functools.cache
def _session(kubeconfig: str | None, context: str | None, namespace: str | None) -> Session:
    from k3c import kubeclient

    conn = kubeclient.load(kubeconfig, context, namespace)
    _current["server"] = conn.server
    return Session(kubeclient.Client(conn), conn.namespace, conn.server)


def session(args: argparse.Namespace) -> Session:
    def flag(name: str) -> str | None:
        return getattr(args, name, None) or getattr(args, "top_" + name, None)

    return _session(flag("kubeconfig"), flag("context"), flag("namespace"))


# ---- ids and names ----------------------------------------------------------------------------------
def container_id(obj: dict[str, Any]) -> str:
    """The container's docker ID (k3c.dockerid): derived from the object's uid, so it exists from the create
    response on and stays the same across restarts (the CRI container ID, :func:`runtime_id`, does not)."""
    return dockerid.object_id(obj)


def short_id(cid: str) -> str:
    return cid[:12]


def valid_name(name: str) -> bool:
    """A Kubernetes object name (DNS-1123 subdomain)."""
    return dockerid.valid_object_name(name)


def check_name(name: str, what: str = "container") -> None:
    """docker's rule for names (``proj_web_1`` is fine): the object's name is mapped from it."""
    if not dockerid.valid_docker_name(name):
        raise daemon_error(f"Invalid {what} name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", 125)


def name_holder(name: str, containers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The container whose docker name is ``name``: docker names are unique in a namespace, the object names
    they map to cannot tell (a renamed container keeps its object name)."""
    return next((o for o in containers if dockerid.docker_name(o) == name), None)


def name_conflict(name: str, other: dict[str, Any], status: int = 125) -> CLIError:
    """docker's Conflict for a name in use (exit 125 for create and run, 1 for rename)."""
    return daemon_error(f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{container_id(other)}". You have to remove (or rename) that container to be able to '
                        "reuse that name.", status)


class Containers:
    """Resolves docker-style references with docker's order: full ID, docker name, object name, unique ID
    prefix (k3c.dockerid.lookup). A name that maps to an object with that docker name costs one GET;
    anything else one list call, made once per command."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self._all: list[dict[str, Any]] | None = None

    def all(self) -> list[dict[str, Any]]:
        if self._all is None:
            self._all = self.s.client.get(self.s.path()).get("items", [])
        return self._all

    def get(self, ref: str) -> dict[str, Any]:
        direct = self._by_docker_name(ref)
        if direct is not None:
            return direct
        found = dockerid.lookup(self.all(), ref)
        if len(found) > 1:
            raise daemon_error(f"multiple IDs found with provided prefix: {ref}")
        if not found:
            raise no_such_container(ref)
        return dict(found[0])

    def _by_docker_name(self, ref: str) -> dict[str, Any] | None:
        """The common case without a list: the object ``ref`` maps to, if its docker name is ``ref``."""
        from k3c.apierrors import NotFound

        if not dockerid.valid_docker_name(ref) or len(ref) == dockerid.ID_LENGTH:
            return None
        try:
            obj = self.s.client.get(self.s.path(LOCAL_CONTAINERS, dockerid.object_name(ref)))
        except NotFound as err:
            if not err.details.get("name"):
                raise
            return None
        return obj if dockerid.docker_name(obj) == ref else None


def for_each(refs: list[str], action: Callable[[str], None]) -> int:
    """Docker's multi-argument habit: act on each, report each failure on its own line, exit 1 if any."""
    from k3c.apierrors import APIError

    status = 0
    for ref in refs:
        try:
            action(ref)
        except CLIError as err:
            _report(err.message, "")
            status = 1
        except APIError as err:
            _report(api_error_message(err), "")
            status = 1
    return status


# ---- time -------------------------------------------------------------------------------------------
def go_time(value: str | None) -> str:
    """A timestamp as Go's time.Time.String() prints it in local time (docker's CreatedAt)."""
    t = parse_time(value)
    if t is None:
        return ""
    local = t.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or "")


# ---- waiting through watches ------------------------------------------------------------------------
class WaitTimeout(Exception):
    """The condition did not hold before the deadline."""


def watch_object(s: Session, resource: Resource, name: str, rv: str, deadline: float,
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events of one object from resourceVersion rv until the deadline (re-watching on server timeouts)."""
    from k3c.apierrors import from_status

    while (remaining := deadline - time.monotonic()) > 0:
        chunk = max(1, min(int(remaining) + 1, 50))
        try:
            for ev in s.client.watch(s.path(resource), timeout=chunk + 10, resourceVersion=rv,
                                     fieldSelector=f"metadata.name={name}", timeoutSeconds=chunk,
                                     allowWatchBookmarks="true"):
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") == 410:  # compacted away: start over from the current object
                        rv = yield from _relist(s, resource, name)
                        break
                    raise from_status(obj.get("code", 500), obj)
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if ev.get("type") != "BOOKMARK":
                    yield ev["type"], obj
                if time.monotonic() >= deadline:
                    return
        except TimeoutError:
            continue


def _relist(s: Session, resource: Resource, name: str) -> Generator[tuple[str, dict[str, Any]], None, str]:
    from k3c.apierrors import NotFound

    try:
        obj = s.client.get(s.path(resource, name))
    except NotFound:
        yield "DELETED", {}
        return ""
    yield "MODIFIED", obj
    rv: str = obj["metadata"]["resourceVersion"]
    return rv


def wait_all_gone(s: Session, objs: list[dict[str, Any]], patience: float,
                  resource: Resource = LOCAL_CONTAINERS) -> Iterator[str]:
    """The names of ``objs`` (objects being finalized) as each is deleted, until all are, or none went for
    ``patience`` seconds (so hundreds may take longer than one would, while the removals progress).

    One watch of the collection from the oldest of their resourceVersions, rather than one per object:
    ``rm -f`` of many then costs one request, whatever their number."""
    from k3c.apierrors import from_status

    deadline = time.monotonic() + patience
    waiting = {o["metadata"]["name"] for o in objs}
    rv = min((o["metadata"]["resourceVersion"] for o in objs), key=int, default="")
    while waiting and (remaining := deadline - time.monotonic()) > 0:
        chunk = max(1, min(int(remaining) + 1, 50))
        if not rv:  # compacted away (or nothing known): whatever is missing from a list is gone
            listed = s.client.get(s.path(resource))
            present = {o["metadata"]["name"] for o in listed.get("items", [])}
            for name in sorted(waiting - present):
                waiting.discard(name)
                deadline = time.monotonic() + patience
                yield name
            rv = listed["metadata"]["resourceVersion"]
            continue
        try:
            for ev in s.client.watch(s.path(resource), timeout=chunk + 10, resourceVersion=rv,
                                     timeoutSeconds=chunk, allowWatchBookmarks="true"):
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") != 410:
                        raise from_status(obj.get("code", 500), obj)
                    rv = ""
                    break
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                name = obj.get("metadata", {}).get("name")
                if ev.get("type") == "DELETED" and name in waiting:
                    waiting.discard(name)
                    deadline = time.monotonic() + patience
                    yield name
                if not waiting or time.monotonic() >= deadline:
                    return
        except TimeoutError:
            continue


def wait_for(s: Session, obj: dict[str, Any], done: Callable[[dict[str, Any] | None], bool], timeout: float,
             resource: Resource = LOCAL_CONTAINERS, on_update: Callable[[dict[str, Any]], None] | None = None,
             ) -> dict[str, Any] | None:
    """Follow one object until done(obj) holds (done(None) is asked when it is deleted).

    Returns the last object seen (None once deleted); raises WaitTimeout at the deadline.
    Event-driven through a watch, so a status change shows up at once, without polling.
    """
    if done(obj):
        return obj
    name = obj["metadata"]["name"]
    deadline = time.monotonic() + timeout
    for kind, current in watch_object(s, resource, name, obj["metadata"]["resourceVersion"], deadline):
        if kind == "DELETED":
            if done(None):
                return None
            continue
        if on_update:
            on_update(current)
        if done(current):
            return current
    raise WaitTimeout(name)


def wait_removed(s: Session, deleted: dict[str, Any], resource: Resource, what: str, timeout: float) -> None:
    """After a DELETE: wait while a finalizer holds the object (the operator cleaning up the node), as
    docker's `rm` returns once the thing is gone. ``deleted`` is the DELETE's answer (a Status when the object
    went at once); at the deadline, a daemon error ``<what>: still being removed after ...``."""
    if deleted.get("kind") != resource.kind or not deleted["metadata"].get("finalizers"):
        return
    try:
        wait_for(s, deleted, lambda o: o is None, timeout, resource=resource)
    except WaitTimeout:
        raise daemon_error(f"{what}: still being removed after {timeout:g}s (is the k3c daemon running?)") from None


def phase(obj: dict[str, Any] | None) -> str:
    return ((obj or {}).get("status") or {}).get("phase") or "Pending"


def parse_filters(values: list[str], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """docker's `-f key=value` flags, grouped by key; an unknown key is refused as docker refuses it."""
    out: dict[str, list[str]] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise CLIError("bad format of filter (expected name=value)", 125)
        if key not in allowed:
            raise daemon_error(f"invalid filter '{key}'")
        out.setdefault(key, []).append(val)
    return out


def print_inspected(found: list[Any], missing: list[str], fmt: str | None, kind: str) -> int:
    """`inspect` output as docker prints it: a JSON array, or one template line per object; then an
    error line per name not found (exit 1 if any)."""
    import json

    from k3c.cli.template import Template, unescape

    if fmt and fmt != "json":
        tmpl = Template(unescape(fmt))
        print("".join(tmpl.render(o) + "\n" for o in found), end="")
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    for ref in missing:
        print(f"Error: No such {kind}: {ref}", file=sys.stderr)
    return 1 if missing else 0

