"""`k3c build`: docker build as an ImageBuild object, followed until the image is in the node's containerd.

How the context reaches the builder (the operator on the node):

- a directory, with the API server on this machine (the kubeconfig's server is a loopback address, as with
  `k3c daemon`): the object names the directory itself (``context.dir``); nothing is copied, the builder
  reads it in place and applies its .dockerignore;
- a directory with a remote API server, or ``-`` (a tar, or a lone Dockerfile, on stdin): the CLI makes a
  tar (honouring .dockerignore, always keeping the Dockerfile and .dockerignore, owners reset to root),
  streams it to the ImageBuild's ``context`` subresource (``POST .../imagebuilds/NAME/context``, stored on
  the node's disk, answered with its sha256), then creates the object with ``context.upload.digest``.
  Uploading first means the build never waits for bytes, and the body never sits in API storage;
- a git URL (``git://``, ``git@``, ``github.com/``, or http(s) ending in ``.git``; ``#ref:subdir`` as
  docker): ``context.git``, cloned by the builder.

``-f`` is relative to the working directory, as in docker; a Dockerfile outside the context directory is
sent inline (``dockerfileInline``). ``--secret id=ID,src=FILE`` (or ``env=VAR``) values go into one Secret
labelled for this build; the operator deletes it when the build is over, and so does the CLI.

``--network`` (default, host or none; BuildKit's values) becomes ``spec.network``, the network of RUN steps
that name none of their own; ``--allow network.host`` (docker buildx's entitlement flag) becomes
``spec.allow``, without which no RUN step gets the host's network; ``--network host`` asks for it as well,
as buildx does. ``--iidfile`` gets the image ID once built and is removed when the build starts.

Progress comes from the ImageBuild's ``log`` subresource (followed over HTTP), on stderr; the image ID goes
to stdout at the end (with ``-q`` nothing else is printed). A failed build exits 1 with the failing step;
Ctrl-C deletes the ImageBuild, which cancels the build on the node, and exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from k3c.api import BUILD_CACHES, BUILD_SECRET_LABEL, IMAGE_BUILDS, SECRETS
from k3c.buildlife import FAILED_LINE, NETWORKS, STEP_RE, BuildRequest, failure, finished, imagebuild_object
from k3c.cli.common import Session, Subcommands, add_command, add_group, command, session
from k3c.cli.errors import CLIError

if TYPE_CHECKING:
    from k3c.kubeclient import Client

_GIT_PREFIXES = ("git://", "git@", "github.com/")
_BOLD, _DIM, _RED, _RESET = "\033[1m", "\033[2m", "\033[31m", "\033[0m"


def register(sub: Subcommands) -> None:
    p = add_command(sub, "build", "Build an image from a Dockerfile",
                    usage="k3c build [OPTIONS] PATH | URL | -")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="list",
                   help="Name and optionally a tag in the 'name:tag' format")
    p.add_argument("-f", "--file", metavar="string", help="Name of the Dockerfile (default: 'PATH/Dockerfile')")
    p.add_argument("--build-arg", action="append", default=[], metavar="list", help="Set build-time variables")
    p.add_argument("--target", metavar="string", help="Set the target build stage to build")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--label", action="append", default=[], metavar="list", help="Set metadata for an image")
    p.add_argument("--progress", choices=["auto", "plain", "tty"], default="auto",
                   help="Set type of progress output (auto, plain, tty)")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID on success")
    p.add_argument("--secret", action="append", default=[], metavar="stringArray",
                   help='Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")')
    p.add_argument("--push", action="store_true", help="Push the image to its registry once built")
    p.add_argument("--network", metavar="string", default="default",
                   help='Set the networking mode for the RUN instructions during build (default "default")')
    p.add_argument("--allow", action="append", default=[], metavar="stringArray",
                   help='Allow extra privileged entitlement (e.g., "network.host")')
    p.add_argument("--iidfile", metavar="string", help="Write the image ID to the file")
    p.add_argument("-o", "--output", metavar="stringArray", type=parse_output,
                   help='Output destination (format: "type=local,dest=path"; type=tar; PATH; "-" for a tar on '
                        "stdout)")
    # docker's classic-builder switches, still in many scripts; k3c never keeps an intermediate container
    p.add_argument("--rm", action="store_true", default=True,
                   help="Remove intermediate containers after a successful build (default true)")
    p.add_argument("--force-rm", action="store_true", help="Always remove intermediate containers")
    p.add_argument("--platform", metavar="string", help="Set target platform for build (k3c: the node's own only)")
    p.add_argument("--upload", action="store_true", help=argparse.SUPPRESS)  # force a context upload
    p.add_argument("build_context", metavar="PATH | URL | -")
    p.set_defaults(func=build_cmd)
    bsub = add_group(sub, "builder", "Manage builds")
    prune = add_command(bsub, "prune", "Remove build cache", usage="k3c builder prune [OPTIONS]")
    prune.add_argument("-a", "--all", action="store_true", help="Remove all unused build cache (k3c: always)")
    prune.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    prune.set_defaults(func=builder_prune_cmd)


# ------------------------------------------------------------------------------------------ the request


@dataclass
class Plan:
    """What the ImageBuild will say, plus the tar to upload first (if any)."""

    context: dict[str, Any]
    dockerfile: str = ""
    dockerfile_inline: str = ""
    upload: Path | None = None
    temp: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for path in self.temp:
            path.unlink(missing_ok=True)


def is_git_url(ref: str) -> bool:
    """docker's urlutil.IsGitURL."""
    if ref.startswith(_GIT_PREFIXES):
        return True
    if ref.startswith(("http://", "https://")):
        path = urllib.parse.urlsplit(ref).path
        return path.endswith(".git") or ".git#" in ref
    return False


