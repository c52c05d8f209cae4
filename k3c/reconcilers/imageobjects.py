"""Image objects ↔ containerd's image store (namespace ``k8s.io``), kept in sync both ways, level-based.

Two sources schedule a reconcile of one object name (:class:`~k3c.reconcilers.workqueue.WorkQueue`
keeps reconciles of a name sequential): watch events of Image objects, and containerd's
``/images/create|update|delete`` events (a name appearing by any route — CRI pull, build, load, ``ctr
import`` — or vanishing). Each reconcile compares the two sides and acts:

- a reference in containerd without an object → create the object (named by
  :func:`~k3c.oci.reference.object_name`) with its status filled in, within a second of the event;
  a ``repo@digest`` name is shown only when no tag of the same repository points at the same image
  (CRI adds one per pull), ``sha256:<id>`` names (CRI's ID references) never;
- an object whose image is missing, or whose ``spec.pullRequest`` is new → pull through CRI (ImageStatus
  first), with per-layer progress in ``status.pull`` from containerd's active ingests; an object whose
  image was present (phase Ready) and has vanished from containerd → delete the object;
- an object being deleted → the DELETE was already refused up front while a LocalContainer (or, for the
  pause image, a sandbox) uses the image (:meth:`ImageObjects.deletion_conflict`, asked by the operator's
  admission webhook, unless the ``k3c.io/force-delete`` annotation is set); a user that came after waits
  the deletion out (status.message says why); else remove
  the reference — and, when it was the image's last name, CRI's digest and ID references with it, so the
  image is really gone as with ``docker rmi`` — then drop the finalizer.

A pull runs as a task of its own so deleting the object can cancel it: cancelling the CRI call makes
containerd abandon the pull before it names anything, and the pull's ingests are aborted too.

Nodes. An object belongs to the node its ``spec.nodeName`` or ``status.node`` names; one naming neither is
claimed by the first operator whose status write (with its resourceVersion) wins, as LocalContainers are,
and the others leave it alone — deletion included. Embedded mode has one node and names objects by
reference alone. In cluster mode (``per_node``) every node's store is shown apart: one object per (node,
image), named :func:`~k3c.oci.reference.object_name` ``(ref, node)``, with ``spec.nodeName`` and the
:data:`~k3c.api.NODE_LABEL` label, rather than one object with a status per node. So each object has
exactly one writer (no status fights, no resourceVersion conflicts between agents), its finalizer is
that node's alone (``k3c rmi`` removes the reference from each node that holds it, each agent its own), and
``kubectl get images -l k3c.io/node=N`` is one node's ``docker images``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from k3c import dockerid
from k3c.api import (
    FORCE_DELETE_ANNOTATION,
    IMAGE_FINALIZER,
    IMAGES,
    LOCAL_CONTAINERS,
    NODE_LABEL,
    ORIGIN_ANNOTATION,
)
from k3c.apierrors import AlreadyExists, Conflict, NotFound
from k3c.cri.content import Ingest, abort_ingest, list_statuses
from k3c.cri.errors import RuntimeCallError
from k3c.cri.imageshare import share
from k3c.cri.imagestore import ContainerdImages
from k3c.cri.runtime import CRIClient, pb
from k3c.distribution.errors import RegistryError
from k3c.oci.layout import DOCKER_MANIFEST_LIST, MEDIA_INDEX, Descriptor, host_architecture
from k3c.oci.reference import InvalidReference, Reference, object_name, parse
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.registryaccess import RegistryAccess, SecretRef
from k3c.reconcilers.statuses import Condition, HistoryEntry, ImagePull, ImageStatus, Layer, LayerProgress
from k3c.timefmt import now_rfc3339
from k3c.units import human_size

log = logging.getLogger(__name__)

#: The value of :data:`~k3c.api.ORIGIN_ANNOTATION` on objects made for an image found in containerd: if the
#: image goes, the object goes (never a pull).
ORIGIN_CONTAINERD = "containerd"
#: Seconds between progress writes while a pull runs.
PROGRESS_INTERVAL = 0.25
#: Retry delays after a pull failed for a reason that may pass (registry down): like kubelet's back-off.
RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0)
#: Seconds between in-use checks of an object whose deletion waits for a container.
IN_USE_RECHECK = 5.0




def _parse(text: str) -> Reference | None:
    try:
        return parse(text)
    except InvalidReference:
        return None


def visible_names(records: dict[str, str]) -> set[str]:
    """Which containerd image names get objects (``records``: name → target digest)."""
    tagged = {(r.repository, digest) for name, digest in records.items()
              if (r := _parse(name)) is not None and r.tag}
    out = set()
    for name, digest in records.items():
        r = _parse(name) if not name.startswith("sha256:") else None
        if r is None or (r.digest and (r.repository, digest) in tagged):
            continue
        out.add(name)
    return out


# ------------------------------------------------------------------------------------------ describing


@dataclass(slots=True)
class _Described:
    manifest_digest: str
    config_digest: str
    size: int
    created: str
    platform: str
    config: dict[str, Any]
    layers: list[Layer]
    diff_ids: list[str]
    history: list[HistoryEntry]


async def _describe_target(store: ContainerdImages, target: Descriptor) -> _Described:
    data = await store.read(target.digest)
    size = target.size
    manifest_desc = target
    if target.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
        entries = [Descriptor.from_json(m) for m in json.loads(data).get("manifests", [])]
        arch = host_architecture()
        present = [d for d in entries if await store.info(d.digest) is not None]
        manifest_desc = next((d for d in present if (d.platform or {}).get("architecture") == arch),
                             present[0] if present else entries[0])
        data = await store.read(manifest_desc.digest)
        size += manifest_desc.size
    manifest = json.loads(data)
    config_desc = manifest["config"]
    config = json.loads(await store.read(config_desc["digest"]))
    layers: list[Layer] = [{"digest": d["digest"], "size": int(d["size"])} for d in manifest.get("layers", [])]
    size += int(config_desc["size"]) + sum(layer["size"] for layer in layers)
    return _Described(manifest_desc.digest, config_desc["digest"], size, config.get("created", ""),
                      f"{config.get('os', '')}/{config.get('architecture', '')}", config.get("config") or {}, layers,
                      list((config.get("rootfs") or {}).get("diff_ids") or []), _history(config))


def _history(config: dict[str, Any]) -> list[HistoryEntry]:
    """The config's history (oldest first), for `k3c history`; keys as the image config spells them."""
    keys = ("created", "created_by", "author", "comment", "empty_layer")
    return [cast(HistoryEntry, {k: h[k] for k in keys if k in h}) for h in config.get("history") or []
            if isinstance(h, dict)]


