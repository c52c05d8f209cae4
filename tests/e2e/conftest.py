"""Fixtures that start real processes, shared by the e2e modules, and the ``containerd`` marker's skip."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from tests.support.daemon_harness import TEST_IMAGE, DaemonProcess, pick_subnet, skip_reason
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
        d.wait_image_object(TEST_IMAGE)  # (a module's first `docker run` finds it through the Image object)
    except BaseException:
        d.close()
        raise
    yield d
    leftovers = d.close()
    assert not leftovers, f"k3c daemon left behind: {leftovers}"


@pytest.fixture(scope="module")
def docker_peer(daemon, tmp_path_factory):
    """Debian's dockerd 20.10 beside the module's daemon, for the output comparisons issue 13 asks for:
    bench/peers.py's DockerPeer (its own data root, socket, bridge and subnet, no iptables rules) with the
    busybox test image loaded under the same name. Where docker or skopeo is truly absent (``scripts/test``
    installs both) the comparisons skip, saying what is missing. Teardown fails the module if anything but its bridge had to be
    removed by force (it is removed regardless)."""
    from bench.peers import DOCKER, DOCKERD, DockerPeer
    from k3c.oci.layout import busybox_image
    from tests.support.docker_peer import load_image

    missing = [p for p in (DOCKER, DOCKERD, "/usr/bin/skopeo") if not Path(p).exists()]
    if missing:
        pytest.skip(f"the docker 20.10 comparison needs Debian's docker.io and skopeo (missing: {', '.join(missing)})")
    base = tmp_path_factory.mktemp("docker")
    peer = DockerPeer(base / "peer", pick_subnet())  # (reserved: never the daemon's, whose bridge may have no address yet)
    try:
        peer.start()
        load_image(peer, base, TEST_IMAGE, busybox_image())
    except BaseException:
        peer.stop()
        raise
    yield peer
    with contextlib.suppress(Exception):
        peer.remove_all()
    forced = peer.stop()
    assert all(f.startswith("deleted bridge") for f in forced), f"dockerd left behind: {forced}"


@pytest.fixture(scope="module")
def sock(daemon) -> str:
    """The module's daemon's Docker API socket."""
    return str(daemon.state_dir / "docker.sock")


@pytest.fixture(scope="module")
def dockerpy(sock):
    """docker-py on that socket."""
    import docker

    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image_known(dockerpy):
    """The test image as the API sees it: the operator's Image object can come a moment after the import."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(TEST_IMAGE in image.tags for image in dockerpy.images.list()):
            return
        time.sleep(0.2)
    pytest.fail(f"{TEST_IMAGE} never showed in /images/json")
