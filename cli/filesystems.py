"""`k3c diff`, `export`, `import` and `commit`: a container's filesystem as docker's changes, as a tar, or
as an image, and a tar as an image.

`diff` and `export` read the node through the LocalContainer's `changes` and `export` subresources
(k3c.streams.nodeops). `import` makes a one-layer image here, from a tar and docker's `--change`
instructions (applied by the Dockerfile engine's own code, k3c.builder.imageconfig), and loads it
through the images' `load` subresource as `k3c load` does. `commit` asks the node (the LocalContainer's
`commit` subresource, k3c.builder.commit) to make the image from the container's snapshot.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from k3c.api import LOCAL_CONTAINERS
from k3c.cli.common import Containers, Subcommands, add_command, command, session
from k3c.cli.errors import CLIError
from k3c.cli.history import parse_bool


def register(sub: Subcommands) -> None:
    p = add_command(sub, "diff", "Inspect changes to files or directories on a container's filesystem",
                    usage="k3c diff CONTAINER")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=diff_cmd)
    p = add_command(sub, "export", "Export a container's filesystem as a tar archive",
                    usage="k3c export [OPTIONS] CONTAINER")
    p.add_argument("-o", "--output", metavar="string", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=export_cmd)
    add_import(sub)
    p = add_command(sub, "commit", "Create a new image from a container's changes",
                    usage="k3c commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--author", default="", metavar="string",
                   help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", metavar="string", help="Commit message")
    p.add_argument("-p", "--pause", type=parse_bool, nargs="?", const=True, default=True, metavar="bool",
                   help="Pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=commit_cmd)


def add_import(sub: Subcommands, prog: str = "k3c") -> None:
    """`k3c import`, and `k3c image import`."""
    p = add_command(sub, "import", "Import the contents from a tarball to create a filesystem image",
                    usage=f"{prog} import [OPTIONS] file|- [REPOSITORY[:TAG]]")
    p.add_argument("-c", "--change", action="append", default=[], metavar="list",
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", metavar="string", help="Set commit message for imported image")
    p.add_argument("--platform", metavar="string", help="Set platform if server is multi-platform capable")
    p.add_argument("source", metavar="file|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=import_cmd)


@command()
def diff_cmd(args: argparse.Namespace) -> int:
    kinds = {0: "C", 1: "A", 2: "D"}
    s = session(args)
    obj = Containers(s).get(args.container)
    found: Any = s.client.request("GET", s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "changes"))
    for change in found or []:
        print(f"{kinds.get(change.get('Kind'), '?')} {change.get('Path')}")
    return 0


@command()
def export_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.cp import raw_request

    if not args.output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    s = session(args)
    obj = Containers(s).get(args.container)
    url = s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "export")
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # closed below
    try:
        status, _, body = raw_request(s, "GET", url, out=out)
    finally:
        if args.output:
            out.close()
    if status >= 400:
        from k3c.cli.cp import error_message

        raise CLIError(f"Error response from daemon: {error_message(body)}", 1)
    return 0


# ---- import -----------------------------------------------------------------------------------------
def image_config(changes: list[str]) -> dict[str, Any]:
    """The runnable config docker's --change instructions make (on an empty one); 125-free wording of
    docker's refusal for anything else."""
    from k3c.builder.imageconfig import CHANGE_INSTRUCTIONS, ImageState, apply_metadata
    from k3c.builder.instructions import parse

    state = ImageState()
    if not changes:
        return state.config
    try:
        stages, _ = parse("FROM scratch\n" + "\n".join(changes), {})
    except ValueError as err:
        message = str(err)
        keyword = message.removeprefix("unknown instruction: ").split()[0] if "unknown instruction" in message else ""
        raise CLIError(f"Error response from daemon: {keyword.lower() or message} is not a valid change command"
                       if keyword else f"Error response from daemon: {message}", 1) from None
    for ins in stages[0].instructions:
        if ins.keyword not in CHANGE_INSTRUCTIONS:
            raise CLIError(f"Error response from daemon: {ins.keyword.lower()} is not a valid change command", 1)
        apply_metadata(ins, state, {})
    return state.config


