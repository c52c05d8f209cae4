"""ImageTag objects: the targets point at the source's image (``docker tag``), optionally pushed.

Level-based and idempotent: every reconcile resolves the source (a reference, or an image ID through the
Image objects' ``status.id``), points each target name at the source's manifest/index in containerd
(``Images.Create``/``Update``; a target already pointing there is left alone) and writes the outcome to
status. With ``spec.push`` it keeps one ImagePush child per target, named after the tag object, the target
index and the pushed digest (``<tag>-push-<i>-<digest12>``), so a changed source gets a fresh push and
stale children are deleted; the children's phases are summarized back into this object's status.
A missing source is retried with a back-off (it may be pulled or built later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from k3c.api import IMAGE_PUSHES, IMAGE_TAG_OWNER_LABEL, IMAGE_TAGS
from k3c.apierrors import AlreadyExists
from k3c.cri.imagestore import ContainerdImages
from k3c.oci.layout import Descriptor
from k3c.oci.reference import InvalidReference, is_image_id, parse
from k3c.reconcilers.cache import observe_by_name
from k3c.reconcilers.kube import Kube, Ref
from k3c.reconcilers.statuses import ImageTagStatus, TagPhase, TagTarget
from k3c.timefmt import now_rfc3339

log = logging.getLogger(__name__)

MISSING_SOURCE_RETRY = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class TagError(Exception):
    """The tag cannot be made (bad reference, unknown source): the message goes to status."""


@dataclass
class TagEnv:
    kube: Kube
    store: ContainerdImages
    node: str


class ImageTags:
    """The ImageTag reconciler. ``images`` is the Image objects cache (to resolve image IDs)."""

    def __init__(self, env: TagEnv, images: dict[str, dict[str, Any]], pushes: dict[str, dict[str, Any]]) -> None:
        self.env = env
        self.images = images
        self.pushes = pushes
        self.objects: dict[str, dict[str, Any]] = {}
        self._misses: dict[str, int] = {}

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> str:
        return observe_by_name(self.objects, event_type, obj)

    def owner_of_push(self, push: dict[str, Any]) -> str | None:
        return (push["metadata"].get("labels") or {}).get(IMAGE_TAG_OWNER_LABEL)

    async def reconcile(self, name: str) -> float | None:
        obj = self.objects.get(name)
        if obj is None:
            await self._delete_children(name, keep=set())
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return None
        spec = obj.get("spec") or {}
        try:
            source_name, target = await self._source(spec.get("source", ""))
            targets = [str(parse(t)) for t in spec.get("targets") or []]
        except (TagError, InvalidReference) as err:
            return await self._failed(obj, str(err))
        self._misses.pop(name, None)
        record = await self.env.store.get(source_name)
        labels = dict(record.labels) if record is not None else {}
        for t in targets:
            current = await self.env.store.get(t)
            if current is None or current.target.digest != target.digest:
                await self.env.store.put(t, target, labels)
        entries: list[TagTarget] = [{"reference": t, "tagged": True} for t in targets]
        phase: TagPhase = "Tagged"
        if spec.get("push"):
            phase = await self._pushes(obj, spec, targets, target, entries)
        else:
            await self._delete_children(name, keep=set())
        image_id = await self._image_id(target)
        await self._write(obj, phase, "", target.digest, image_id, entries)
        return None

    async def _source(self, source: str) -> tuple[str, Descriptor]:
        """The containerd name and target the source names: a reference first, then an image ID (prefix)
        looked up in the Image objects, as docker resolves them."""
        name = ""
        if not is_image_id(source):
            try:
                ref = str(parse(source))
            except InvalidReference:
                ref = ""
            if ref and await self.env.store.get(ref) is not None:
                name = ref
        if not name and _hexish(source):
            want = source.removeprefix("sha256:")
            found = {o["spec"]["reference"] for o in self.images.values()
                     if (o.get("status") or {}).get("id", "").removeprefix("sha256:").startswith(want)}
            if len(found) >= 1:
                name = sorted(found)[0]
        record = await self.env.store.get(name) if name else None
        if record is None:
            parse(source) if not _hexish(source) else None  # a malformed name says so
            raise TagError(f"No such image: {source}")
        t = record.target
        return name, Descriptor(t.media_type, t.digest, t.size)

    async def _image_id(self, target: Descriptor) -> str:
        for o in self.images.values():
            st = o.get("status") or {}
            if st.get("digest") == target.digest and st.get("id"):
                image_id: str = st["id"]
                return image_id
        return ""

    async def _pushes(self, obj: dict[str, Any], spec: dict[str, Any], targets: list[str], target: Descriptor,
                      entries: list[TagTarget]) -> TagPhase:
        name = obj["metadata"]["name"]
        keep = set()
        phases = []
        for i, (t, entry) in enumerate(zip(targets, entries, strict=True)):
            child = f"{name}-push-{i}-{target.digest.removeprefix('sha256:')[:12]}"
            keep.add(child)
            existing = self.pushes.get(child)
            if existing is None:
                existing = await self._create_push(obj, child, t, spec)
            st = existing.get("status") or {}
            entry.update({"push": child, "pushPhase": st.get("phase", "Pending"),
                          "pushedDigest": st.get("digest", ""), "message": st.get("message", "")})
            phases.append(entry["pushPhase"])
        await self._delete_children(name, keep)
        if "Failed" in phases:
            return "Failed"
        return "Ready" if all(p == "Succeeded" for p in phases) else "Pushing"

    async def _create_push(self, owner: dict[str, Any], child: str, target: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = owner["metadata"]
        body: dict[str, Any] = {
            "apiVersion": IMAGE_PUSHES.api_version, "kind": IMAGE_PUSHES.kind,
            "metadata": {"name": child, "labels": {IMAGE_TAG_OWNER_LABEL: meta["name"]},
                         "ownerReferences": [{"apiVersion": IMAGE_TAGS.api_version, "kind": IMAGE_TAGS.kind,
                                              "name": meta["name"], "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": False}]},
            "spec": {"image": target},
        }
        if spec.get("authSecret"):
            body["spec"]["authSecret"] = spec["authSecret"]
        try:
            created = await self.env.kube.create(IMAGE_PUSHES, "", body)
        except AlreadyExists:
            created = await self.env.kube.get(Ref(IMAGE_PUSHES, "", child)) or body
        self.pushes[child] = created
        return created

    async def _delete_children(self, owner: str, keep: set[str]) -> None:
        for child in [n for n, p in self.pushes.items()
                      if (p["metadata"].get("labels") or {}).get(IMAGE_TAG_OWNER_LABEL) == owner
                      and n not in keep]:
            await self.env.kube.delete(Ref(IMAGE_PUSHES, "", child))

    async def _failed(self, obj: dict[str, Any], message: str) -> float | None:
        name = obj["metadata"]["name"]
        misses = self._misses.get(name, 0)
        self._misses[name] = misses + 1
        await self._write(obj, "Failed", message, "", "", [])
        if message.startswith("No such image"):
            return MISSING_SOURCE_RETRY[min(misses, len(MISSING_SOURCE_RETRY) - 1)]
        return None

    async def _write(self, obj: dict[str, Any], phase: TagPhase, message: str, digest: str, image_id: str,
                     entries: list[TagTarget]) -> None:
        st = obj.get("status") or {}
        gen = obj["metadata"].get("generation")
        ready = phase in ("Tagged", "Ready")
        done = sum(1 for e in entries if e.get("pushPhase") == "Succeeded")
        summary = ", ".join(e["reference"] for e in entries)
        if entries and entries[0].get("push"):
            summary += f" (pushed {done}/{len(entries)})"
        status: ImageTagStatus = {"phase": phase, "message": message, "observedGeneration": gen, "digest": digest,
                                  "imageID": image_id, "targets": entries, "targetSummary": summary}
        old_cond = (st.get("conditions") or [{}])[0]
        if all(st.get(k) == v for k, v in status.items()) and old_cond.get("status") == ("True" if ready else "False"):
            return
        reason = {"Tagged": "Tagged", "Ready": "Pushed", "Pushing": "Pushing"}.get(phase, "Failed")
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False", "reason": reason,
                                 "message": message, "lastTransitionTime": now_rfc3339()}]
        ref = Ref(IMAGE_TAGS, "", obj["metadata"]["name"])
        new = await self.env.kube.patch_status_if_present(ref, status)
        if new is not None:
            self.observe("MODIFIED", new)


def _hexish(text: str) -> bool:
    raw = text.removeprefix("sha256:")
    return len(raw) >= 4 and all(c in "0123456789abcdef" for c in raw)
