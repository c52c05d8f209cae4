"""Images shared with the node's Kubernetes runtime: copied into its containerd's ``k8s.io`` namespace, at once.

On a Kubernetes node k3c runs its containers in its own containerd, out of the kubelet's sight; but what
it builds, pulls, loads or tags there must be usable by Pods at once (``imagePullPolicy: Never``). So a
named image is copied into the node runtime's containerd, in CRI's namespace, before the command that
made it returns: the content it lacks (children first, the blobs it has are not read nor sent again;
the tree kept from its garbage collector by a lease until the name holds it, and by the same
``gc.ref`` labels k3c writes), then the name. Removing a name removes it there too (``k3c rmi``).

:class:`SharedImages` is k3c's image store with that promise: ``put`` and ``delete`` act on both sides,
and :func:`share` copies a name that appeared in k3c's containerd by another route (a CRI pull, a build's
own store). A partial index (a pull fetches one platform) is copied as it is: its absent platforms stay
absent on both sides.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping

import grpc

from k3c.oci.layout import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    Descriptor,
    children,
)

from .channel import CRI_NAMESPACE
from .content import write_stream
from .errors import RuntimeCallError
from .imagestore import ContainerdImages, gc_labels
from .proto import containerd_images_pb2 as images_pb

log = logging.getLogger(__name__)

#: The media types whose blobs reference others (read whole; layers and configs are streamed).
_TREES = frozenset({MEDIA_MANIFEST, DOCKER_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST_LIST})


async def copy_image(src: ContainerdImages, dst: ContainerdImages, name: str) -> bool:
    """Make ``dst``'s ``name`` what ``src``'s is; False if ``src`` has no such name."""
    record = await src.get(name)
    if record is None:
        return False
    target = Descriptor(record.target.media_type, record.target.digest, record.target.size)
    there = await dst.get(name)
    if there is not None and there.target.digest == target.digest:
        return True
    lease = await dst.create_lease()
    try:
        await _copy_tree(src, dst, target, lease, set())
        await dst.put(name, target, dict(record.labels), lease=lease)
    finally:
        await dst.delete_lease(lease)
    return True


async def _copy_tree(src: ContainerdImages, dst: ContainerdImages, desc: Descriptor, lease: str,
                     done: set[str]) -> None:
    """Copy ``desc`` and what it references, children first, skipping what ``dst`` has (with its subtree)."""
    if desc.digest in done:
        return
    done.add(desc.digest)
    if await dst.info(desc.digest) is not None or await src.info(desc.digest) is None:
        return  # there already, or absent here too (a platform a partial index never fetched)
    kids = []
    data = b""
    if desc.media_type in _TREES:
        data = await src.read(desc.digest)
        kids = children(desc.media_type, data)
    for child in kids:
        await _copy_tree(src, dst, child, lease, done)
    if data:
        await dst.write(desc.digest, data, gc_labels(desc.media_type, data), lease=lease)
    else:
        await write_stream(dst, src.read_chunks(desc.digest), expected=desc.digest, total=desc.size, lease=lease)


class SharedImages(ContainerdImages):
    """k3c's image store whose names are the node runtime's too (see the module docstring)."""

    def __init__(self, address: str | os.PathLike[str], runtime: ContainerdImages, namespace: str = CRI_NAMESPACE,
                 *, timeout: float = 30.0, channel: grpc.aio.Channel | None = None) -> None:
        super().__init__(address, namespace, timeout=timeout, channel=channel)
        self.runtime = runtime

    async def close(self) -> None:
        await self.runtime.close()
        await super().close()

    async def put(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None, *,
                  lease: str | None = None) -> images_pb.Image:
        image = await super().put(name, target, labels, lease=lease)
        await copy_image(self, self.runtime, name)
        return image

    async def delete(self, name: str, sync: bool = False) -> bool:
        gone = await super().delete(name, sync)
        with contextlib.suppress(RuntimeCallError):  # the runtime's copy goes as well, if it has one
            await self.runtime.delete(name, sync)
        return gone

    async def share(self, name: str) -> None:
        """Copy ``name`` to the runtime (a CRI pull or a build named it in k3c's containerd directly)."""
        if await copy_image(self, self.runtime, name):
            log.debug("image %s shared with the node runtime at %s", name, self.runtime.address)


async def share(store: ContainerdImages, names: Iterable[str]) -> None:
    """Share ``names`` with the node runtime, when ``store`` is a :class:`SharedImages` (else nothing)."""
    if isinstance(store, SharedImages):
        for name in names:
            await store.share(name)
