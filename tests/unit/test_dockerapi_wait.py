"""`POST /containers/{id}/wait?condition=next-exit`, as `docker run` asks it before it starts the container."""

from __future__ import annotations

from typing import Any

from k3c.dockerapi.containers import _wait_done


def _obj(state: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "failing"}, "spec": {"state": state}, "status": status}


def test_next_exit_of_a_container_not_started_yet_is_its_first_exit() -> None:
    last: dict[str, dict[str, Any]] = {}
    created = _obj("Stopped", {})
    done = _wait_done("next-exit", created, last)
    assert not done(_obj("Stopped", {"node": "n1", "phase": "Pending"}))  # the operator claims it: no exit
    assert not done(_obj("Running", {"node": "n1", "phase": "Running", "containerID": "c1"}))
    exited = _obj("Running", {"node": "n1", "phase": "Exited", "containerID": "c1", "exitCode": 3,
                              "finishedAt": "2026-12-07T19:00:00.000000Z"})
    assert done(exited) and last["obj"] is exited


def test_next_exit_of_an_exited_container_is_a_later_run() -> None:
    before = _obj("Stopped", {"phase": "Exited", "containerID": "c1", "exitCode": 0,
                              "finishedAt": "2026-12-07T19:00:00.000000Z"})
    done = _wait_done("next-exit", before, {})
    assert not done(before)
    assert done(_obj("Running", {"phase": "Exited", "containerID": "c2", "exitCode": 1,
                                 "finishedAt": "2026-12-07T19:00:05.000000Z"}))


def test_next_exit_of_a_running_container_is_its_exit() -> None:
    running = _obj("Running", {"phase": "Running", "containerID": "c1"})
    done = _wait_done("next-exit", running, {})
    assert not done(running)
    assert done(_obj("Running", {"phase": "Exited", "containerID": "c1", "exitCode": 137,
                                 "finishedAt": "2026-12-07T19:00:05.000000Z"}))