def git_context(ref: str) -> dict[str, Any]:
    """``URL#ref:subdir`` as docker reads it."""
    url, _, fragment = ref.partition("#")
    branch, _, subdir = fragment.partition(":")
    if url.startswith("github.com/"):
        url = "https://" + url
    git: dict[str, Any] = {"url": url}
    if branch:
        git["ref"] = branch
    if subdir:
        git["subPath"] = subdir
    return {"git": git}


def is_loopback_server(server: str) -> bool:
    import ipaddress

    host = urllib.parse.urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan_context(args: argparse.Namespace, s: Session) -> Plan:
    src = args.build_context
    if src == "-":
        if args.file == "-":
            raise CLIError("k3c: invalid argument: can't use stdin for both build context and dockerfile", 125)
        return _stdin_plan(args)
    if is_git_url(src):
        return Plan(git_context(src), dockerfile=args.file or "")
    if src.startswith(("http://", "https://")):
        raise CLIError("k3c: remote tarball and Dockerfile URLs are not supported: use a git URL, a path or -", 125)
    return _dir_plan(args, s)


def _dockerfile_from(args: argparse.Namespace, context: Path) -> tuple[str, str]:
    """(path in context, inline text): ``-f`` relative to the working directory, as docker does."""
    if args.file == "-":
        return "", sys.stdin.read()
    given = Path(args.file).absolute() if args.file else context / "Dockerfile"
    if not given.is_file():
        raise CLIError(f"k3c: unable to prepare context: the Dockerfile ({given}) cannot be found", 1)
    try:
        return str(given.resolve().relative_to(context.resolve())), ""
    except ValueError:
        return "", given.read_text()


def _dir_plan(args: argparse.Namespace, s: Session) -> Plan:
    context = Path(args.build_context).absolute()
    if not context.is_dir():
        raise CLIError(f"k3c: unable to prepare context: path {args.build_context!r} not found", 1)
    rel, inline = _dockerfile_from(args, context)
    # a path is sent only to a local k3c daemon; a cluster's nodes (its agents serve the streams) cannot see it
    if is_loopback_server(s.server) and not args.upload and not os.environ.get("K3C_BUILD_UPLOAD") \
            and not s.client.streams_aggregated():
        return Plan({"dir": str(context)}, dockerfile=rel, dockerfile_inline=inline)
    tar = make_context_tar(context, rel or "Dockerfile", gzip=not is_loopback_server(s.server))
    return Plan({"upload": {}}, dockerfile=rel, dockerfile_inline=inline, upload=tar, temp=[tar])


