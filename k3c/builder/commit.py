"""`docker commit`: a new image from a container's changes, as the `commit` subresource of LocalContainer.

The container's filesystem is a containerd snapshot on top of its image's layers (its CRI container's, or
for a stopped container the layer the operator keeps, :mod:`k3c.cri.writablelayers`): containerd's differ
turns the difference into one more layer blob (the container paused meanwhile, as docker does by
default), the image's config gets docker's `--change` instructions (applied by the Dockerfile engine's
own code), the author and a history entry, and the image is written and named in containerd. The new
layer is unpacked into a committed snapshot at once (`bases.unpack`), so CRI can run the image right
away, and the operator's image controller makes its Image object from containerd's event.

``POST .../localcontainers/NAME/commit`` with ``{"reference": "", "changes": [], "comment": "",
"author": "", "pause": true}``; the answer is ``{"Id": "sha256:…"}`` (docker's). A change docker does
not allow is a 400 in docker's words (``run is not a valid change command``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from k3c.api import LOCAL_CONTAINERS
from k3c.apiserver import errors
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest
from k3c.builder import bases
from k3c.builder.imageconfig import CHANGE_INSTRUCTIONS, ImageState, apply_metadata
from k3c.builder.instructions import Unsupported, parse
from k3c.builder.transfer import tag
from k3c.cri.errors import NotFoundError, RuntimeCallError
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.cri.runtime import CRIClient
from k3c.cri.snapshots import Snapshots, stack_chain_id
from k3c.cri.tasks import TasksClient
from k3c.cri.writablelayers import WritableLayers, key_of
from k3c.dockerid import object_id
from k3c.oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, host_architecture, sha256_digest
from k3c.oci.reference import InvalidReference, normalize
from k3c.timefmt import now_micro

#: How long a commit's lease keeps its blobs and snapshots from containerd's collector.
LEASE_SECONDS = 3600


class ContainerCommits:
    """The `commit` subresource over one containerd; clients made on first use (in the serving loop)."""

    def __init__(self, containerd_address: str, snapshotter: str = "overlayfs") -> None:
        self.address = containerd_address
        self.snapshotter = snapshotter
        self._clients: tuple[CRIClient, TasksClient, ContainerdImages, Snapshots] | None = None

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        return {Route(LOCAL_CONTAINERS.group, LOCAL_CONTAINERS.plural, "commit"): self.commit}

    def _connect(self) -> tuple[CRIClient, TasksClient, ContainerdImages, Snapshots]:
        if self._clients is None:
            store = ContainerdImages(self.address)
            self._clients = (CRIClient(self.address), TasksClient(self.address), store,
                             Snapshots(store, self.snapshotter))
        return self._clients

    async def close(self) -> None:
        if self._clients is not None:
            cri, tasks, store, _ = self._clients
            for client in (cri, tasks, store):
                await client.close()
            self._clients = None

    async def commit(self, req: SubresourceRequest) -> web.StreamResponse:
        if req.http.method != "POST":
            raise errors.method_not_allowed()
        try:
            body = await req.http.json()
        except ValueError:
            raise errors.bad_request("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        obj = await req.parent()
        reference = str(body.get("reference") or "")
        if reference:
            try:
                reference = normalize(reference)
            except InvalidReference as err:
                raise errors.bad_request(str(err)) from None
        changes = [str(c) for c in body.get("changes") or []]
        try:
            image_id = await self._commit(obj, reference, changes, str(body.get("comment") or ""),
                                          str(body.get("author") or ""), bool(body.get("pause", True)))
        except RuntimeCallError as err:
            raise errors.internal(err.details or str(err)) from None
        return web.json_response({"Id": image_id})

    async def _commit(self, obj: dict[str, Any], reference: str, changes: list[str], comment: str,
                      author: str, pause: bool) -> str:
        _, tasks, store, snaps = self._connect()
        source = await self._source(obj)
        lease = await store.create_lease(LEASE_SECONDS)
        try:
            base = await bases.load(store, snaps, await self._image_name(store, obj, source.image), lease)
            state = _state(base, changes)
            cid = source.running
            frozen = pause and bool(cid) and not await tasks.paused(cid)
            if frozen:
                await tasks.pause(cid)
            try:
                layer = await self._diff(snaps, source.key, base, lease)
            finally:
                if frozen:
                    with contextlib.suppress(RuntimeCallError):
                        await tasks.resume(cid)
            state.layers.append(layer)
            entry: dict[str, Any] = {"created": now_micro(), "created_by": source.command, "comment": comment}
            if author:
                entry["author"] = author
            state.history.append(entry)
            await bases.unpack(snaps, state.layers, lease)
            return await _write_image(store, state, author, reference, lease, snaps.snapshotter)
        finally:
            with contextlib.suppress(RuntimeCallError):
                await store.delete_lease(lease)

    async def _source(self, obj: dict[str, Any]) -> _Source:
        """Where the container's files are: its CRI container's snapshot, or, once that is gone (a stopped
        container), the layer the operator keeps for it (:mod:`k3c.cri.writablelayers`; prepared empty on
        the image for one that never ran)."""
        cri, _, _, snaps = self._connect()
        status = obj.get("status") or {}
        cid = str(status.get("containerID") or "").rpartition("://")[2]
        resp = None
        if cid:
            with contextlib.suppress(NotFoundError):
                resp = await cri.container_status(cid, verbose=True)
        if resp is not None:
            info = json.loads(resp.info.get("info") or "{}")
            key = str(info.get("snapshotKey") or "")
            if not key:
                raise errors.internal(f"containerd does not say where container {object_id(obj)} keeps its files")
            config = info.get("config") or {}
            command = " ".join([*(config.get("command") or []), *(config.get("args") or [])])
            return _Source(key, resp.status.image_ref, command, cid if resp.status.state == 1 else "")  # RUNNING
        image = str(status.get("imageID") or (obj.get("spec") or {}).get("image") or "")
        layers, uid = WritableLayers(snaps), obj["metadata"]["uid"]
        if await layers.mounts(uid) is None:
            chain = await cri.image_chain_id(image) if image else None
            if not chain:
                raise errors.APIError(409, "Conflict", f"Container {object_id(obj)} has no filesystem yet")
            await layers.ensure(uid, chain)
        return _Source(key_of(uid), image, str(status.get("command") or ""), "")

    async def _image_name(self, store: ContainerdImages, obj: dict[str, Any], image_id: str) -> str:
        """The containerd name of the container's image: its spec's reference while that still is the image
        the container runs, else its ID (CRI names every image by ID too)."""
        try:
            name = normalize(str((obj.get("spec") or {}).get("image") or ""))
        except InvalidReference:
            return image_id
        record = await store.get(name)
        if record is not None:
            return name
        return image_id

    async def _diff(self, snaps: Snapshots, key: str, base: bases.BaseImage, lease: str) -> Any:
        """The container's changes as a layer blob: containerd's differ over a view of the image and the
        container's own snapshot."""
        view = f"k3c-commit-view-{uuid.uuid4().hex[:12]}"
        lower = await snaps.view(view, stack_chain_id(base.layers), lease) if base.layers else []
        try:
            return await snaps.diff(lower, await snaps.mounts(key), lease)
        finally:
            await snaps.remove(view)