def _status_of(ref: Reference, target: Descriptor, d: _Described, node: str, repo_digests: list[str]) -> ImageStatus:
    return {
        "phase": "Ready", "message": "", "node": node,
        "repository": ref.familiar_repository, "tag": ref.tag or "<none>",
        "id": d.config_digest, "shortID": d.config_digest.removeprefix("sha256:")[:12],
        "digest": target.digest, "repoDigests": repo_digests, "mediaType": target.media_type,
        "size": d.size, "sizeText": human_size(d.size), "created": d.created, "platform": d.platform,
        "config": d.config, "layers": d.layers, "diffIDs": d.diff_ids, "history": d.history,
    }


def _condition(ready: bool, reason: str, message: str = "") -> list[Condition]:
    return [{"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message,
             "lastTransitionTime": now_rfc3339()}]


# ------------------------------------------------------------------------------------------ pull progress


@dataclass(slots=True)
class _Progress:
    """Per-layer progress of one pull, from containerd's active ingests."""

    layers: list[Descriptor]
    existed: set[str] = field(default_factory=set)

    async def start(self, store: ContainerdImages) -> None:
        for d in self.layers:
            if await store.info(d.digest) is not None:
                self.existed.add(d.digest)

    async def snapshot(self, store: ContainerdImages) -> list[LayerProgress]:
        ingests = _by_digest(await list_statuses(store))
        out = []
        for d in self.layers:
            entry: LayerProgress = {"digest": d.digest, "size": d.size, "current": 0, "state": "Waiting"}
            if d.digest in self.existed:
                entry.update({"current": d.size, "state": "Already exists"})
            elif d.digest in ingests:
                entry.update({"current": ingests[d.digest].offset, "state": "Downloading"})
            elif await store.info(d.digest) is not None:
                entry.update({"current": d.size, "state": "Download complete"})
            out.append(entry)
        return out

    async def abort(self, store: ContainerdImages) -> None:
        """Abort the ingests this pull left (containerd keeps them to resume; k3c leaves nothing behind)."""
        wanted = {d.digest for d in self.layers}
        with contextlib.suppress(RuntimeCallError):
            for digest, ingest in _by_digest(await list_statuses(store)).items():
                if digest in wanted:
                    await abort_ingest(store, ingest.ref)


