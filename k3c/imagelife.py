"""An image's life as its writers drive it: the objects a pull, push or tag writes, when each is over, what rmi removes.

The CLI and the Docker API both pull, push, tag and remove images by writing Image, ImagePush and ImageTag
objects and following them; this is the one statement of that protocol (the pull-request token the
operator echoes, the phases that end a push or tag, docker's rules for which references an rmi takes and
when it must refuse), so the two front doors cannot drift apart. Pure functions over objects: how each
side waits (the CLI's watch, the API's polling) stays its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from k3c.api import IMAGE_PUSHES, IMAGE_TAGS, IMAGES, NODE_LABEL
from k3c.dockerid import object_id
from k3c.oci.reference import InvalidReference, Reference, object_name, parse

#: the phases that end an ImagePush or an ImageTag
PUSH_DONE = ("Succeeded", "Failed")
TAG_DONE = ("Tagged", "Ready", "Failed")


class ImageConflict(Exception):
    """An rmi docker refuses (must be forced): a container uses the image, or an ID names several references."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def reference_of(obj: dict[str, Any]) -> str:
    """The reference an Image object stands for (normalized: ``docker.io/library/busybox:latest``)."""
    reference: str = (obj.get("spec") or {}).get("reference", "")
    return reference


def image_id_of(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("id") or "")


def familiar(obj: dict[str, Any]) -> str:
    """The reference as docker prints it (``busybox:latest``)."""
    try:
        return parse(reference_of(obj)).familiar()
    except InvalidReference:
        return reference_of(obj)


def same_reference(obj: dict[str, Any], ref: Reference) -> bool:
    try:
        return str(parse(reference_of(obj))) == str(ref)
    except InvalidReference:
        return False


def looks_like_id(text: str) -> bool:
    """An image ID or an ID prefix of at least 4 hex digits (``sha256:`` optional), as docker tries them."""
    raw = text.removeprefix("sha256:")
    return len(raw) >= 4 and all(c in "0123456789abcdef" for c in raw)


# ------------------------------------------------------------------------------------------ pull


def auth_secret(namespace: str, name: str) -> dict[str, str]:
    """``spec.authSecret``: the dockerconfigjson Secret the operator reads this one pull's or push's
    credentials from (default, when absent: the one `k3c login` writes)."""
    return {"namespace": namespace, "name": name}


def pull_object(ref: Reference, request: str, node: str = "",
                auth: dict[str, str] | None = None) -> dict[str, Any]:
    """A new Image object that pulls ``ref`` (on ``node``'s store in cluster mode, named as its agent does)."""
    body: dict[str, Any] = {"apiVersion": IMAGES.api_version, "kind": IMAGES.kind,
                            "metadata": {"name": object_name(ref, node)},
                            "spec": {"reference": str(ref), "pullRequest": request}}
    if node:
        body["spec"]["nodeName"] = node
        body["metadata"]["labels"] = {NODE_LABEL: node} if len(node) <= 63 else {}
    if auth:
        body["spec"]["authSecret"] = auth
    return body


def pull_patch(request: str, auth: dict[str, str] | None = None) -> dict[str, Any]:
    """The merge patch asking an existing Image object to pull again (with these credentials, or the default)."""
    spec: dict[str, Any] = {"pullRequest": request}
    if auth:
        spec["authSecret"] = auth
    return {"spec": spec}


def pull_state(obj: dict[str, Any], request: str) -> dict[str, Any]:
    """``status.pull`` when it answers this request (its layers, state, message), else ``{}``."""
    pull: dict[str, Any] = (obj.get("status") or {}).get("pull") or {}
    return pull if pull.get("request", "") == request else {}


def pull_finished(obj: dict[str, Any], request: str) -> bool:
    return pull_state(obj, request).get("state") in ("Succeeded", "Failed")


def pull_layers(obj: dict[str, Any], request: str) -> list[dict[str, Any]]:
    """This pull's layers, each (digest, size, current, state); a downloaded layer of a finished pull is
    ``Pull complete``, as docker words it."""
    pull = pull_state(obj, request)
    done = pull.get("state") == "Succeeded"
    return [{**layer, "state": "Pull complete"} if done and layer.get("state") == "Download complete" else layer
            for layer in pull.get("layers") or []]


