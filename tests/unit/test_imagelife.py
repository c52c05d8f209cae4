"""The pull/push/tag/rmi object protocol shared by the CLI and the Docker API (k3c.imagelife)."""

from __future__ import annotations

from typing import Any

import pytest

from k3c import imagelife
from k3c.oci.reference import parse


def _image(ref: str, iid: str, tag: str = "x") -> dict[str, Any]:
    return {"metadata": {"name": ref.replace("/", ".").replace(":", ".")},
            "spec": {"reference": str(parse(ref))}, "status": {"id": iid, "tag": tag, "phase": "Ready"}}


ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64


def test_pull_object_patch_and_progress():
    ref = parse("127.0.0.1:5000/app:v1")
    body = imagelife.pull_object(ref, "r1", auth={"namespace": "kube-system", "name": "s"})
    assert body["spec"] == {"reference": "127.0.0.1:5000/app:v1", "pullRequest": "r1",
                            "authSecret": {"namespace": "kube-system", "name": "s"}}
    assert imagelife.pull_patch("r2") == {"spec": {"pullRequest": "r2"}}  # the default credentials stay
    layer = {"digest": "sha256:" + "c" * 64, "size": 10, "current": 10, "state": "Download complete"}
    obj = {"status": {"pull": {"request": "r1", "state": "Succeeded", "layers": [layer]}}}
    assert imagelife.pull_finished(obj, "r1") and not imagelife.pull_finished(obj, "other")
    assert imagelife.pull_layers(obj, "r1")[0]["state"] == "Pull complete"
    assert imagelife.pull_layers(obj, "other") == []
    assert imagelife.pull_failure(obj, "r1") == ""
    failed = {"status": {"pull": {"request": "r1", "state": "Failed", "message": "manifest unknown"}}}
    assert imagelife.pull_failure(failed, "r1") == "manifest unknown"


def test_removal_by_reference_and_by_id():
    a1, a2, b = _image("k3c.test/a:1", ID_A), _image("k3c.test/a:2", ID_A), _image("k3c.test/b:1", ID_B)
    images = [a1, a2, b]
    plan = imagelife.plan_removal(images, a1, "k3c.test/a:1", False)
    assert plan.doomed == [a1] and not plan.last and plan.untagged == ["k3c.test/a:1"]
    plan = imagelife.plan_removal(images, b, "k3c.test/b:1", False)
    assert plan.last and plan.image_id == ID_B
    with pytest.raises(imagelife.ImageConflict, match="referenced in multiple repositories"):
        imagelife.plan_removal(images, a1, "aaaa", False)
    plan = imagelife.plan_removal(images, a1, "aaaa", True)
    assert plan.doomed == [a1, a2] and plan.last


def test_container_using_names_or_runs_the_image():
    a = _image("k3c.test/a:1", ID_A)
    naming = {"metadata": {"uid": "u1"}, "spec": {"image": "k3c.test/a:1"}, "status": {}}
    running = {"metadata": {"uid": "u2"}, "spec": {"image": "other"}, "status": {"imageID": ID_A}}
    assert imagelife.container_using([naming], a, ID_A, False)
    assert imagelife.container_using([running], a, ID_A, False) == ""  # another name keeps the image
    assert imagelife.container_using([running], a, ID_A, True)
    message = imagelife.in_use_conflict(a, "abc").message
    assert message.startswith('conflict: unable to remove repository reference "k3c.test/a:1" (must force)')
