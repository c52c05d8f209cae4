"""The rule that keeps the runtime sweeper off sandboxes being created: an unknown thing is an orphan only
if it predates containerd's start, or was unknown at the previous sweep too."""

from __future__ import annotations

from k3c.daemon.runtimegc import Suspects


def test_unknown_once_is_only_a_suspect() -> None:
    s = Suspects()
    assert s.confirm({"shim 10": 100.0}, None) == set()
    assert s.confirm({"shim 10": 100.0}, None) == {"shim 10"}


def test_known_again_is_forgotten() -> None:
    s = Suspects()
    s.confirm({"shim 10": 100.0}, None)
    assert s.confirm({}, None) == set()  # CRI listed it meanwhile: RunPodSandbox had only not returned yet
    assert s.confirm({"shim 10": 100.0}, None) == set()


def test_older_than_the_current_containerd_is_an_orphan_at_once() -> None:
    s = Suspects()
    assert s.confirm({"shim 10": 100.0, "shim 11": 300.0}, older_than=200.0) == {"shim 10"}
    assert s.keys == {"shim 11"}


def test_an_unknown_entry_still_in_the_making_is_kept_until_it_is_not() -> None:
    s = Suspects()
    making = frozenset({"CRI directory c1"})
    assert s.confirm({"CRI directory c1": 1000.0, "shim 10": 1000.0}, None, making) == set()
    assert s.confirm({"CRI directory c1": 1000.0, "shim 10": 1000.0}, None, making) == {"shim 10"}  # a slow create
    assert s.confirm({"CRI directory c1": 1000.0}, None) == {"CRI directory c1"}