def _plain_tar(data: bytes) -> bytes:
    """The tar itself, whatever of gzip, bzip2 or xz it came in (as docker's DecompressStream)."""
    import bz2
    import gzip
    import lzma

    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def one_layer_image(layer_tar: bytes, config: dict[str, Any], comment: str) -> Any:
    """An OCI image of one uncompressed layer, with this runnable config and one history entry."""
    from k3c.oci.layout import (
        MEDIA_CONFIG,
        MEDIA_LAYER,
        MEDIA_MANIFEST,
        Descriptor,
        OCIImage,
        canonical_json,
        host_architecture,
        sha256_digest,
    )
    from k3c.timefmt import now_rfc3339

    digest = sha256_digest(layer_tar)
    created = now_rfc3339()
    doc = {"architecture": host_architecture(), "os": "linux", "created": created, "config": config,
           "rootfs": {"type": "layers", "diff_ids": [digest]}, "history": [{"created": created, "comment": comment}]}
    config_blob = canonical_json(doc)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": Descriptor(MEDIA_CONFIG, sha256_digest(config_blob), len(config_blob)).to_json(),
        "layers": [Descriptor(MEDIA_LAYER, digest, len(layer_tar)).to_json()]})
    blobs = {digest: layer_tar, sha256_digest(config_blob): config_blob, sha256_digest(manifest): manifest}
    target = Descriptor(MEDIA_MANIFEST, sha256_digest(manifest), len(manifest),
                        platform={"architecture": host_architecture(), "os": "linux"})
    return OCIImage(target, blobs)


def _layout_tar(image: Any, name: str | None) -> bytes:
    """The image as an OCI layout tar: named (what `load` tags) or not (then known by its ID only)."""
    import io

    from k3c.oci.layout import (
        MEDIA_INDEX,
        MEDIA_LAYOUT_VERSION,
        File,
        build_layer,
        canonical_json,
        write_oci_archive,
    )

    if name is not None:
        buf = io.BytesIO()
        write_oci_archive(buf, {name: image})
        return buf.getvalue()
    files = {"oci-layout": canonical_json({"imageLayoutVersion": MEDIA_LAYOUT_VERSION}),
             "index.json": canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                                           "manifests": [image.target.to_json()]})}
    files.update({f"blobs/{d.replace(':', '/', 1)}": data for d, data in image.blobs.items()})
    entries: dict[str, Any] = {path: File(data) for path, data in files.items()}
    data: bytes = build_layer(entries).data
    return data


@command()
def import_cmd(args: argparse.Namespace) -> int:
    import io

    from k3c.cli.images import upload_archive, wait_image_objects
    from k3c.oci.layout import host_architecture

    if "://" in args.source:
        raise CLIError("k3c: import from a URL is not supported: give a local file or -", 125)
    if args.platform and args.platform not in (f"linux/{host_architecture()}", "linux"):
        raise CLIError(f"k3c: import --platform {args.platform} is not supported: this node is "
                       f"linux/{host_architecture()}", 125)
    name = None
    if args.reference:
        from k3c.cli.images import parse_ref

        name = str(parse_ref(args.reference))
    config = image_config(args.change)
    if args.source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(args.source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CLIError(f"open {args.source}: no such file or directory", 1) from None
    image = one_layer_image(_plain_tar(data), config, args.message or "Imported from -")
    client = session(args).client
    upload_archive(client, io.BytesIO(_layout_tar(image, name)), None)
    if name is not None:
        wait_image_objects(client, [name])
    print(image.id)
    return 0


# ---- commit -----------------------------------------------------------------------------------------
@command()
def commit_cmd(args: argparse.Namespace) -> int:
    from k3c.cli.images import parse_ref, wait_image_objects

    name = str(parse_ref(args.reference)) if args.reference else ""
    s = session(args)
    obj = Containers(s).get(args.container)
    body = {"reference": name, "changes": args.change, "comment": args.message, "author": args.author,
            "pause": args.pause}
    done = s.client.request("POST", s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "commit"), body)
    if name:
        wait_image_objects(s.client, [name])
    print(done.get("Id", ""))
    return 0
