"""Build OCI images from scratch in memory and write/read them as OCI image layout archives.

k3c makes the few images it needs itself (the sandbox "pause" image, the busybox image tests run) because no
registry may be reachable. Everything here is deterministic: tar entries sorted, owners root, mtimes fixed
(:data:`FIXED_MTIME`), JSON with sorted keys and no whitespace, gzip without a timestamp. So the same
inputs always give the same digests, which keeps image ids stable across rebuilds and lets containerd
skip blobs it already has.

The result, :class:`OCIImage`, is a root descriptor plus every blob it reaches. It can be written as an
OCI layout tar (:func:`write_oci_archive`, importable by ``ctr images import`` and, with the
``io.containerd.image.name`` annotation, under its name) or handed to :mod:`k3c.cri.imagestore` to import
straight through containerd's Content/Images API.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import posixpath
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FIXED_MTIME",
    "Descriptor",
    "Dir",
    "File",
    "HostFile",
    "ImageConfig",
    "Layer",
    "OCIImage",
    "Symlink",
    "build_image",
    "build_layer",
    "busybox_image",
    "read_oci_archive",
    "write_oci_archive",
]

#: mtime of every tar entry k3c writes (the epoch): reproducible digests.
FIXED_MTIME = 0

MEDIA_LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

#: Annotation on an index entry that containerd uses as the image name on import.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
#: Standard OCI annotation for the tag of an index entry (docker/podman read this).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the content address of a blob."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON encoding for manifests, configs and indexes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def host_architecture() -> str:
    """The OCI/GOARCH name of this machine's architecture (``amd64``, ``arm64``, ...)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}.get(
        machine, machine
    )


# ---------------------------------------------------------------------------------------------- layers


@dataclass(frozen=True, slots=True)
class File:
    """A regular file with the given content."""

    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class HostFile:
    """A regular file copied from the host at build time; ``mode`` None keeps the host file's mode."""

    path: str | os.PathLike[str]
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class Symlink:
    """A symbolic link to ``target`` (absolute targets resolve inside the container)."""

    target: str


@dataclass(frozen=True, slots=True)
class Dir:
    """A directory (parents of other entries are created as 0755 directories automatically)."""

    mode: int = 0o755
    uid: int = 0
    gid: int = 0


Entry = File | HostFile | Symlink | Dir | bytes


@dataclass(frozen=True, slots=True)
class Layer:
    """One image layer: the blob as stored (maybe gzip) and the digest of its uncompressed tar."""

    data: bytes
    media_type: str
    digest: str
    diff_id: str


def _clean_path(path: str) -> str:
    norm = posixpath.normpath("/" + path.strip()).lstrip("/")
    if not norm or norm == "." or norm.startswith("../"):
        raise ValueError(f"bad path in layer: {path!r}")
    return norm


def build_layer(entries: Mapping[str, Entry], *, compress: bool = False) -> Layer:
    """Make a layer tar from ``{path: entry}``; ``bytes`` entries are 0644 files.

    Missing parent directories are added (0755). Output depends only on ``entries`` (and, for
    :class:`HostFile`, the host files' content), not on dict order or the clock.
    """
    items: dict[str, Entry] = {}
    for raw, entry in entries.items():
        path = _clean_path(raw)
        items[path] = entry
        parent = posixpath.dirname(path)
        while parent and parent not in items:
            items[parent] = Dir()
            parent = posixpath.dirname(parent)
    # Re-add explicit directories that a deeper path may have pre-created as defaults.
    for raw, entry in entries.items():
        items[_clean_path(raw)] = entry

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(items):
            tar.addfile(*_tar_member(path, items[path]))
    raw_tar = buf.getvalue()
    diff_id = sha256_digest(raw_tar)
    if compress:
        blob = gzip.compress(raw_tar, compresslevel=6, mtime=0)
        return Layer(blob, MEDIA_LAYER_GZIP, sha256_digest(blob), diff_id)
    return Layer(raw_tar, MEDIA_LAYER, diff_id, diff_id)


def _tar_member(path: str, entry: Entry) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(path)
    info.mtime = FIXED_MTIME
    info.uname = info.gname = ""
    if isinstance(entry, bytes):
        entry = File(entry)
    if isinstance(entry, HostFile):
        data = Path(entry.path).read_bytes()
        mode = entry.mode if entry.mode is not None else os.stat(entry.path).st_mode & 0o7777
        entry = File(data, mode)
    if isinstance(entry, File):
        info.type = tarfile.REGTYPE
        info.size = len(entry.data)
        info.mode = entry.mode
        info.uid, info.gid = entry.uid, entry.gid
        return info, io.BytesIO(entry.data)
    if isinstance(entry, Symlink):
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
        return info, None
    if isinstance(entry, Dir):
        info.type = tarfile.DIRTYPE
        info.mode = entry.mode
        info.uid, info.gid = entry.uid, entry.gid
        return info, None
    raise TypeError(f"unsupported layer entry for {path}: {entry!r}")


