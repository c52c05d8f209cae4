"""Docker's image commands on Image, ImageTag and ImagePush objects: pull, push, tag, rmi, images, image
prune/inspect, save, load, login, logout.

Why this shape: the CLI never talks to containerd. ``pull`` creates (or re-requests) an Image object and
follows the operator's per-layer progress in its status; ``push`` and ``tag`` create an ImagePush /
ImageTag, follow it to the end and delete it; ``rmi`` deletes Image objects; ``save``/``load`` stream the
archive through the API server's ``save``/``load`` subresources of Image objects (k3c.archives.subresource).
``login`` checks the credentials against the registry itself (as podman does) and keeps them in the
``kube-system/k3c-registry-auth`` dockerconfigjson Secret the operator reads.

In cluster mode every node's store has Image objects of its own (one per node and image, see
k3c.reconcilers.imageobjects): ``images`` then shows a NODE column, and ``--node`` (default ``$K3C_NODE``)
narrows ``images``, ``rmi`` and ``pull`` to one node; ``rmi`` without it removes the reference from every
node that holds it.

``inspect_image(client, ref)`` is the image half of ``k3c inspect`` (cli/ps.py owns that command).
Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from k3c.api import (
    CONFIG_MAPS,
    FORCE_DELETE_ANNOTATION,
    IMAGE_PUSHES,
    IMAGE_TAGS,
    IMAGES,
    LOCAL_CONTAINERS,
    NODE_LABEL,
    SECRETS,
    Resource,
)
from k3c.cli.common import (
    Subcommands,
    add_command,
    command,
    human_duration,
    print_inspected,
    session,
    since,
)
from k3c.cli.errors import CLIError, daemon_error
from k3c.dockerview import docker_image

if TYPE_CHECKING:
    from k3c.kubeclient import Client
    from k3c.oci.reference import Reference

PULL_TIMEOUT = float(os.environ.get("K3C_PULL_TIMEOUT", "3600"))
QUICK_TIMEOUT = float(os.environ.get("K3C_IMAGE_TIMEOUT", "60"))


# ============================================================================================ parsing


def register(sub: Subcommands) -> None:
    _register_top(sub)
    group = sub.add_parser("image", help="Manage images", description="Manage images.")
    isub = group.add_subparsers(dest="image_command", metavar="COMMAND")
    _register_top(isub, prefix="image ")
    p = add_command(isub, "prune", "Remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.set_defaults(func=prune_cmd)
    p = add_command(isub, "inspect", "Display detailed information on one or more images")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=inspect_cmd)
    from k3c.cli.history import add_history

    add_history(isub, "k3c image")
    from k3c.cli.filesystems import add_import

    add_import(isub, "k3c image")
    group.set_defaults(func=lambda _a: group.print_help())


def _register_top(sub: Subcommands, prefix: str = "") -> None:
    names = {"images": "ls" if prefix else "images", "rmi": "rm" if prefix else "rmi"}
    p = add_command(sub, "pull", "Download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    _node_flag(p, "Pull onto this node (cluster mode; default $K3C_NODE, else where it is, else any node)")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=pull_cmd)
    p = add_command(sub, "push", "Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.set_defaults(func=push_cmd)
    p = add_command(sub, "tag", "Create tags TARGET_IMAGE that refer to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("targets", nargs="+", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=tag_cmd)
    p = add_command(sub, names["rmi"], "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    _node_flag(p, "Remove it from this node only (cluster mode; default $K3C_NODE, else from every node)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=rmi_cmd)
    p = add_command(sub, names["images"], "List images")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides k3c's sandbox image)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--format", help="Format output using a Go template (or table, json)")
    _node_flag(p, "Only this node's images (cluster mode; default $K3C_NODE, else every node's)")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=images_cmd)
    p = add_command(sub, "save", "Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive"],
                   help="Archive format (default %(default)s)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=save_cmd)
    p = add_command(sub, "load", "Load images from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.set_defaults(func=load_cmd)
    if not prefix:
        p = add_command(sub, "login", "Log in to a registry")
        p.add_argument("-u", "--username", help="Username")
        p.add_argument("-p", "--password", help="Password")
        p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
        p.add_argument("server", metavar="SERVER")
        p.set_defaults(func=login_cmd)
        p = add_command(sub, "logout", "Log out from a registry")
        p.add_argument("server", metavar="SERVER")
        p.set_defaults(func=logout_cmd)


def _node_flag(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--node", default=os.environ.get("K3C_NODE", ""), metavar="NODE", help=text)


# ============================================================================================ helpers


def parse_ref(text: str) -> Reference:
    """A reference normalized like docker, or docker's one-line error (exit 1)."""
    from k3c.oci.reference import InvalidReference, parse

    try:
        return parse(text)
    except InvalidReference as err:
        raise CLIError(f"{err}", 1) from None


