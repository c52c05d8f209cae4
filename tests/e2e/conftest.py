"""Fixtures that start real processes, shared by the e2e modules, and the ``containerd`` marker's skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, skip_reason
from tests.support.harness import APIServerProcess, oldest_and_newest_kubectl

KUBECTLS = oldest_and_newest_kubectl()


@pytest.hookimpl(tryfirst=True)  # before fixtures start anything
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``containerd`` test on a host that cannot run containers is skipped, saying what is missing."""
    if item.get_closest_marker("containerd") and (reason := skip_reason()):
        pytest.skip(f"needs root and containerd: {reason}")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    """One API server per test module (each test uses its own names or namespace)."""
    srv = APIServerProcess(tmp_path_factory.mktemp("apiserver") / "data", extra_args=["--bookmark-interval", "1"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=KUBECTLS or [None], ids=lambda p: Path(p).name if p else "no-kubectl")
def kubectl(request):
    if request.param is None:
        pytest.skip("no kubectl on this machine")
    return request.param


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One `k3c daemon` per test module (private dirs, port, bridge, subnet) with the busybox test image
    imported as daemon_harness.TEST_IMAGE. Teardown deletes every object, stops the daemon and fails the
    module if shims, network namespaces or IP leases were left behind (they are removed regardless).
    Tests using it are marked ``containerd`` (tests/conftest.py), so they skip where it cannot run."""
    from k3c.oci.layout import busybox_image

    d = DaemonProcess(tmp_path_factory.mktemp("daemon"))
    try:
        d.start()
        d.import_image(TEST_IMAGE, busybox_image())
    except BaseException:
        d.close()
        raise
    yield d
    leftovers = d.close()
    assert not leftovers, f"k3c daemon left behind: {leftovers}"