def _by_digest(ingests: list[Ingest]) -> dict[str, Ingest]:
    """Active ingests by the digest they write. containerd's local store does not report ``expected`` in
    ListStatuses, but its pullers name ingests ``layer-sha256:<hex>`` (``remotes.MakeRefKey``)."""
    out = {}
    for i in ingests:
        digest = i.expected or ("sha256:" + i.ref.rsplit("sha256:", 1)[1] if "sha256:" in i.ref else "")
        if digest:
            out[digest] = i
    return out


# ------------------------------------------------------------------------------------------ reconciler


@dataclass(slots=True)
class _Failure:
    """The last failed pull of an object: retried after a back-off unless the failure is permanent."""

    request: str
    attempts: int
    permanent: bool
    retry_at: float


@dataclass
class ImageEnv:
    kube: Kube
    cri: CRIClient
    store: ContainerdImages
    access: RegistryAccess
    node: str
    schedule: Callable[[str, float], None]
    protected: frozenset[str] = frozenset()  # references never removed unless forced (the sandbox image)
    per_node: bool = False  # cluster mode: one object per (node, image), see the module's docstring


class ImageObjects:
    """The Image reconciler. ``objects`` is the watch cache by object name; ``records`` mirrors containerd."""

    def __init__(self, env: ImageEnv) -> None:
        self.env = env
        self.objects: dict[str, dict[str, Any]] = {}
        self.records: dict[str, str] = {}  # containerd image name -> target digest
        self._names: dict[str, str] = {}  # object name -> containerd name (visible ones)
        self._by_ref: dict[str, str] = {}  # spec.reference (normalized) -> object name
        self._seq: dict[str, int] = {}  # containerd name -> removals made here (orders stale lookups out)
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, _Failure] = {}
        self._described: dict[str, _Described] = {}

    # ---- inputs -----------------------------------------------------------------------------

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> str | None:
        """A watch event; returns the name to reconcile (None if the event is stale)."""
        name: str = obj["metadata"]["name"]
        ref = _parse((obj.get("spec") or {}).get("reference", ""))
        if event_type == "DELETED":
            self.objects.pop(name, None)
            if ref is not None and self._by_ref.get(str(ref)) == name:
                del self._by_ref[str(ref)]
            return name
        old = self.objects.get(name)
        if old is not None and _rv(obj) < _rv(old) and old["metadata"].get("uid") == obj["metadata"].get("uid"):
            return None
        self.objects[name] = obj
        if ref is not None:
            if self._owner(obj) in ("", self.env.node):
                self._by_ref.setdefault(str(ref), name)
            elif self._by_ref.get(str(ref)) == name:  # claimed by another node meanwhile
                del self._by_ref[str(ref)]
        return name

    @staticmethod
    def _owner(obj: dict[str, Any]) -> str:
        """The node whose store the object shows ("" while no node has claimed it)."""
        return (obj.get("spec") or {}).get("nodeName") or (obj.get("status") or {}).get("node") or ""

    async def record_changed(self, cname: str) -> list[str]:
        """containerd created, updated or deleted image ``cname``: refresh it; returns names to reconcile.

        If this reconciler removed the name while the lookup was under way, the (older) answer is dropped:
        containerd's delete event follows anyway.
        """
        seq = self._seq.get(cname, 0)
        record = await self.env.store.get(cname)
        if self._seq.get(cname, 0) != seq:
            return []
        before = visible_names(self.records)
        if record is None:
            self.records.pop(cname, None)
        else:
            self.records[cname] = record.target.digest
        after = self._reindex()
        return sorted({self._name_for(c) for c in (before ^ after) | {cname} if not c.startswith("sha256:")}
                      - {""})

    async def relist(self) -> list[str]:
        """Read every containerd image (start-up, containerd restarted); returns every name to reconcile."""
        self.records = {r.name: r.target.digest for r in await self.env.store.list_images()}
        self._reindex()
        return sorted(set(self._names) | set(self.objects))

    def _reindex(self) -> set[str]:
        after = visible_names(self.records)
        self._names = {self._name_for(c): c for c in after}
        return after

    def _name_for(self, cname: str) -> str:
        """The object name of a containerd name: an existing object with that reference (users may name
        objects freely), else the derived name."""
        ref = _parse(cname)
        if ref is None:
            return ""
        return self._by_ref.get(str(ref)) or object_name(ref, self.env.node if self.env.per_node else "")

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, name: str) -> float | None:
        obj = self.objects.get(name)
        if obj is None:
            cname = self._names.get(name)
            return await self._create_object(name, cname) if cname else None
        st, spec = obj.get("status") or {}, obj.get("spec") or {}
        node = self.env.node
        if (st.get("node") or node) != node or (spec.get("nodeName") or node) != node:
            return None  # another node's store (an empty spec.nodeName means "whoever sees it first")
        if obj["metadata"].get("deletionTimestamp"):
            return await self._finalize(obj)
        if not st.get("node") and spec.get("nodeName") != node:
            claimed = await self._claim(obj)
            if claimed is None:
                return None  # another node won: its write comes back as a watch event
            obj = claimed
        ref = _parse(spec.get("reference", ""))
        if ref is None:
            await self._fail(obj, "invalid reference format")
            return None
        if IMAGE_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            obj = await self._add_finalizer(obj)
        return await self._converge(obj, ref)

    async def _converge(self, obj: dict[str, Any], ref: Reference) -> float | None:
        name = obj["metadata"]["name"]
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        request = spec.get("pullRequest") or ""
        pull_st = st.get("pull") or {}
        if name in self._pulls:
            return None
        record = await self.env.store.get(str(ref))
        # A pull still marked as running while no task runs it was cut short (operator restart): redo it.
        interrupted = pull_st.get("state") in ("Resolving", "Pulling")
        new_request = request != (pull_st.get("request") or "") or interrupted
        if record is not None and not new_request:
            await self._write_present(obj, ref, record.target)
            return None
        mirrored = (obj["metadata"].get("annotations") or {}).get(ORIGIN_ANNOTATION) == ORIGIN_CONTAINERD
        if record is None and (st.get("phase") == "Ready" or (mirrored and not request)) and not new_request:
            log.info("image %s vanished from containerd; deleting its object", ref)
            await self.env.kube.delete(Ref(IMAGES, "", name), obj["metadata"].get("uid"))
            return None
        failure = self._failures.get(name)
        if not new_request and pull_st.get("state") == "Failed" and failure is not None \
                and failure.request == request:
            if failure.permanent:
                return None
            wait = failure.retry_at - time.monotonic()
            if wait > 0:
                return wait
        self._start_pull(obj, ref, request, forced=new_request)
        return None

    async def _write_present(self, obj: dict[str, Any], ref: Reference, target: Any,
                             extra: ImageStatus | None = None) -> None:
        await share(self.env.store, [str(ref)])  # usable by the node's Pods before it is said to be here
        desc = Descriptor(target.media_type, target.digest, target.size)
        d = self._described.get(desc.digest)
        if d is None:
            d = await _describe_target(self.env.store, desc)
            self._described[desc.digest] = d
        digests = sorted(n for n, t in self.records.items()
                         if t == desc.digest and "@" in n and n.startswith(ref.repository + "@"))
        status = _status_of(ref, desc, d, self.env.node, [_parse(n).familiar() for n in digests])  # type: ignore[union-attr]
        status.update(extra or ImageStatus())
        st = obj.get("status") or {}
        if all(st.get(k) == v for k, v in status.items()) and (st.get("conditions") or [{}])[0].get("status") == "True":
            return
        status["conditions"] = _condition(True, "Present")
        await self._patch_status(obj, status)

    async def _patch_status(self, obj: dict[str, Any], status: ImageStatus) -> None:
        new = await self.env.kube.patch_status_if_present(Ref(IMAGES, "", obj["metadata"]["name"]), status)
        if new is not None:
            self.observe("MODIFIED", new)

    async def _claim(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Make an object no node has acted on this node's (status.node), by a write only one operator can
        win; None if another node was first."""
        meta = obj["metadata"]
        try:
            new = await self.env.kube.patch_status(Ref(IMAGES, "", meta["name"]), {"node": self.env.node},
                                                   resource_version=meta["resourceVersion"])
        except (Conflict, NotFound):
            return None
        self.observe("MODIFIED", new)
        return new

    async def _fail(self, obj: dict[str, Any], message: str) -> None:
        await self._patch_status(obj, {"phase": "Failed", "message": message,
                                       "conditions": _condition(False, "Failed", message)})

    async def _add_finalizer(self, obj: dict[str, Any]) -> dict[str, Any]:
        fins = [*(obj["metadata"].get("finalizers") or []), IMAGE_FINALIZER]
        new = await self.env.kube.merge_patch(
            Ref(IMAGES, "", obj["metadata"]["name"]),
            {"metadata": {"finalizers": fins, "resourceVersion": obj["metadata"]["resourceVersion"]}})
        self.observe("MODIFIED", new)
        return new

    # ---- objects for containerd names --------------------------------------------------------

    async def _create_object(self, name: str, cname: str) -> float | None:
        ref = parse(cname)
        if await self.env.store.get(cname) is None:
            return None  # gone again already (removed while its create event was on its way)
        body: dict[str, Any] = {"apiVersion": IMAGES.api_version, "kind": IMAGES.kind,
                                "metadata": {"name": name, "finalizers": [IMAGE_FINALIZER],
                                             "annotations": {ORIGIN_ANNOTATION: ORIGIN_CONTAINERD}},
                                "spec": {"reference": str(ref)}}
        if self.env.per_node:
            body["spec"]["nodeName"] = self.env.node
            body["metadata"]["labels"] = node_labels(self.env.node)
        try:
            obj = await self.env.kube.create(IMAGES, "", body)
        except AlreadyExists:
            return 0.5  # exists (our cache lags behind, or it is still terminating): look again
        self.observe("ADDED", obj)
        record = await self.env.store.get(cname)
        if record is not None:
            await self._write_present(obj, ref, record.target)
        return None

    # ---- deletion ----------------------------------------------------------------------------

    async def _finalize(self, obj: dict[str, Any]) -> float | None:
        meta = obj["metadata"]
        if IMAGE_FINALIZER not in (meta.get("finalizers") or []):
            return None
        name = meta["name"]
        await self._cancel_pull(name)
        ref = _parse((obj.get("spec") or {}).get("reference", ""))
        st = obj.get("status") or {}
        if ref is not None and self._held_here(ref, obj):
            conflict = await self.deletion_conflict(obj)
            if conflict:  # a user came after the DELETE was admitted: wait for it to go
                if st.get("message") != conflict:
                    await self._patch_status(obj, {"message": conflict})
                return IN_USE_RECHECK
            await self._remove_reference(ref, st.get("id", ""))
        fins = [f for f in meta.get("finalizers") or [] if f != IMAGE_FINALIZER]
        try:
            await self.env.kube.merge_patch(Ref(IMAGES, "", name),
                                            {"metadata": {"finalizers": fins or None,
                                                          "resourceVersion": meta["resourceVersion"]}})
        except Conflict:
            return 0.1  # changed meanwhile: try again with the newer copy
        except NotFound:
            pass
        return None

    def _last_name(self, ref: Reference) -> bool:
        target = self.records.get(str(ref))
        return not any(t == target and n != str(ref) and not n.startswith("sha256:") and "@" not in n
                       for n, t in self.records.items())

    def _held_here(self, ref: Reference, obj: dict[str, Any]) -> bool:
        """Whether this node's containerd holds the object's image (only then is there anything to remove).

        In cluster mode only an object this node has claimed: one no node acted on is nobody's image."""
        owners = (self.env.node,) if self.env.per_node else (None, "", self.env.node)
        return str(ref) in self.records and self._owner(obj) in owners

    async def deletion_conflict(self, obj: dict[str, Any]) -> str:
        """Why the Image object may not be deleted now, in docker's words (``docker rmi`` of a reference a
        container uses), or "" when it may go: forced, not held here, or used by nothing.

        The admission webhook refuses the DELETE with it (409), so ``kubectl delete images --all`` returns
        instead of leaving objects Terminating; the finalizer checks again, for a user that came after.
        """
        meta = obj["metadata"]
        ref = _parse((obj.get("spec") or {}).get("reference", ""))
        if ref is None or (meta.get("annotations") or {}).get(FORCE_DELETE_ANNOTATION) == "true" \
                or not self._held_here(ref, obj):
            return ""
        user = await self._user_of(ref, obj)
        return f'conflict: unable to remove repository reference "{ref.familiar()}" (must force) - {user}' if user \
            else ""

    async def _user_of(self, ref: Reference, obj: dict[str, Any]) -> str:
        """Who keeps the image: a LocalContainer naming it or running it, or — for the pause image — the pod
        sandboxes (every container's)."""
        image_id = (obj.get("status") or {}).get("id", "")
        if str(ref) in self.env.protected:
            sandboxes = [sb.id for sb in await self.env.cri.list_pod_sandbox() if sb.state == pb.SANDBOX_READY]
            if sandboxes:
                return f"container {sandboxes[0][:12]} is using its referenced image {image_id[7:19]}"
            return "image is the sandbox (pause) image of every container"
        last = self._last_name(ref)
        for c in await self.env.kube.list_objects(LOCAL_CONTAINERS):
            spec, st = c.get("spec") or {}, c.get("status") or {}
            named = _parse(spec.get("image", ""))
            runs = bool(image_id) and last and st.get("imageID", "").endswith(image_id.removeprefix("sha256:"))
            if (named is not None and str(named) == str(ref)) or runs:
                return f"container {dockerid.object_id(c)[:12]} is using its referenced image {image_id[7:19]}"
        return ""

    async def _remove_reference(self, ref: Reference, image_id: str) -> None:
        """Remove the name; when it was the image's last name, also CRI's digest and ID names of it.

        The ID name goes last, and is removed again if it comes back: CRI re-creates it while handling the
        event of a name it still knew the image by.
        """
        name = str(ref)
        target = self.records.get(name)
        last = target is not None and self._last_name(ref)
        await self._delete_names([name])
        if not last:
            return
        for _ in range(5):
            others = [n for n, t in self.records.items() if t == target and not n.startswith("sha256:")]
            ids = [n for n, t in self.records.items() if t == target and n.startswith("sha256:")]
            ids += [image_id] if image_id and image_id not in ids else []
            await self._delete_names(others)
            await self._delete_names(ids)
            await asyncio.sleep(0.05)
            if not any([await self.env.store.get(n) for n in ids]):
                return

    async def _delete_names(self, names: list[str]) -> None:
        for n in names:
            self._seq[n] = self._seq.get(n, 0) + 1
            with contextlib.suppress(RuntimeCallError):
                await self.env.store.delete(n)
            self.records.pop(n, None)

    # ---- pulling -----------------------------------------------------------------------------

    def _start_pull(self, obj: dict[str, Any], ref: Reference, request: str, forced: bool) -> None:
        name = obj["metadata"]["name"]
        task = asyncio.get_running_loop().create_task(self._pull(obj, ref, request, forced), name=f"pull:{name}")
        self._pulls[name] = task
        task.add_done_callback(lambda _t: self._pulls.pop(name, None))

    async def _cancel_pull(self, name: str) -> None:
        task = self._pulls.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _pull(self, obj: dict[str, Any], ref: Reference, request: str, forced: bool) -> None:
        name = obj["metadata"]["name"]
        present = (obj.get("status") or {}).get("phase") == "Ready"
        pull: ImagePull = {"request": request, "state": "Resolving", "startTime": now_rfc3339(),
                           "message": "", "layers": [], "current": 0, "total": 0}
        await self._patch_status(obj, {"phase": "Ready" if present else "Pulling", "pull": pull})
        progress: _Progress | None = None
        try:
            secret = SecretRef.of(obj.get("spec") or {})
            if forced or await self.env.cri.image_status(str(ref)) is None:  # ImageStatus first
                progress = await self._resolve_layers(ref, secret)
                await self._pull_with_progress(name, ref, secret, progress, pull)
            await self._pull_succeeded(name, ref, pull)
        except asyncio.CancelledError:
            if progress is not None:
                await progress.abort(self.env.store)
            raise
        except Exception as err:  # any failure must end in a Failed status, never a hang
            if not isinstance(err, RegistryError | RuntimeCallError | LookupError | OSError):
                log.exception("pull of %s failed unexpectedly", ref)
            if progress is not None:
                await progress.abort(self.env.store)
            await self._pull_failed(name, ref, request, pull, err)

    async def _pull_succeeded(self, name: str, ref: Reference, pull: ImagePull) -> None:
        self._failures.pop(name, None)
        pull.update({"state": "Succeeded", "completionTime": now_rfc3339(), "message": ""})
        record = await self.env.store.get(str(ref))
        if record is None:
            raise RegistryError(f"the pull of {ref} finished but containerd has no such image")
        current = self.objects.get(name)
        if current is not None:
            await self._write_present(current, ref, record.target, {"pull": pull})
        self.env.schedule(name, 0.0)

    async def _resolve_layers(self, ref: Reference, secret: SecretRef) -> _Progress:
        """The layers the pull will fetch (this platform's), asked of the registry with k3c's client.

        This also turns unknown images, refused credentials and unreachable registries into clear
        errors before CRI is involved.
        """
        from k3c.distribution.pull import resolve_platform

        client = await self.env.access.client(ref.domain, secret)
        try:
            manifest = await client.get_manifest(ref.path, ref.object)
            if manifest.media_type in (MEDIA_INDEX, DOCKER_MANIFEST_LIST):
                manifest = await client.get_manifest(ref.path, resolve_platform(manifest).digest)
        finally:
            await client.close()
        doc = json.loads(manifest.data)
        layers = [Descriptor.from_json(d) for d in [*doc.get("layers", [])]]
        progress = _Progress(layers)
        await progress.start(self.env.store)
        return progress

    async def _pull_with_progress(self, name: str, ref: Reference, secret: SecretRef, progress: _Progress,
                                  pull: ImagePull) -> None:
        await self.env.access.sync_containerd_hosts()
        auth = await self.env.access.cri_auth(ref.domain, secret)
        pull["state"] = "Pulling"
        # no deadline: layers can be large, and the user ends a pull by deleting its object (or Ctrl-C)
        call = asyncio.get_running_loop().create_task(self.env.cri.pull_image(str(ref), auth, timeout=None))
        last: list[LayerProgress] | None = None
        try:
            while not call.done():
                layers = await progress.snapshot(self.env.store)
                if layers != last:
                    last = layers
                    pull.update({"layers": layers, "current": sum(x["current"] for x in layers),
                                 "total": sum(x["size"] for x in layers)})
                    obj = self.objects.get(name)
                    if obj is not None:
                        await self._patch_status(obj, {"pull": pull})
                await asyncio.wait({call}, timeout=PROGRESS_INTERVAL)
            await call
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call
        layers = await progress.snapshot(self.env.store)
        pull.update({"layers": layers, "current": sum(x["size"] for x in layers),
                     "total": sum(x["size"] for x in layers)})

    async def _pull_failed(self, name: str, ref: Reference, request: str, pull: ImagePull,
                           err: BaseException) -> None:
        permanent = bool(getattr(err, "permanent", False))
        message = _pull_message(ref, err)
        previous = self._failures.get(name)
        attempts = previous.attempts + 1 if previous is not None and previous.request == request else 1
        delay = RETRY_DELAYS[min(attempts - 1, len(RETRY_DELAYS) - 1)]
        self._failures[name] = _Failure(request, attempts, permanent, time.monotonic() + delay)
        pull.update({"state": "Failed", "message": message, "completionTime": now_rfc3339()})
        obj = self.objects.get(name)
        if obj is None:
            return
        record = await self.env.store.get(str(ref))
        present = record is not None
        if record is not None:  # the image stays as it was; only this pull failed
            try:
                await self._write_present(obj, ref, record.target, {"pull": pull})
            except Exception:  # the image cannot be described: at least answer the pull
                log.exception("cannot describe %s", ref)
                await self._patch_status(obj, {"pull": pull})
        else:
            await self._patch_status(obj, {"pull": pull, "phase": "Failed", "message": message,
                                           "conditions": _condition(False, "PullFailed", message)})
        log.warning("pull of %s failed: %s", ref, message)
        if not permanent and not present:
            self.env.schedule(name, delay)


def node_labels(node: str) -> dict[str, str]:
    """The :data:`~k3c.api.NODE_LABEL` of a node's objects, when the node name can be a label value (at most
    63 characters: most are; spec.nodeName names the node in any case)."""
    return {NODE_LABEL: node} if len(node) <= 63 else {}


def _pull_message(ref: Reference, err: BaseException) -> str:
    if isinstance(err, RegistryError):
        if err.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "NOT_FOUND"):
            return f"manifest for {ref.familiar()} not found: {err.message}"
        if err.code == "UNAUTHORIZED":
            return f"pull access denied for {ref.familiar_repository}, repository does not exist or may " \
                   f"require 'k3c login': {err.message}"
        return str(err)
    if isinstance(err, RuntimeCallError):
        parts = [p.strip() for p in err.details.split(": ") if p.strip()]
        return ": ".join(parts[-2:]) if len(parts) > 2 else err.details
    return str(err)


def _rv(obj: dict[str, Any]) -> int:
    rv = obj.get("metadata", {}).get("resourceVersion", "")
    return int(rv) if str(rv).isdigit() else 0
