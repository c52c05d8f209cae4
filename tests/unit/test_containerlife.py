"""The kill-request record (k3c.containerlife): which exit after a `kill -s` docker 20.10 does not restart."""

from __future__ import annotations

from typing import Any

from k3c.containerlife import KillRequest, exits_for_good, kill_patch, kill_request


def asked(signal: int, cid: str = "c1", **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "web"}, "spec": spec, "status": {"containerID": cid}}
    obj["metadata"]["annotations"] = kill_patch(obj, signal)["metadata"]["annotations"]
    return obj


def test_the_patch_names_the_signal_and_the_run_it_was_sent_to() -> None:
    req = kill_request(asked(15))
    assert req is not None and (req.signal, req.container_id) == (15, "c1") and req.token
    assert kill_request({"metadata": {"annotations": {"k3c.io/kill-request": "TERM/c1/x"}}}) is None
    assert kill_request(None) is None and kill_request({"metadata": {}}) is None
    assert KillRequest(1, "c", "t") == KillRequest(1, "c", "t")


def test_dockers_rule_any_signal_without_a_stop_signal_else_only_that_one() -> None:
    assert exits_for_good(asked(1), "c1")  # no stop signal of its own: any kill -s
    assert exits_for_good(asked(15), "c1")
    assert not exits_for_good(asked(15), "c2")  # another run of the container: restarted as usual
    assert not exits_for_good({"metadata": {}, "spec": {}}, "c1")
    assert exits_for_good(asked(2, stopSignal="SIGINT"), "c1")
    assert not exits_for_good(asked(15, stopSignal="SIGINT"), "c1")
    assert not exits_for_good(asked(15), "")