@dataclass(frozen=True)
class _Source:
    """A container's files for a commit: the snapshot, its image, its command line, its CRI ID if it runs."""

    key: str
    image: str
    command: str
    running: str


def _state(base: bases.BaseImage, changes: list[str]) -> ImageState:
    """The base image's config, history and layers, with docker's --change instructions applied."""
    config = base.config
    state = ImageState(config=dict(config.get("config") or {}), layers=list(base.layers),
                       history=list(config.get("history") or []))
    if not changes:
        return state
    try:
        stages, _ = parse("FROM scratch\n" + "\n".join(changes), {})
    except (ValueError, Unsupported) as err:
        message = str(err)
        if message.startswith("unknown instruction: "):
            message = f"{message.removeprefix('unknown instruction: ').split()[0].lower()} is not a valid change command"
        raise errors.bad_request(message) from None
    for ins in stages[0].instructions:
        if ins.keyword not in CHANGE_INSTRUCTIONS:
            raise errors.bad_request(f"{ins.keyword.lower()} is not a valid change command")
        try:
            apply_metadata(ins, state, {})
        except ValueError as err:
            raise errors.bad_request(str(err)) from None
    return state


async def _write_image(store: ContainerdImages, state: ImageState, author: str, reference: str, lease: str,
                       snapshotter: str) -> str:
    """Config and manifest into the content store, the image named (by its ID when no reference)."""
    doc = state.document(host_architecture(), {})
    if author:
        doc["author"] = author
    raw_config = json.dumps(doc, separators=(",", ":")).encode()
    config_digest = sha256_digest(raw_config)
    chain = stack_chain_id(state.layers)
    labels = {f"containerd.io/gc.ref.snapshot.{snapshotter}": chain} if chain else {}
    await store.write(config_digest, raw_config, labels, lease=lease)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(raw_config)},
                "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in state.layers]}
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    desc = Descriptor(MEDIA_MANIFEST, sha256_digest(raw), len(raw))
    await store.write(desc.digest, raw, gc_labels(MEDIA_MANIFEST, raw), lease=lease)
    await tag(store, desc, [reference or config_digest], None, lease)
    return config_digest