def _get(client: Client, path: str) -> dict[str, Any] | None:
    from k3c.apierrors import NotFound

    try:
        return client.get(path)
    except NotFound as err:
        if err.details.get("name"):
            return None
        raise


def _list_images(client: Client, node: str = "") -> list[dict[str, Any]]:
    """Every Image object, or one node's (its store's, in cluster mode)."""
    items: list[dict[str, Any]] = client.get(IMAGES.path()).get("items", [])
    return [o for o in items if node_of(o) == node] if node else items


def node_of(obj: dict[str, Any]) -> str:
    """The node whose store an Image object shows ("" while no node has claimed it)."""
    node: str = (obj.get("spec") or {}).get("nodeName") or (obj.get("status") or {}).get("node") or ""
    return node


def _per_node(images: list[dict[str, Any]]) -> bool:
    """Whether the objects are cluster mode's, one per node and image: labelled with their node, or of
    several nodes (embedded mode's all belong to its one node)."""
    return any(NODE_LABEL in (o["metadata"].get("labels") or {}) for o in images) \
        or len({node_of(o) for o in images} - {""}) > 1


def find_image(client: Client, text: str, images: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """An Image object by reference (derived name first, then any object with that spec.reference),
    else by image ID or unique ID prefix, as docker resolves image arguments."""
    from k3c.oci.reference import InvalidReference, object_name, parse

    try:
        ref = parse(text)
    except InvalidReference:
        ref = None
    if ref is not None:
        obj = _get(client, IMAGES.path(name=object_name(ref))) if images is None else None
        if obj is not None and _same_ref(obj, ref):
            return obj
        images = images if images is not None else _list_images(client)
        images = sorted(images, key=lambda o: node_of(o) != socket.gethostname())  # this host's node first
        for o in images:
            if _same_ref(o, ref):
                return o
    want = text.removeprefix("sha256:")
    if len(want) >= 4 and all(c in "0123456789abcdef" for c in want):
        images = images if images is not None else _list_images(client)
        hits = [o for o in images if _image_id(o).removeprefix("sha256:").startswith(want)]
        if len({_image_id(o) for o in hits}) > 1:
            raise daemon_error(f"multiple IDs found with provided prefix: {text}")
        if hits:
            return hits[0]
    return None


def _same_ref(obj: dict[str, Any], ref: Reference) -> bool:
    from k3c.oci.reference import InvalidReference, parse

    try:
        return str(parse((obj.get("spec") or {}).get("reference", ""))) == str(ref)
    except InvalidReference:
        return False


def _image_id(obj: dict[str, Any]) -> str:
    return (obj.get("status") or {}).get("id") or ""


def _watch(client: Client, resource: Resource, name: str, rv: str, timeout: float,
           ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Watch events of one cluster-scoped object until ``timeout`` (re-watching on server time-outs)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        chunk = max(1, min(int(remaining) + 1, 50))
        try:
            for ev in client.watch(resource.path(), timeout=chunk + 10, resourceVersion=rv,
                                   fieldSelector=f"metadata.name={name}", timeoutSeconds=chunk,
                                   allowWatchBookmarks="true"):
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    current = _get(client, resource.path(name=name))
                    if current is None:
                        yield "DELETED", {}
                        return
                    rv = current["metadata"]["resourceVersion"]
                    yield "MODIFIED", current
                    break
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if ev.get("type") != "BOOKMARK":
                    yield ev["type"], obj
        except TimeoutError:
            continue


def follow(client: Client, resource: Resource, obj: dict[str, Any], done: Any, timeout: float,
           on_update: Any = None) -> dict[str, Any] | None:
    """Follow one object until ``done(obj)``; None once it is deleted; raises CLIError at the deadline."""
    if done(obj):
        return obj
    name = obj["metadata"]["name"]
    for kind, current in _watch(client, resource, name, obj["metadata"]["resourceVersion"], timeout):
        if kind == "DELETED":
            return None
        if on_update is not None:
            on_update(current)
        if done(current):
            return current
    raise CLIError(f"k3c: timed out waiting for {resource.kind.lower()} {name}", 1)


def wait_image_objects(client: Client, refs: list[str], timeout: float = 10.0) -> None:
    """Until each reference's Image object is Ready. The operator makes the object from containerd's event
    and writes its status (ID, size) just after, and a `k3c images` right after `load` or `tag` must show
    the image whole, as docker's would."""
    deadline = time.monotonic() + timeout
    pending = list(refs)
    while pending and time.monotonic() < deadline:
        images = _list_images(client)
        pending = [r for r in pending if not _is_ready(find_image(client, r, images))]
        if pending:
            time.sleep(0.05)


def _is_ready(obj: dict[str, Any] | None) -> bool:
    return obj is not None and (obj.get("status") or {}).get("phase") == "Ready"


def _delete_quietly(client: Client, resource: Resource, name: str, wait: float = 0.0) -> None:
    """Delete, ignoring errors; with ``wait``, until the object is gone (its finalizer dropped) or that
    many seconds passed, so the command does not end before what it undid is undone."""
    from k3c.apierrors import APIError

    try:
        client.delete(resource.path(name=name))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            client.get(resource.path(name=name))
            time.sleep(0.05)
    except (APIError, OSError):
        pass


# ============================================================================================ pull


@command()
def pull_cmd(args: argparse.Namespace) -> int:
    from k3c import imagelife

    ref = parse_ref(args.image)
    client = session(args).client
    if ":" not in args.image.rsplit("/", 1)[-1] and "@" not in args.image and not args.quiet:
        print("Using default tag: latest")
    request = uuid.uuid4().hex
    existing = find_image(client, str(ref), _list_images(client, args.node) if args.node else None)
    created = existing is None
    before = ((existing or {}).get("status") or {}).get("digest", "")
    if existing is None:
        obj = _create_or_request(client, imagelife.pull_object(ref, request, args.node), request)
    else:
        obj = client.merge_patch(IMAGES.path(name=existing["metadata"]["name"]), imagelife.pull_patch(request))
    if not args.quiet:
        print(f"{ref.tag or ref.digest}: Pulling from {ref.path}")
    try:
        final = _follow_pull(client, obj, request, args.quiet)
    except BaseException:
        if created:
            _delete_quietly(client, IMAGES, obj["metadata"]["name"], wait=10)
        raise
    failure = imagelife.pull_failure(final, request)
    if failure:
        if created and imagelife.phase(final) != "Ready":  # never remove a present image
            _delete_quietly(client, IMAGES, obj["metadata"]["name"], wait=10)
        raise daemon_error(failure)
    st = final.get("status") or {}
    if not args.quiet:
        print(f"Digest: {st.get('digest', '')}")
        what = "Image is up to date for" if before and before == st.get("digest") else "Downloaded newer image for"
        print(f"Status: {what} {ref.familiar()}")
    print(str(ref))
    return 0


def _create_or_request(client: Client, body: dict[str, Any], request: str) -> dict[str, Any]:
    from k3c import imagelife
    from k3c.apierrors import AlreadyExists

    try:
        return client.create(IMAGES.path(), body)
    except AlreadyExists:
        pass
    return client.merge_patch(IMAGES.path(name=body["metadata"]["name"]), imagelife.pull_patch(request))


def _follow_pull(client: Client, obj: dict[str, Any], request: str, quiet: bool) -> dict[str, Any]:
    from k3c import imagelife
    from k3c.cli.layerprogress import LayerProgress

    progress = LayerProgress(stream=sys.stdout, quiet=quiet)

    def done(o: dict[str, Any]) -> bool:
        return imagelife.pull_finished(o, request)

    def update(o: dict[str, Any]) -> None:
        layers = imagelife.pull_layers(o, request)
        if layers:
            progress.update(layers)

    final = follow(client, IMAGES, obj, done, PULL_TIMEOUT, update)
    if final is None:
        raise daemon_error("the image object was deleted during the pull")
    update(final)
    return final


# ============================================================================================ push


@command()
def push_cmd(args: argparse.Namespace) -> int:
    from k3c import imagelife
    from k3c.cli.layerprogress import LayerProgress

    ref = parse_ref(args.image)
    client = session(args).client
    local = find_image(client, str(ref))
    if local is None:
        raise CLIError(f"An image does not exist locally with the tag: {ref.familiar_repository}", 1)
    if not args.quiet:
        print(f"The push refers to repository [{ref.repository if ref.domain != 'docker.io' else 'docker.io/' + ref.path}]")
    obj = client.create(IMAGE_PUSHES.path(), imagelife.push_object(ref))
    progress = LayerProgress(stream=sys.stdout, quiet=args.quiet)

    def done(o: dict[str, Any]) -> bool:
        return imagelife.phase(o) in imagelife.PUSH_DONE

    def update(o: dict[str, Any]) -> None:
        layers = (o.get("status") or {}).get("layers") or []
        if layers:
            progress.update(layers)

    try:
        final = follow(client, IMAGE_PUSHES, obj, done, PULL_TIMEOUT, update)
    finally:
        _delete_quietly(client, IMAGE_PUSHES, obj["metadata"]["name"])
    st = (final or {}).get("status") or {}
    if final is None or st.get("phase") != "Succeeded":
        raise daemon_error(st.get("message") or "push failed")
    update(final)
    if args.quiet:
        print(str(ref))
    else:
        print(f"{ref.tag or 'latest'}: digest: {st.get('digest')} size: {st.get('size')}")
    return 0


# ============================================================================================ tag


@command()
def tag_cmd(args: argparse.Namespace) -> int:
    from k3c import imagelife

    client = session(args).client
    targets = [str(parse_ref(t)) for t in args.targets]
    source = find_image(client, args.source)
    if source is None:
        if not _looks_like_id(args.source):
            parse_ref(args.source)
        raise daemon_error(f"No such image: {args.source}")
    obj = client.create(IMAGE_TAGS.path(), imagelife.tag_object(source, targets))

    def done(o: dict[str, Any]) -> bool:
        return imagelife.phase(o) in imagelife.TAG_DONE

    try:
        final = follow(client, IMAGE_TAGS, obj, done, QUICK_TIMEOUT)
    finally:
        _delete_quietly(client, IMAGE_TAGS, obj["metadata"]["name"])
    st = (final or {}).get("status") or {}
    if st.get("phase") == "Failed":
        raise daemon_error(st.get("message") or "tag failed")
    wait_image_objects(client, targets)
    return 0


def _looks_like_id(text: str) -> bool:
    from k3c.imagelife import looks_like_id

    return looks_like_id(text)


# ============================================================================================ rmi


@command()
def rmi_cmd(args: argparse.Namespace) -> int:
    client = session(args).client
    status = 0
    for text in args.images:
        try:
            _remove_image(client, text, args.force, args.node)
        except CLIError as err:
            print(err.message, file=sys.stderr)
            status = 1
    return status


def _remove_image(client: Client, text: str, force: bool, node: str = "") -> None:
    from k3c import imagelife

    images = _list_images(client, node)
    obj = find_image(client, text, images)
    if obj is None:
        raise CLIError(f"Error: No such image: {text}", 1)
    try:
        # the reference on every node that holds it (cluster mode; embedded mode has one object per reference)
        plan = imagelife.plan_removal(images, obj, text, force)
        if not force:
            user = _container_using(client, obj, plan.image_id, plan.last)
            if user:
                raise imagelife.in_use_conflict(obj, user)
    except imagelife.ImageConflict as err:
        raise daemon_error(err.message) from None
    for o in plan.doomed:
        _delete_image_object(client, o, force)
    for name in plan.untagged:
        print(f"Untagged: {name}")
    if plan.last and plan.image_id:
        print(f"Deleted: {plan.image_id}")


def _tag_of(obj: dict[str, Any]) -> str:
    from k3c.imagelife import reference_of

    return reference_of(obj)


def _familiar(obj: dict[str, Any]) -> str:
    from k3c.imagelife import familiar

    return familiar(obj)


def _container_using(client: Client, obj: dict[str, Any], image_id: str, last: bool) -> str:
    """A LocalContainer that names this reference, or runs this image when its last name goes."""
    from k3c.apierrors import APIError
    from k3c.imagelife import container_using

    try:
        containers = client.get(LOCAL_CONTAINERS.path()).get("items", [])
    except APIError:
        return ""
    return container_using(containers, obj, image_id, last)


def _delete_image_object(client: Client, obj: dict[str, Any], force: bool) -> None:
    from k3c.apierrors import NotFound

    name = obj["metadata"]["name"]
    if force:
        client.merge_patch(IMAGES.path(name=name),
                           {"metadata": {"annotations": {FORCE_DELETE_ANNOTATION: "true"}}})
    try:
        gone = client.delete(IMAGES.path(name=name))
    except NotFound:
        return

    def done(o: dict[str, Any]) -> bool:
        return False

    if not (gone.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        follow(client, IMAGES, gone, done, QUICK_TIMEOUT)
    except CLIError:
        current = _get(client, IMAGES.path(name=name))
        message = ((current or {}).get("status") or {}).get("message") or "image removal did not finish"
        raise daemon_error(message) from None


# ============================================================================================ images


@dataclass
class ImageRow:
    """One row of `k3c images`, with docker's --format field names."""

    Repository: str
    Tag: str
    Digest: str
    ID: str
    CreatedSince: str
    CreatedAt: str
    Size: str
    VirtualSize: str
    Containers: str = "N/A"
    SharedSize: str = "N/A"
    UniqueSize: str = "N/A"


@dataclass
class NodeImageRow(ImageRow):
    """A row of cluster mode's `k3c images`: the node whose store holds the image, too (`{{.Node}}`)."""

    Node: str = ""


def _rows(images: list[dict[str, Any]], args: argparse.Namespace, per_node: bool = False) -> list[ImageRow]:
    from k3c.cli.common import go_time
    from k3c.oci.reference import normalize
    from k3c.pauseimage import PAUSE_IMAGE

    pause = normalize(PAUSE_IMAGE)
    rows = []
    for o in sorted(images, key=lambda o: (o.get("status") or {}).get("created") or "", reverse=True):
        st = o.get("status") or {}
        if st.get("phase") != "Ready" and not args.all:
            continue
        if _tag_of(o) == pause and not args.all:
            continue
        if args.repository and not _matches(o, args.repository):
            continue
        image_id = st.get("id", "")
        age = since(st.get("created"))
        row = ImageRow(
            Repository=st.get("repository") or "<none>", Tag=st.get("tag") or "<none>",
            Digest=st.get("digest") or "<none>",
            ID=image_id if args.no_trunc else image_id.removeprefix("sha256:")[:12],
            CreatedSince=f"{human_duration(age)} ago" if age is not None else "N/A",
            CreatedAt=go_time(st.get("created")) if st.get("created") else "N/A",
            Size=st.get("sizeText", ""), VirtualSize=st.get("sizeText", ""),
        )
        rows.append(NodeImageRow(**vars(row), Node=node_of(o)) if per_node else row)
    return rows


def _matches(obj: dict[str, Any], pattern: str) -> bool:
    import fnmatch

    st = obj.get("status") or {}
    repo, _, tag = pattern.partition(":") if "/" not in pattern.rsplit(":", 1)[-1] else (pattern, "", "")
    repos = {st.get("repository", ""), _tag_of(obj).rsplit("@", 1)[0].rsplit(":", 1)[0]}
    return any(fnmatch.fnmatchcase(r, repo) for r in repos) and (not tag or fnmatch.fnmatchcase(st.get("tag", ""), tag))


@command()
def images_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.template import Format

    images = _list_images(session(args).client, args.node)
    per_node = _per_node(images)
    rows = _rows(images, args, per_node)
    if args.quiet:
        seen: list[str] = []
        for r in rows:
            if r.ID not in seen:
                seen.append(r.ID)
        print("".join(i + "\n" for i in seen), end="")
        return 0
    digest = "{{.Digest}}\t" if args.digests else ""
    node = "\t{{.Node}}" if per_node else ""  # cluster mode: which node's store
    default = "table {{.Repository}}\t{{.Tag}}\t" + digest + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}" + node
    headers = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
               "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "SIZE",
               "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
               "Node": "NODE"}
    fmt = Format.parse(args.format or default, default)
    sys.stdout.write(fmt.render(rows, headers))
    return 0


# ============================================================================================ prune


@command()
def prune_cmd(args: argparse.Namespace) -> int:
    client = session(args).client
    if not args.force:
        what = "all images without at least one container associated to them" if args.all else "all dangling images"
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    reclaimed, output = prune_images(client, args.all)
    from k3c.units import human_size

    if output:
        print(output)
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def prune_images(client: Client, everything: bool) -> tuple[int, str]:
    """Remove dangling images (``everything``: every image no container uses); (space reclaimed, docker's
    "Deleted Images:" section, '' if none went). `k3c system prune` uses it too."""
    from k3c.imagelife import prunable
    from k3c.oci.reference import normalize
    from k3c.pauseimage import PAUSE_IMAGE

    pause = normalize(PAUSE_IMAGE)
    images = [o for o in _list_images(client) if _tag_of(o) != pause]
    doomed = prunable(images, everything)
    deleted, reclaimed = [], 0
    for o in doomed:
        image_id = _image_id(o)
        last = sum(1 for x in images if _image_id(x) == image_id) <= 1
        if _container_using(client, o, image_id, True):
            continue
        _delete_image_object(client, o, False)
        images = [x for x in images if x is not o]
        deleted.append(f"untagged: {_familiar(o)}")
        if last and image_id:
            deleted.append(f"deleted: {image_id}")
            reclaimed += int((o.get("status") or {}).get("size") or 0)
    return reclaimed, ("Deleted Images:\n" + "\n".join(deleted) + "\n") if deleted else ""


# ============================================================================================ inspect


def inspect_image(client: Client, ref: str) -> dict[str, Any] | None:
    """``docker image inspect`` output for one image (reference, ID or ID prefix), or None if unknown.

    For `k3c inspect` (cli/ps.py) and `k3c image inspect`.
    """
    images = _list_images(client)
    obj = find_image(client, ref, images)
    if obj is None:
        return None
    return docker_image(obj, images)


@command()
def inspect_cmd(args: argparse.Namespace) -> int:

    client = session(args).client
    found, missing = [], []
    for ref in args.images:
        doc = inspect_image(client, ref)
        (found.append(doc) if doc is not None else missing.append(ref))
    return print_inspected(found, missing, args.format, "image")


# ============================================================================================ save / load


def _status_failure(raw: bytes, code: int) -> CLIError:
    try:
        message = json.loads(raw).get("message") or raw.decode(errors="replace")
    except ValueError:
        message = raw.decode(errors="replace")
    return daemon_error(message.strip() or f"HTTP {code}")


@command()
def save_cmd(args: argparse.Namespace) -> int:
    client = session(args).client
    if not args.output and sys.stdout.isatty():
        raise CLIError("k3c: cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    refs = []
    images = _list_images(client)
    for text in args.images:
        obj = find_image(client, text, images)
        if obj is None:
            raise daemon_error(f"reference does not exist: {text}")
        refs.append(_tag_of(obj))
    download_archive(client, refs, args.format, args.output)
    return 0


def download_archive(client: Client, refs: list[str], fmt: str, output: str | None) -> None:
    """The ``save`` subresource's archive of ``refs`` to ``output`` (stdout if None), whole or not at all."""
    import urllib.parse

    query = urllib.parse.urlencode([("format", fmt)] + [("image", r) for r in refs])
    path = client.stream_path(IMAGES, None, "-", "save")
    conn = client.connection(blocksize=1 << 20, unbounded=True)
    try:
        conn.request("GET", path + "?" + query,
                     headers=client.headers(accept="*/*"))
        resp = conn.getresponse()
        if resp.status != 200:
            raise _status_failure(resp.read(), resp.status)
        _copy_out(resp, output)
    finally:
        conn.close()


def _copy_out(resp: Any, output: str | None) -> None:
    """Write the archive; to a file only once complete (a temp file renamed), so no half archive stays."""
    import http.client

    try:
        if not output:
            while chunk := resp.read(1 << 20):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        tmp = f"{output}.k3c-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
            os.replace(tmp, output)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except (http.client.HTTPException, ConnectionError) as err:
        raise CLIError(f"k3c: the archive stream ended early ({type(err).__name__}): nothing was written", 1) from None


@command()
def load_cmd(args: argparse.Namespace) -> int:
    client = session(args).client
    if not args.input and sys.stdin.isatty():
        raise CLIError("requested load from stdin, but stdin is empty", 1)
    source = open(args.input, "rb") if args.input else sys.stdin.buffer  # closed below
    try:
        doc = upload_archive(client, source, os.fstat(source.fileno()).st_size if args.input else None)
    finally:
        if args.input:
            source.close()
    loaded = doc.get("images") or []
    names = [i["name"] for i in loaded if not i["name"].startswith("sha256:")]
    wait_image_objects(client, names)
    if not args.quiet:
        for i in loaded:
            if i["name"].startswith("sha256:"):
                print(f"Loaded image ID: {i['id']}")
            else:
                print(f"Loaded image: {_familiar({'spec': {'reference': i['name']}})}")
    return 0


def upload_archive(client: Client, source: Any, size: int | None) -> dict[str, Any]:
    path = client.stream_path(IMAGES, None, "-", "load")
    conn = client.connection(blocksize=1 << 20, unbounded=True)
    headers = client.headers("application/x-tar", accept="*/*")
    try:
        if size is not None:
            headers["Content-Length"] = str(size)
            conn.request("POST", path, body=source, headers=headers)
        else:
            chunks = iter(lambda: source.read(1 << 20), b"")
            conn.request("POST", path, body=chunks, headers=headers,
                         encode_chunked=True)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise _status_failure(raw, resp.status)
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


# ============================================================================================ login / logout


def _secret_path() -> str:
    from k3c.distribution.auth import SECRET_NAME, SECRET_NAMESPACE

    return SECRETS.path(SECRET_NAMESPACE, SECRET_NAME)


def _read_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        if args.password:
            raise CLIError("--password and --password-stdin are mutually exclusive", 1)
        return sys.stdin.read().rstrip("\r\n")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password: str = args.password
        return password
    if not sys.stdin.isatty():
        raise CLIError("Error: Cannot perform an interactive login from a non TTY device", 1)
    return getpass.getpass("Password: ")


def _server_host(server: str) -> str:
    from k3c.distribution.auth import server_key

    key = server_key(server)
    return "docker.io" if key.startswith("https://index.docker.io") else key


@command()
def login_cmd(args: argparse.Namespace) -> int:
    from k3c.distribution.auth import Credentials, DockerConfig

    username = args.username
    if not username:
        if args.password_stdin or not sys.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device", 1)
        username = input("Username: ").strip()
    password = _read_password(args)
    if not username or not password:
        raise CLIError("Error: Username and password are required", 1)
    client = session(args).client
    host = _server_host(args.server)
    creds = Credentials(username, password)
    _check_login(client, host, creds)
    secret = _get(client, _secret_path())
    config = DockerConfig.from_secret(secret)
    config.set(host, creds)
    _save_secret(client, secret, config)
    print("Login Succeeded")
    return 0


def _check_login(client: Client, host: str, creds: Any) -> None:
    """GET /v2/ with the credentials, as docker's daemon does before storing them."""
    import asyncio

    from k3c.distribution.client import RegistryClient
    from k3c.distribution.errors import RegistryError, Unauthorized
    from k3c.distribution.hosts import CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, RegistriesConfig

    cm = _get(client, CONFIG_MAPS.path(CONFIGMAP_NAMESPACE, CONFIGMAP_NAME))
    try:
        settings = RegistriesConfig.from_configmap(cm).for_host(host)
    except (ValueError, OSError) as err:
        raise CLIError(f"Error: registry settings {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {err}", 1) from None

    async def ping() -> None:
        async with RegistryClient(host, credentials=creds, settings=settings) as rc:
            await rc.ping()

    try:
        asyncio.run(ping())
    except Unauthorized as err:
        raise daemon_error(f"login attempt to {host} failed: {err.message}") from None
    except RegistryError as err:
        raise daemon_error(str(err)) from None


def _save_secret(client: Client, secret: dict[str, Any] | None, config: Any) -> None:
    from k3c.distribution.auth import SECRET_NAME, SECRET_NAMESPACE, SECRET_TYPE

    if secret is None:
        body = {"apiVersion": SECRETS.api_version, "kind": SECRETS.kind, "type": SECRET_TYPE,
                "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE}, "data": config.secret_data()}
        client.create(SECRETS.path(SECRET_NAMESPACE), body)
        return
    client.merge_patch(_secret_path(), {"data": config.secret_data(),
                                        "metadata": {"resourceVersion": secret["metadata"]["resourceVersion"]}})


@command()
def logout_cmd(args: argparse.Namespace) -> int:
    from k3c.distribution.auth import DockerConfig

    client = session(args).client
    host = _server_host(args.server)
    secret = _get(client, _secret_path())
    config = DockerConfig.from_secret(secret)
    if secret is None or not config.remove(host):
        print(f"Not logged in to {args.server}")
        return 0
    print(f"Removing login credentials for {args.server}")
    _save_secret(client, secret, config)
    return 0
