"""Images for containers: present or pulled, their config, and user/group names resolved in their files.

CRI's PullImage always contacts the registry, so :meth:`ImageResolver.ensure` asks ImageStatus first and
pulls only a missing image. The image config (entrypoint, cmd) is read once per image id for the status's
command line. ``user:group`` names are resolved against the image's own ``/etc/passwd`` and ``/etc/group``
(read from its layers through containerd's content store), so a typo is a clear message instead of a
runtime error from deep inside containerd, and group names work (CRI has no field for them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from k3c.cri.errors import RuntimeCallError
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import CRIClient
from k3c.oci.layout import DOCKER_MANIFEST_LIST, MEDIA_INDEX, host_architecture
from k3c.reconcilers.criconfig import UserSpec, split_user

log = logging.getLogger(__name__)

#: The most an image's /etc/passwd or /etc/group may hold (docker's own lookups read far less).
MAX_ACCOUNT_FILE = 1 << 20


class ImageError(Exception):
    """The image is missing and cannot be pulled, or a user/group is not in it: a permanent failure."""


@dataclass(slots=True)
class ImageInfo:
    id: str
    ref: str
    config: dict[str, Any] = field(default_factory=dict)


class ImageResolver:
    def __init__(self, cri: CRIClient, store: ContainerdImages) -> None:
        self.cri = cri
        self.store = store
        self._configs: dict[str, dict[str, Any]] = {}
        self._files: dict[tuple[str, str], str | None] = {}

    async def ensure(self, ref: str, on_pull: Callable[[], Awaitable[None]], policy: str = "missing") -> ImageInfo:
        """The local image for ``ref``, pulled first if missing (``on_pull`` runs before pulling); ``policy``
        is docker's ``--pull``: ``always`` pulls even a local image, ``never`` refuses a missing one."""
        image = None if policy == "always" else await self.cri.image_status(ref)
        if image is None and policy == "never":
            raise ImageError(f"No such image: {ref} (pull policy never)")
        if image is None:
            await on_pull()
            try:
                await self.cri.pull_image(ref)
            except RuntimeCallError as err:
                raise ImageError(f"image {ref!r} is not on this node and pulling it failed: "
                                 f"{_short(err.details)}") from None
            image = await self.cri.image_status(ref)
            if image is None:
                raise ImageError(f"image {ref!r} was pulled but CRI does not report it")
        config = self._configs.get(image.id)
        if config is None:
            config = await self._config(image.repo_tags[0] if image.repo_tags else ref)
            self._configs[image.id] = config
        return ImageInfo(image.id, image.repo_tags[0] if image.repo_tags else ref, config)

    async def _config(self, ref: str) -> dict[str, Any]:
        """The image config's ``config`` section (Entrypoint, Cmd, User...), read from the content store."""
        try:
            record = await self.store.get(ref)
            if record is None:
                return {}
            manifest = await self._manifest(record.target.digest, record.target.media_type)
            return json.loads(await self.store.read(manifest["config"]["digest"])).get("config") or {}
        except (RuntimeCallError, KeyError, ValueError) as err:
            log.warning("cannot read the config of image %s: %s", ref, err)
            return {}

    async def resolve_user(self, image: ImageInfo, value: str) -> UserSpec:
        """``user[:group]`` → numeric ids, looking names up in the image's /etc/passwd and /etc/group."""
        user, group = split_user(value)
        spec = UserSpec()
        if not user:
            return spec
        if user.isdigit():
            spec.uid = int(user)
        else:
            entry = await self._lookup(image, "etc/passwd", user)
            if entry is None:
                raise ImageError(f"user {user!r} not found in the image's /etc/passwd")
            spec.uid, gid = int(entry[2]), int(entry[3])
            if not group:
                spec.gid = gid
        if group:
            if group.isdigit():
                spec.gid = int(group)
            else:
                entry = await self._lookup(image, "etc/group", group)
                if entry is None:
                    raise ImageError(f"group {group!r} not found in the image's /etc/group")
                spec.gid = int(entry[2])
        return spec

    async def resolve_groups(self, image: ImageInfo, groups: list[str]) -> list[int]:
        """``groupAdd`` → group IDs: numbers as they are, names from the image's /etc/group (docker --group-add)."""
        out = []
        for group in groups:
            if str(group).isdigit():
                out.append(int(group))
                continue
            entry = await self._lookup(image, "etc/group", str(group))
            if entry is None:
                raise ImageError(f"Unable to find group {group}: no matching entries in group file")
            out.append(int(entry[2]))
        return out

    async def _lookup(self, image: ImageInfo, path: str, name: str) -> list[str] | None:
        key = (image.id, path)
        if key not in self._files:
            self._files[key] = await self._read_file(image.ref, path)
        text = self._files[key] or ""
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == name and (path != "etc/passwd" or len(fields) >= 4):
                return fields
        return None

    async def _read_file(self, ref: str, path: str) -> str | None:
        """A file from the image's layers, topmost layer first (None if absent)."""
        record = await self.store.get(ref)
        if record is None:
            return None
        manifest = await self._manifest(record.target.digest, record.target.media_type)
        for layer in reversed(manifest.get("layers", [])):
            with tempfile.TemporaryFile() as spool:  # a layer can be large: on disk, never in memory
                async for chunk in self.store.read_chunks(layer["digest"]):
                    await asyncio.to_thread(spool.write, chunk)
                spool.seek(0)
                found = await asyncio.to_thread(_file_in_layer, spool, path)
            if found is not None:
                return found or None
        return None

    async def _manifest(self, digest: str, media_type: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(await self.store.read(digest))
        if media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in doc:
            arch = host_architecture()
            chosen = next((m for m in doc["manifests"] if m.get("platform", {}).get("architecture") == arch),
                          doc["manifests"][0])
            manifest: dict[str, Any] = json.loads(await self.store.read(chosen["digest"]))
            return manifest
        return doc


def _file_in_layer(layer: BinaryIO, path: str) -> str | None:
    """Content of ``path`` in a (possibly gzipped) layer tar; '' if whited out; None if not in it.

    The layer is untrusted: it is read as a stream (decompressed as it goes, so a gzip bomb costs time, not
    memory), and the file only if it is a regular file of at most :data:`MAX_ACCOUNT_FILE` bytes.
    """
    parent, _, base = path.rpartition("/")
    whiteout = f"{parent}/.wh.{base}" if parent else f".wh.{base}"
    with tarfile.open(fileobj=layer, mode="r|*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if name == whiteout:
                return ""
            if name == path:
                if not member.isfile():
                    return None if member.issym() or member.islnk() else ""
                if member.size > MAX_ACCOUNT_FILE:
                    raise ImageError(f"the image's /{path} is larger than {MAX_ACCOUNT_FILE} bytes")
                f = tar.extractfile(member)
                return f.read().decode(errors="replace") if f else ""
    return None


def _short(details: str) -> str:
    """containerd's pull errors nest every cause; the last two links say what went wrong."""
    parts = [p.strip() for p in details.split(": ") if p.strip()]
    return ": ".join(parts[-2:]) if len(parts) > 2 else details.strip()