def pull_failure(obj: dict[str, Any], request: str) -> str:
    """Why this pull failed ('' if it did not)."""
    pull = pull_state(obj, request)
    if pull.get("state") == "Succeeded":
        return ""
    return str(pull.get("message") or (obj.get("status") or {}).get("message") or "pull failed")


# ------------------------------------------------------------------------------------------ push, tag


def push_object(ref: Reference, auth: dict[str, str] | None = None) -> dict[str, Any]:
    """An ImagePush of the local image ``ref`` to its own repository (what `docker push` does)."""
    spec: dict[str, Any] = {"image": str(ref)}
    if auth:
        spec["authSecret"] = auth
    return {"apiVersion": IMAGE_PUSHES.api_version, "kind": IMAGE_PUSHES.kind,
            "metadata": {"generateName": "push-"}, "spec": spec}


def tag_object(source: dict[str, Any], targets: list[str]) -> dict[str, Any]:
    """An ImageTag giving the Image object ``source``'s image the (normalized) references ``targets``."""
    return {"apiVersion": IMAGE_TAGS.api_version, "kind": IMAGE_TAGS.kind,
            "metadata": {"generateName": "tag-"},
            "spec": {"source": reference_of(source), "targets": targets}}


def phase(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


# ------------------------------------------------------------------------------------------ rmi


@dataclass
class Removal:
    """What removing one image argument takes: the Image objects to delete, what docker prints for it."""

    doomed: list[dict[str, Any]]
    #: the image goes with them (no other reference keeps it): docker's ``Deleted: sha256:…``
    last: bool
    image_id: str
    untagged: list[str] = field(default_factory=list)


def plan_removal(images: list[dict[str, Any]], obj: dict[str, Any], text: str, force: bool) -> Removal:
    """docker's rmi of ``text`` (which found ``obj`` among ``images``): by reference, that reference (on
    every node that has it); by ID, every reference of the image, which without force must be only one."""
    iid = image_id_of(obj)
    try:
        by_id = looks_like_id(text) and not same_reference(obj, parse(text))
    except InvalidReference:
        by_id = looks_like_id(text)
    siblings = [o for o in images if iid and image_id_of(o) == iid]
    doomed = siblings if by_id else [o for o in images if reference_of(o) == reference_of(obj)]
    if by_id and len({reference_of(o) for o in siblings}) > 1 and not force:
        raise ImageConflict(f"conflict: unable to delete {iid[7:19]} (must be forced) - image is referenced "
                            "in multiple repositories")
    return Removal(doomed, len(siblings) <= len(doomed), iid, list(dict.fromkeys(familiar(o) for o in doomed)))


def container_using(containers: list[dict[str, Any]], obj: dict[str, Any], iid: str, last: bool) -> str:
    """The docker ID of a LocalContainer among ``containers`` that names this reference, or that runs
    this image when its ``last`` name goes; '' if none."""
    ref = reference_of(obj)
    for c in containers:
        spec, st = c.get("spec") or {}, c.get("status") or {}
        try:
            named = str(parse(spec.get("image", ""))) == ref
        except InvalidReference:
            named = False
        runs = last and bool(iid) and (st.get("imageID") or "").endswith(iid.removeprefix("sha256:"))
        if named or runs:
            return object_id(c)[:12]
    return ""


def in_use_conflict(obj: dict[str, Any], user: str) -> ImageConflict:
    """docker's refusal to remove a reference a container uses."""
    return ImageConflict(f'conflict: unable to remove repository reference "{familiar(obj)}" (must force) - '
                         f"container {user} is using its referenced image {image_id_of(obj)[7:19]}")


def prunable(images: list[dict[str, Any]], everything: bool) -> list[dict[str, Any]]:
    """What an image prune considers: dangling references (``<none>`` tag), or with ``everything`` all."""
    return [o for o in images if everything or (o.get("status") or {}).get("tag") == "<none>"]
