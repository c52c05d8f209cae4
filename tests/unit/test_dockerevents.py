"""docker's events derived from object versions (k3c.dockerevents): the cases the e2e tests with the
fake operator and the real daemon do not reach (a removal the finalizer did without a status, pause,
images, health Events). The streams themselves are tested in tests/e2e/test_cli.py."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from k3c.api import EVENTS, IMAGE_TAGS, IMAGES, LOCAL_CONTAINERS
from k3c.cli.events import format_line, parse_filters
from k3c.dockerevents import Message, Tracker, event_matches

UID = "0f4c6d4e-7d5b-4c8e-9a51-3a2b1c0d9e8f"
CID = hashlib.sha256(UID.encode()).hexdigest()


def container(phase: str = "Running", cid: str = "c1", paused: bool = False, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "uid": UID, "annotations": {"k3c.io/name": "Web_1"}},
            "spec": {"image": "busybox", "state": "Running", **spec},
            "status": {"phase": phase, "containerID": cid, "paused": paused}}


def actions(msgs: list[Message]) -> list[str]:
    return [f"{m.Type} {m.Action}" + (f" {m.Actor['Attributes'].get('signal', '')}".rstrip()) for m in msgs]


def test_a_forced_removal_the_finalizer_did_says_kill_die_destroy() -> None:
    t = Tracker()
    t.seed(LOCAL_CONTAINERS, container())
    asked = container(stopTimeout=0)
    asked["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", asked, 1)) == ["container kill 9"]
    gone = t.change(LOCAL_CONTAINERS, "DELETED", asked, 2)
    assert actions(gone) == ["container die", "container destroy"]
    assert gone[0].Actor == {"ID": CID, "Attributes": {"exitCode": "137", "image": "busybox", "name": "Web_1"}}
    assert not t.containers


def test_pause_unpause_and_a_policy_restart() -> None:
    t = Tracker()
    t.seed(LOCAL_CONTAINERS, container())
    # what the operator writes for a frozen container: still Running, status.paused (no "Paused" phase)
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", container(paused=True), 1)) == ["container pause"]
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", container(paused=True), 2)) == []
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", container(), 3)) == ["container unpause"]
    exited = container("Exited")
    exited["status"]["exitCode"] = 3
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", exited, 4)) == ["container die"]
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", container("Running", "c2"), 5)) == ["container start"]


def test_a_kill_with_a_signal_says_kill_with_its_number_once() -> None:
    from k3c.containerlife import kill_patch

    t = Tracker()
    t.seed(LOCAL_CONTAINERS, container())
    hup = copy.deepcopy(container())
    hup["metadata"]["annotations"].update(kill_patch(hup, 1)["metadata"]["annotations"])
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", hup, 1)) == ["container kill 1"]
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", copy.deepcopy(hup), 2)) == []  # the same request
    exited = copy.deepcopy(hup)
    exited["status"].update(phase="Exited", exitCode=129)
    assert actions(t.change(LOCAL_CONTAINERS, "MODIFIED", exited, 3)) == ["container die"]  # no "stop" after it


def test_image_untag_then_delete_with_its_last_reference() -> None:
    t = Tracker()
    a = {"metadata": {"uid": "a"}, "spec": {"reference": "docker.io/library/busybox:latest"},
         "status": {"id": "sha256:abc"}}
    b = {"metadata": {"uid": "b"}, "spec": {"reference": "docker.io/library/foo:1"}, "status": {"id": "sha256:abc"}}
    t.seed(IMAGES, a)
    t.seed(IMAGES, b)
    assert [(m.Action, m.Actor["ID"]) for m in t.change(IMAGES, "DELETED", b, 1)] == [("untag", "sha256:abc")]
    assert [m.Action for m in t.change(IMAGES, "DELETED", a, 2)] == ["untag", "delete"]
    pulled = copy.deepcopy(a)
    pulled["status"]["pull"] = {"state": "Succeeded", "request": "1"}
    (pull,) = t.change(IMAGES, "ADDED", pulled, 3)
    assert (pull.Action, pull.Actor) == ("pull", {"ID": "busybox:latest", "Attributes": {"name": "busybox"}})
    assert t.change(IMAGES, "MODIFIED", pulled, 4) == []  # the same pull told once
    tag = {"metadata": {"uid": "t"}, "spec": {"targets": ["docker.io/library/bar:2"]},
           "status": {"phase": "Ready", "imageID": "sha256:abc"}}
    (tagged,) = t.change(IMAGE_TAGS, "ADDED", tag, 5)
    assert format_line(tagged).endswith(" image tag sha256:abc (name=bar:2)")
    assert tagged.to_json()["id"] == "sha256:abc" and "from" not in tagged.to_json()


def test_health_events_of_a_known_container_once_each() -> None:
    t = Tracker()
    t.seed(LOCAL_CONTAINERS, container())
    ev = {"metadata": {"uid": "e1"}, "reason": "HealthStatusUnhealthy", "count": 1,
          "involvedObject": {"kind": "LocalContainer", "uid": UID}}
    (msg,) = t.change(EVENTS, "ADDED", ev, 1)
    assert msg.Action == "health_status: unhealthy" and msg.Actor["ID"] == CID
    assert t.change(EVENTS, "MODIFIED", ev, 2) == []
    assert len(t.change(EVENTS, "MODIFIED", {**ev, "count": 2}, 3)) == 1
    assert t.change(EVENTS, "ADDED", {**ev, "metadata": {"uid": "e2"}, "reason": "Started"}, 4) == []
    assert event_matches(msg, parse_filters(["event=health_status"]))  # docker: a prefix for these
    assert not event_matches(msg, parse_filters(["event=health"]))