# ---------------------------------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = dict(self.platform)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Descriptor:
        return cls(d["mediaType"], d["digest"], int(d["size"]), d.get("annotations"), d.get("platform"))


@dataclass(slots=True)
class ImageConfig:
    """The runnable part of an image config (what ``docker inspect`` shows under Config)."""

    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH_ENV])
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)  # e.g. ["80/tcp"]
    stop_signal: str = ""
    healthcheck: dict[str, Any] | None = None  # as docker writes HEALTHCHECK: Test, Interval (ns), Retries...
    architecture: str = field(default_factory=host_architecture)
    os: str = "linux"
    created: str | None = None  # RFC 3339; None leaves it out (keeps digests time-independent)

    def to_json(self, diff_ids: Sequence[str]) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        if self.env:
            cfg["Env"] = list(self.env)
        if self.cmd is not None:
            cfg["Cmd"] = list(self.cmd)
        if self.entrypoint is not None:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.working_dir:
            cfg["WorkingDir"] = self.working_dir
        if self.user:
            cfg["User"] = self.user
        if self.labels:
            cfg["Labels"] = dict(self.labels)
        if self.exposed_ports:
            cfg["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.stop_signal:
            cfg["StopSignal"] = self.stop_signal
        if self.healthcheck:
            cfg["Healthcheck"] = dict(self.healthcheck)
        doc: dict[str, Any] = {
            "architecture": self.architecture,
            "os": self.os,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": "k3c", "comment": f"layer {i}"} for i in range(len(diff_ids))],
        }
        if self.created:
            doc["created"] = self.created
            for h in doc["history"]:
                h["created"] = self.created
        return doc


@dataclass(slots=True)
class OCIImage:
    """A root descriptor (manifest or index) and every blob it references, by digest."""

    target: Descriptor
    blobs: dict[str, bytes]

    @property
    def manifest(self) -> dict[str, Any]:
        """The (first) manifest document; for an index target, its first manifest."""
        doc: dict[str, Any] = json.loads(self.blobs[self.target.digest])
        if self.target.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
            doc = json.loads(self.blobs[doc["manifests"][0]["digest"]])
        return doc

    @property
    def config(self) -> dict[str, Any]:
        """The image config document."""
        config: dict[str, Any] = json.loads(self.blobs[self.manifest["config"]["digest"]])
        return config

    @property
    def id(self) -> str:
        """The image id as CRI/docker report it: the config digest."""
        digest: str = self.manifest["config"]["digest"]
        return digest


def build_image(layers: Sequence[Layer], config: ImageConfig | None = None) -> OCIImage:
    """Assemble config + manifest over ``layers`` (bottom first) into an :class:`OCIImage`."""
    config = config or ImageConfig()
    blobs: dict[str, bytes] = {}
    for layer in layers:
        blobs[layer.digest] = layer.data
    config_blob = canonical_json(config.to_json([layer.diff_id for layer in layers]))
    blobs[sha256_digest(config_blob)] = config_blob
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": Descriptor(MEDIA_CONFIG, sha256_digest(config_blob), len(config_blob)).to_json(),
        "layers": [Descriptor(layer.media_type, layer.digest, len(layer.data)).to_json() for layer in layers],
    }
    manifest_blob = canonical_json(manifest)
    blobs[sha256_digest(manifest_blob)] = manifest_blob
    target = Descriptor(
        MEDIA_MANIFEST,
        sha256_digest(manifest_blob),
        len(manifest_blob),
        platform={"architecture": config.architecture, "os": config.os},
    )
    return OCIImage(target, blobs)


def children(media_type: str, data: bytes) -> list[Descriptor]:
    """Descriptors a manifest or index blob references (empty for configs and layers)."""
    if media_type in (MEDIA_MANIFEST, DOCKER_MANIFEST):
        doc = json.loads(data)
        return [Descriptor.from_json(doc["config"])] + [
            Descriptor.from_json(x) for x in doc.get("layers", [])
        ]
    if media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        return [Descriptor.from_json(x) for x in json.loads(data).get("manifests", [])]
    return []


# ---------------------------------------------------------------------------------------------- archives


