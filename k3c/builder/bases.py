"""Base images for the native engine: which images a build starts from, read from containerd and unpacked.

A base must already be in containerd's ``k8s.io`` namespace (an image k3c built, loaded or pulled): the
native engine never contacts a registry, so a missing base (or ``--pull``) is :class:`Unsupported` and the
build goes to the fallback engine, which can pull. Unpacking does what CRI's unpack would: one committed
snapshot per layer, named by its chain ID, and the ``gc.ref.snapshot`` label on the image config so the
image itself keeps its snapshots alive.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from k3c.builder.dockerfile import substitute
from k3c.builder.engine import BuildFailed, finish_anyway
from k3c.builder.imageconfig import check_onbuild
from k3c.builder.instructions import Stage, Unsupported, find_stage
from k3c.builder.transfer import platform_manifest
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.proto import containerd_types_pb2 as types_pb
from k3c.cri.snapshots import LayerBlob, Snapshots, chain_id
from k3c.oci.layout import Descriptor
from k3c.oci.reference import InvalidReference, normalize

__all__ = ["BaseImage", "load", "resolve"]


@dataclass
class BaseImage:
    """A base image as containerd holds it."""

    name: str
    manifest_digest: str
    config: dict[str, Any]
    layers: list[LayerBlob]


async def resolve(store: ContainerdImages, stages: list[Stage], chosen: list[Stage], global_args: dict[str, str],
                  pull: bool) -> dict[str, str]:
    """Every image the chosen stages start from or copy from -> its manifest digest in containerd."""
    if pull:
        raise Unsupported("--pull (a registry pull)")
    refs: list[str] = []
    for stage in chosen:
        if find_stage(stages, stage.base, stage.index) is None and stage.base.lower() != "scratch":
            refs.append(substitute(stage.base, global_args))
        for ins in stage.instructions:
            froms = [ins.flag("from") if ins.flags.get("from") else ""]
            for mount in ins.flags.get("mount", []) if ins.keyword == "RUN" else []:
                froms.append(dict(kv.partition("=")[::2] for kv in mount.split(",")).get("from", ""))
            for ref in froms:
                if ref and find_stage(stages, ref, stage.index) is None:
                    refs.append(substitute(ref, global_args))
    out: dict[str, str] = {}
    for ref in refs:
        try:
            name = normalize(ref)
        except InvalidReference as err:
            raise ValueError(f"invalid base image {ref!r}: {err}") from None
        if name not in out:
            record = await store.get(name)
            if record is None:
                raise Unsupported(f"a base image containerd does not have ({name})")
            out[name] = record.target.digest
    return out


async def load(store: ContainerdImages, snaps: Snapshots, name: str, lease: str) -> BaseImage:
    """The image ``name`` (this platform's manifest), unpacked into snapshots if it was not yet."""
    record = await store.get(name)
    if record is None:
        raise Unsupported(f"a base image containerd does not have ({name})")
    root = Descriptor(record.target.media_type, record.target.digest, record.target.size)
    manifest, raw = await platform_manifest(store, root)
    doc = json.loads(raw)
    config = json.loads(await store.read(doc["config"]["digest"]))
    check_onbuild(config.get("config") or {})
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(doc.get("layers") or []):
        raise BuildFailed(f"base image {name}: its config and manifest disagree on the layers")
    layers = [LayerBlob(d["mediaType"], d["digest"], int(d["size"]), diff_id)
              for d, diff_id in zip(doc["layers"], diff_ids, strict=True)]
    chain = await unpack(snaps, layers, lease)
    if chain:
        label = f"containerd.io/gc.ref.snapshot.{snaps.snapshotter}"
        info = await store.info(doc["config"]["digest"])
        if info is not None and info.labels.get(label) != chain:
            await store.set_label(doc["config"]["digest"], label, chain)
    return BaseImage(name, manifest.digest, config, layers)


#: Keys of snapshots being unpacked (removed after a crash with the build's own, by prefix).
UNPACK_PREFIX = "k3c-build-unpack-"


async def unpack(snaps: Snapshots, layers: list[LayerBlob], lease: str) -> str:
    """Make sure every prefix of ``layers`` is a committed snapshot; returns the top one's chain ID."""
    chains: list[str] = []
    for layer in layers:
        chains.append(chain_id(chains[-1] if chains else "", layer.diff_id))
    start = len(chains)
    while start > 0 and not await snaps.exists(chains[start - 1]):
        start -= 1
    for i in range(start, len(layers)):
        key = f"{UNPACK_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            mounts = await snaps.prepare(key, chains[i - 1] if i else "", lease)
            layer = layers[i]
            await snaps.apply(types_pb.Descriptor(media_type=layer.media_type, digest=layer.digest,
                                                  size=layer.size), mounts, lease)
            await snaps.commit(chains[i], key, lease)
        except BaseException:
            await finish_anyway(snaps.remove_patiently(key))
            raise
    return chains[-1] if chains else ""