def _stdin_plan(args: argparse.Namespace) -> Plan:
    import tarfile
    import tempfile

    fd, name = tempfile.mkstemp(prefix="k3c-context-", suffix=".tar")
    path = Path(name)
    with os.fdopen(fd, "wb") as out:
        data = sys.stdin.buffer.read()
        out.write(data)
    if _looks_like_tar(data):
        return Plan({"upload": {}}, dockerfile=args.file or "", upload=path, temp=[path])
    with tarfile.open(path, "w"):  # a lone Dockerfile: the context is empty
        pass
    return Plan({"upload": {}}, dockerfile_inline=data.decode(errors="replace"), upload=path, temp=[path])


def _looks_like_tar(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00"


def make_context_tar(context: Path, dockerfile: str, gzip: bool = False) -> Path:
    """A tar of the context as docker's CLI sends it: .dockerignore applied, Dockerfile kept, owners root."""
    import tarfile
    import tempfile

    from k3c.builder.dockerignore import IgnoreFileError, load, walk

    try:
        matcher = load(context)
    except IgnoreFileError as err:
        raise CLIError(f"k3c: {err}", 1) from None
    fd, name = tempfile.mkstemp(prefix="k3c-context-", suffix=".tar")
    os.close(fd)

    def root_owned(info: Any) -> Any:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    tar_file = tarfile.open(name, "w:gz", compresslevel=1) if gzip else tarfile.open(name, "w")
    with tar_file as tar:
        for rel in walk(context, matcher, keep=[dockerfile, ".dockerignore"]):
            path = context / rel
            if path.exists() or path.is_symlink():
                tar.add(path, arcname=rel, recursive=False, filter=root_owned)
    return Path(name)


def parse_kv(items: list[str], what: str, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise CLIError(f'k3c: invalid argument "{item}" for "--{what}" flag', 125)
        if not eq:
            if not from_env:
                raise CLIError(f'k3c: invalid argument "{item}" for "--{what}" flag: expected KEY=VALUE', 125)
            if key not in os.environ:
                continue  # docker: a --build-arg without value and without such variable is skipped
            value = os.environ[key]
        out[key] = value
    return out


def parse_secrets(items: list[str]) -> dict[str, bytes]:
    """``id=ID,src=FILE`` / ``id=ID,env=VAR`` (``source``, ``type=file|env`` accepted) → id: value."""
    out: dict[str, bytes] = {}
    for item in items:
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        sid = fields.get("id", "")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if not sid or not all(c.isalnum() or c in "-._" for c in sid):
            raise CLIError(f'k3c: invalid secret "{item}": id must be [-._a-zA-Z0-9]+', 125)
        if env or fields.get("type") == "env":
            var = env or src or sid
            if var not in os.environ:
                raise CLIError(f'k3c: secret "{sid}": environment variable {var} is not set', 125)
            out[sid] = os.environ[var].encode()
            continue
        path = Path(src or sid).expanduser()
        try:
            out[sid] = path.read_bytes()
        except OSError as err:
            raise CLIError(f'k3c: secret "{sid}": cannot read {path}: {err.strerror}', 125) from None
    return out


def build_object(name: str, args: argparse.Namespace, plan: Plan, secret_ids: list[str],
                 node: str = "") -> dict[str, Any]:
    req = BuildRequest(plan.context, plan.dockerfile, plan.dockerfile_inline,
                       build_args=parse_kv(args.build_arg, "build-arg", from_env=True),
                       labels=parse_kv(args.label, "label"), tags=list(args.tag), target=args.target or "",
                       no_cache=args.no_cache, pull=args.pull, push=args.push, platform=args.platform or "",
                       network=args.network, allow=entitlements(args.allow, args.network), secret_ids=secret_ids,
                       node=node)
    return imagebuild_object(name, req, "k3c-build")


def entitlements(allow: list[str], network: str) -> list[str]:
    """``--allow`` values (repeated or comma-separated, as buildx takes them), plus ``network.host`` for
    ``--network host`` (buildx grants it for that flag); a name buildx does not know, or k3c does not
    support, is an error."""
    from k3c.builder.entitlements import NETWORK_HOST, SECURITY_INSECURE, SUPPORTED

    names = [n.strip() for item in allow for n in item.split(",") if n.strip()]
    for name in names:
        if name == SECURITY_INSECURE:
            raise CLIError(f"k3c: entitlement {name} is not supported by k3c build", 1)
        if name not in SUPPORTED:
            raise CLIError(f"k3c: invalid entitlement: {name}", 1)
    if network == "host":
        names.append(NETWORK_HOST)
    return sorted(set(names))


def check_tags(tags: list[str]) -> None:
    from k3c.oci.reference import InvalidReference, parse

    for tag in tags:
        try:
            parse(tag)
        except InvalidReference as err:
            raise CLIError(f'k3c: invalid argument "{tag}" for "-t, --tag" flag: {err}', 125) from None


# ------------------------------------------------------------------------------------------ HTTP streams


def upload_context(s: Session, name: str, tar: Path) -> tuple[str, str]:
    """Stream the tar to the ``context`` subresource; returns the digest the server computed, and the node
    that keeps it when it says one (a cluster's node agent: the build must run there)."""
    path = s.client.stream_path(IMAGE_BUILDS, s.namespace, name, "context")
    http_conn = s.client.connection(timeout=300)
    try:
        with open(tar, "rb") as body:
            headers = {**s.client.headers("application/x-tar", accept="application/json, */*"),
                       "Content-Length": str(tar.stat().st_size)}
            http_conn.request("POST", path, body=body, headers=headers)
            resp = http_conn.getresponse()
            raw = resp.read()
    finally:
        http_conn.close()
    doc = json.loads(raw or b"{}")
    if resp.status >= 400:
        if resp.status == 404:
            raise CLIError("Error response from daemon: this API server cannot take build context uploads "
                           "(not a k3c daemon?): build from a git URL instead", 1)
        raise CLIError(f"Error response from daemon: {doc.get('message') or raw.decode(errors='replace')}", 1)
    return str(doc["digest"]), str(doc.get("node") or "")


def follow_log(s: Session, name: str) -> Iterator[str]:
    """Lines of the build's ``log`` subresource until the build is over (on the session's connection)."""
    from k3c.apierrors import APIError

    try:
        yield from s.client.lines(s.client.stream_path(IMAGE_BUILDS, s.namespace, name, "log"), follow="true")
    except APIError as err:
        raise CLIError(f"Error response from daemon: {err.message}", 1) from None


# ------------------------------------------------------------------------------------------ display


class Display:
    """Build output on stderr: as is (plain), or with steps highlighted and cache hits shortened (tty)."""

    def __init__(self, mode: str, quiet: bool, out: IO[str] = sys.stderr) -> None:
        if mode == "auto":
            mode = "tty" if out.isatty() else "plain"
        self.mode = mode
        self.quiet = quiet
        self.out = out
        self.recent: list[str] = []  # output since the last step, shown on failure with -q
        self._step_started = 0.0
        self._started = time.monotonic()

    def line(self, text: str) -> None:
        if text.startswith(FAILED_LINE):
            return  # the log's closing line; the command's own error line says the same last
        if STEP_RE.match(text):
            self.recent = []
            self._step(text)
            return
        self.recent.append(text)
        del self.recent[:-40]
        if self.quiet:
            return
        if self.mode == "plain":
            self.out.write(text + "\n")
        elif text.startswith("--> Using cache"):
            self.out.write(f"{_DIM}  CACHED{_RESET}\n")
        else:
            self.out.write(f"{_DIM}  {text}{_RESET}\n")
        self.out.flush()

    def _step(self, text: str) -> None:
        now = time.monotonic()
        if self.quiet:
            return
        if self.mode == "tty":
            if self._step_started:
                self.out.write(f"{_DIM}  DONE {now - self._step_started:.1f}s{_RESET}\n")
            self.out.write(f"{_BOLD}{text}{_RESET}\n")
        else:
            self.out.write(text + "\n")
        self._step_started = now
        self.out.flush()

    def finished(self, ok: bool) -> None:
        if self.quiet or self.mode != "tty":
            return
        total = time.monotonic() - self._started
        word = "FINISHED" if ok else f"{_RED}FAILED{_RESET}"
        self.out.write(f"{_BOLD}{word}{_RESET} in {total:.1f}s\n")
        self.out.flush()


# ------------------------------------------------------------------------------------------ command


@command(code=1)
def build_cmd(args: argparse.Namespace) -> int:
    check_tags(args.tag)
    output: Output | None = args.output
    if args.network not in NETWORKS:
        raise CLIError(f'k3c: network mode "{args.network}" not supported by k3c build ({", ".join(NETWORKS)})', 1)
    entitlements(args.allow, args.network)  # (a bad one is said before anything is sent)
    if args.iidfile:  # as docker: a failed build leaves no stale ID behind
        _remove_iidfile(args.iidfile)
    secret_values = parse_secrets(args.secret)
    s = session(args)
    plan = plan_context(args, s)
    name = "build-" + os.urandom(5).hex()
    display = Display(args.progress, args.quiet)
    created = False
    try:
        node = ""
        if plan.upload is not None:
            digest, node = upload_context(s, name, plan.upload)
            plan.context = {"upload": {"digest": digest}}
        if secret_values:
            _create_secret(s, name, secret_values)
        obj = build_object(name, args, plan, sorted(secret_values), node)  # (node: where the context is)
        s.client.create(s.path(IMAGE_BUILDS), obj)
        created = True
        for text in follow_log(s, name):
            display.line(text)
        obj = _wait_finished(s, name)
    except KeyboardInterrupt:
        if created or secret_values:
            _cancel(s, name, bool(secret_values))
        sys.stderr.write("k3c: build canceled\n")
        return 130
    finally:
        plan.cleanup()
    code = _report(obj, display, args.quiet, print_id=not (output and output.dest == "-"))
    if args.iidfile:
        _write_iidfile(args.iidfile, (obj.get("status") or {}).get("imageID", ""))
    if output is not None:
        export_output(s, obj, output)
    return code


@dataclass
class Output:
    """``--output``: the built stage's files as a directory (``local``) or one tar (``tar``; ``-``: stdout)."""

    kind: str
    dest: str


def parse_output(value: str) -> Output:
    """docker's forms: ``PATH``, ``-``, ``type=local,dest=PATH``, ``type=tar,dest=PATH|-``."""
    if "=" not in value:
        return Output("tar" if value == "-" else "local", value)
    fields = dict(part.partition("=")[::2] for part in value.split(",") if part)
    kind, dest = fields.get("type", "local"), fields.get("dest", "")
    if kind not in ("local", "tar"):
        raise argparse.ArgumentTypeError(f"output type {kind!r} is not supported by k3c build (local, tar)")
    if not dest:
        raise argparse.ArgumentTypeError(f"dest is required for the {kind} output")
    return Output(kind, dest)


def export_output(s: Session, obj: dict[str, Any], output: Output) -> None:
    """Write the built image's filesystem as ``--output`` asks: its archive comes through the ``save``
    subresource and its layers are applied here (:mod:`k3c.archives.unpack`)."""
    import tarfile
    import tempfile

    from k3c.archives.unpack import unpack_archive
    from k3c.cli.images import download_archive

    status = obj.get("status") or {}
    ref = (status.get("tags") or [status.get("imageID", "")])[0]
    with tempfile.TemporaryDirectory(prefix="k3c-output-") as tmp:
        archive = Path(tmp) / "image.tar"
        download_archive(s.client, [ref], "oci-archive", str(archive))
        root = Path(output.dest) if output.kind == "local" else Path(tmp) / "rootfs"
        try:
            root.mkdir(parents=True, exist_ok=True)
            unpack_archive(archive, root)
            if output.kind == "tar":
                _tar_of(root, output.dest)
        except (OSError, ValueError, tarfile.TarError) as err:
            raise CLIError(f"k3c: failed to export the build's output to {output.dest}: {err}", 1) from None


def _tar_of(root: Path, dest: str) -> None:
    """The directory as one tar, to ``dest`` (complete or not at all) or to stdout."""
    import tarfile

    if dest == "-":
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
            for child in sorted(root.iterdir()):
                tar.add(child, arcname=child.name)
        sys.stdout.buffer.flush()
        return
    part = f"{dest}.k3c-{os.urandom(4).hex()}.tmp"
    try:
        with tarfile.open(part, "w") as tar:
            for child in sorted(root.iterdir()):
                tar.add(child, arcname=child.name)
        os.replace(part, dest)
    finally:
        Path(part).unlink(missing_ok=True)


def _remove_iidfile(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise CLIError(f"k3c: failed to remove iidfile: {err.strerror}: {path}", 1) from None


def _write_iidfile(path: str, image_id: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(image_id)
    except OSError as err:
        raise CLIError(f"k3c: failed to write iidfile: {err.strerror}: {path}", 1) from None


def _create_secret(s: Session, name: str, values: dict[str, bytes]) -> None:
    import base64

    secret = {
        "apiVersion": SECRETS.api_version, "kind": SECRETS.kind, "type": "Opaque",
        "metadata": {"name": f"{name}-secrets", "labels": {BUILD_SECRET_LABEL: name}},
        "data": {k: base64.b64encode(v).decode() for k, v in values.items()},
    }
    s.client.create(s.path(SECRETS), secret)


def _cancel(s: Session, name: str, had_secrets: bool) -> None:
    """Delete the ImageBuild (the operator cancels the build) and wait until it is gone."""
    from k3c.apierrors import APIError

    for path in [s.path(IMAGE_BUILDS, name)] + ([s.path(SECRETS, f"{name}-secrets")] if had_secrets else []):
        try:
            s.client.delete(path)
        except APIError:
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            s.client.get(s.path(IMAGE_BUILDS, name))
        except APIError:
            return
        time.sleep(0.1)


def _wait_finished(s: Session, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """The object once its build is over (the log ends just before, when the status says so)."""
    deadline = time.monotonic() + timeout
    while True:
        obj = s.client.get(s.path(IMAGE_BUILDS, name))
        if finished(obj):
            return obj
        if time.monotonic() > deadline:
            raise CLIError(f"k3c: build {name} did not finish: {(obj.get('status') or {}).get('message', '')}", 1)
        time.sleep(0.1)


def _report(obj: dict[str, Any], display: Display, quiet: bool, print_id: bool = True) -> int:
    status = obj.get("status") or {}
    phase = status.get("phase")
    display.finished(phase == "Succeeded")
    if phase == "Succeeded":
        if not quiet:
            for tag in status.get("tags") or []:
                sys.stderr.write(f"Successfully tagged {tag}\n")
        if print_id:
            sys.stdout.write(f"{status.get('imageID', '')}\n")
            sys.stdout.flush()
        return 0
    if quiet and display.recent:
        sys.stderr.write("\n".join(display.recent[-20:]) + "\n")
    step, code, message = failure(status)
    if step and code is not None:
        raise CLIError(f'k3c: build failed at step "{step}": exit code {code}', 1)
    raise CLIError(f"k3c: {message}", 1)


# ------------------------------------------------------------------------------------------ builder prune

PRUNE_TIMEOUT = 300.0


@command()
def builder_prune_cmd(args: argparse.Namespace) -> int:
    """Ask every node's BuildCache for a prune, wait for each to be done, print the space freed."""
    from k3c.units import human_size

    if not args.force:  # docker's prompt and answer: y or Y only; declining still reports the 0B
        sys.stdout.write("WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip() not in ("y", "Y"):
            print("Total reclaimed space: 0B")
            return 0
    print(f"Total reclaimed space: {human_size(prune_build_cache(session(args).client))}")
    return 0


def prune_build_cache(client: Client) -> int:
    """Ask every node's BuildCache for a prune and wait for each; the bytes freed. (`k3c system prune` too.)"""
    request = os.urandom(8).hex()
    names = [o["metadata"]["name"] for o in client.get(BUILD_CACHES.path()).get("items", [])]
    if not names:
        raise CLIError("Error response from daemon: no build cache here (is the k3c daemon running?)", 1)
    for name in names:
        client.merge_patch(BUILD_CACHES.path(name=name), {"spec": {"pruneRequest": request}})
    reclaimed = 0
    deadline = time.monotonic() + PRUNE_TIMEOUT
    for name in names:
        while True:
            status = client.get(BUILD_CACHES.path(name=name)).get("status") or {}
            if status.get("prunedRequest") == request:
                break
            if time.monotonic() > deadline:
                raise CLIError(f"Error response from daemon: node {name} did not prune its build cache in time", 1)
            time.sleep(0.1)
        if status.get("message"):
            raise CLIError(f"Error response from daemon: {name}: {status['message']}", 1)
        reclaimed += int(status.get("reclaimed") or 0)
    return reclaimed