def _ref_tag(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    if "@" in last:
        return last.split("@", 1)[1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def write_oci_archive(dest: str | os.PathLike[str] | io.IOBase, images: Mapping[str, OCIImage]) -> None:
    """Write ``{name: image}`` as one OCI image layout tar (``oci-layout``, ``index.json``, ``blobs/``).

    Each index entry carries ``io.containerd.image.name`` (the full name, so ``ctr images import``
    keeps it) and ``org.opencontainers.image.ref.name`` (the tag).
    """
    blobs: dict[str, bytes] = {}
    manifests = []
    for name in sorted(images):
        img = images[name]
        blobs.update(img.blobs)
        ann = dict(img.target.annotations or {})
        ann[ANNOTATION_CONTAINERD_NAME] = name
        ann[ANNOTATION_REF_NAME] = _ref_tag(name)
        manifests.append(
            Descriptor(
                img.target.media_type, img.target.digest, img.target.size, ann, img.target.platform
            ).to_json()
        )
    files: dict[str, bytes] = {
        "oci-layout": canonical_json({"imageLayoutVersion": MEDIA_LAYOUT_VERSION}),
        "index.json": canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}),
    }
    for digest, data in blobs.items():
        algo, hexpart = digest.split(":", 1)
        files[f"blobs/{algo}/{hexpart}"] = data
    entries: dict[str, Entry] = {path: File(data) for path, data in files.items()}
    tar_bytes = build_layer(entries).data
    if isinstance(dest, io.IOBase):
        dest.write(tar_bytes)
    else:
        Path(dest).write_bytes(tar_bytes)


def read_oci_archive(src: str | os.PathLike[str]) -> list[tuple[str | None, OCIImage]]:
    """Read an OCI image layout tar: one ``(name, image)`` per index entry.

    ``name`` comes from ``io.containerd.image.name``, else ``org.opencontainers.image.ref.name``, else
    None. Each image gets the blobs reachable from its entry that the archive holds (a multi-platform
    index may ship only some platforms' blobs).
    """
    with tarfile.open(src, mode="r:*") as tar:
        files: dict[str, bytes] = {}
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                files[posixpath.normpath(member.name).removeprefix("./")] = f.read()
    if "index.json" not in files:
        raise ValueError(f"{src}: not an OCI image layout (no index.json)")
    blobs = {
        path.split("/", 2)[1] + ":" + path.split("/", 2)[2]: data
        for path, data in files.items()
        if path.startswith("blobs/") and path.count("/") == 2
    }
    result: list[tuple[str | None, OCIImage]] = []
    for entry in json.loads(files["index.json"]).get("manifests", []):
        desc = Descriptor.from_json(entry)
        ann = desc.annotations or {}
        name = ann.get(ANNOTATION_CONTAINERD_NAME) or ann.get(ANNOTATION_REF_NAME)
        reach: dict[str, bytes] = {}
        _collect(desc, blobs, reach)
        result.append(
            (name, OCIImage(Descriptor(desc.media_type, desc.digest, desc.size, None, desc.platform), reach))
        )
    return result


def _collect(desc: Descriptor, blobs: Mapping[str, bytes], out: dict[str, bytes]) -> None:
    data = blobs.get(desc.digest)
    if data is None or desc.digest in out:
        return
    if sha256_digest(data) != desc.digest:
        raise ValueError(f"blob {desc.digest} does not match its digest")
    out[desc.digest] = data
    for child in children(desc.media_type, data):
        _collect(child, blobs, out)


# ---------------------------------------------------------------------------------------------- busybox


def busybox_image(
    busybox: str | os.PathLike[str] = "/bin/busybox",
    applets: Iterable[str] | None = None,
    config: ImageConfig | None = None,
) -> OCIImage:
    """A one-layer image of a static busybox: ``/bin/busybox`` plus a symlink per applet.

    ``applets`` None links every applet the binary lists (``busybox --list-full``); otherwise names such
    as ``["sh", "ls", "httpd"]`` are linked under ``/bin``. Includes minimal ``/etc/passwd``/``group``
    (root, nobody), ``/tmp`` (1777), ``/root`` and ``/var/www``.
    """
    entries: dict[str, Entry] = {"bin/busybox": HostFile(busybox, 0o755)}
    if applets is None:
        out = subprocess.run(
            [os.fspath(busybox), "--list-full"], capture_output=True, text=True, check=True
        ).stdout
        paths = [p for p in out.split() if p != "bin/busybox" and "/" in p]
    else:
        paths = [f"bin/{a}" for a in applets]
    for path in paths:
        entries[path] = Symlink("/bin/busybox")
    entries.update(
        {
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
            "etc/hostname": b"busybox\n",
            "tmp": Dir(0o1777),
            "root": Dir(0o700),
            "var/www": Dir(),
        }
    )
    return build_image([build_layer(entries)], config or ImageConfig(cmd=["sh"]))


def main(argv: list[str] | None = None) -> int:
    """`python -m k3c.oci.layout busybox FILE NAME`: write a busybox-static image archive (for set-up
    scripts and demos on machines that reach no registry)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m k3c.oci.layout")
    p.add_argument("kind", choices=["busybox"])
    p.add_argument("dest")
    p.add_argument("name")
    args = p.parse_args(argv)
    write_oci_archive(args.dest, {args.name: busybox_image()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
