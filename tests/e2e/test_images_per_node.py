"""Images per node (cluster mode): two nodes on one API server, each with its own containerd and image
operator (``--images-per-node``, as `k3c agent` and a `k3c daemon --kubeconfig` run it), holding the same
references. Each node's store is shown by objects of its own, neither node writes the other's, `k3c images`
says which node holds what, and `k3c rmi` removes a reference from one node or from all.

Ground truth is each node's containerd (read with `ctr`); a real registry (Debian's docker-registry) serves
the pulls, filled with skopeo. Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k3c.api import NODE_LABEL
from k3c.oci.layout import busybox_image, write_oci_archive
from k3c.oci.reference import object_name, parse
from tests.support.images_harness import (
    ImagesStack,
    RegistryProcess,
    import_image,
    new_base,
    remove_base,
    sized_image,
)

pytestmark = [pytest.mark.containerd, pytest.mark.skipif(
    not all(shutil.which(b) for b in ("docker-registry", "ctr", "skopeo")),
    reason="needs ctr, docker-registry and skopeo",
)]

NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = new_base("k3cpn-")
    yield path
    remove_base(path)


@pytest.fixture(scope="module")
def registry(base: Path) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(base / "registry", users=None).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def nodes(base: Path) -> Iterator[dict[str, ImagesStack]]:
    a = ImagesStack(base / "a", node=NODES[0], operator_args=["--images-per-node"])
    b = ImagesStack(base / "b", node=NODES[1], operator_args=["--images-per-node"], cluster=a)
    try:
        a.start()
        b.start()
        yield {NODES[0]: a, NODES[1]: b}
    finally:
        b.stop()
        a.stop()


def _objects(stack: ImagesStack, ref: str) -> dict[str, dict[str, Any]]:
    """The Image objects of ``ref``, by the node they belong to."""
    want = str(parse(ref))
    return {o["spec"].get("nodeName") or o["status"].get("node", ""): o for o in stack.image_objects()
            if o["spec"]["reference"] == want}


def _ready_on(stack: ImagesStack, ref: str, wanted: set[str]) -> dict[str, dict[str, Any]] | None:
    objs = _objects(stack, ref)
    ready = {n for n, o in objs.items() if (o.get("status") or {}).get("phase") == "Ready"}
    return objs if set(objs) == wanted and ready == wanted else None


def _in_registry(registry: RegistryProcess, base: Path, ref: str, image: Any) -> None:
    archive = base / f"{re.sub(r'[^a-z0-9]', '-', ref)}.tar"
    write_oci_archive(archive, {ref: image})
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{ref}"],
                   check=True, capture_output=True, timeout=60)


def _no_fights(nodes: dict[str, ImagesStack], quiet: float = 2.0) -> None:
    """Nothing is rewritten while nothing changes (no node undoing another's writes), and no operator met a
    conflict on an Image."""
    a = nodes[NODES[0]]
    before = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in a.image_objects()}
    time.sleep(quiet)
    after = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in a.image_objects()}
    assert before == after, "Image objects keep being rewritten"
    for name, stack in nodes.items():
        log = (stack.base / "operator.log").read_text(errors="replace")
        # 409 as a status, not as digits inside a port or an address
        assert not re.search(r"Conflict|Traceback|(?<![\d:.])409(?!\d)", log), f"{name}'s operator log:\n{log[-3000:]}"


def test_the_same_image_loaded_on_two_nodes_is_two_objects(nodes: dict[str, ImagesStack]) -> None:
    ref = "k3c.local/pernode/loaded:1"
    image = busybox_image(applets=["sh"])
    for stack in nodes.values():
        import_image(stack.socket, str(parse(ref)), image)  # as `k3c load` or a build puts it there
    a = nodes[NODES[0]]
    objs = a.wait(lambda: _ready_on(a, ref, set(NODES)), what="one Ready object per node")
    for node, obj in objs.items():
        assert obj["metadata"]["name"] == object_name(ref, node)
        assert obj["metadata"]["labels"][NODE_LABEL] == node
        assert obj["spec"]["nodeName"] == node and obj["status"]["node"] == node
        assert obj["status"]["id"] == image.id
    _no_fights(nodes)


def test_pull_per_node_images_shows_nodes_and_rmi_per_node(nodes: dict[str, ImagesStack],
                                                           registry: RegistryProcess, base: Path) -> None:
    ref = f"{registry.host}/k3c/pernode:1"
    image = sized_image(0.2, layers=2, seed="per-node")
    _in_registry(registry, base, ref, image)
    a, b = nodes[NODES[0]], nodes[NODES[1]]
    for node in NODES:
        out = a.k3c("pull", "--node", node, ref).stdout
        assert out.strip().endswith(str(parse(ref))), out
    objs = a.wait(lambda: _ready_on(a, ref, set(NODES)), what="pulled on both nodes")
    assert {o["metadata"]["name"] for o in objs.values()} == {object_name(ref, n) for n in NODES}
    for stack in (a, b):
        assert str(parse(ref)) in stack.containerd_images()

    listed = a.k3c("images").stdout.splitlines()
    assert listed[0].split()[-1] == "NODE", listed
    repo = parse(ref).familiar_repository
    assert sorted(line.split()[-1] for line in listed if line.startswith(repo)) == list(NODES)
    only_b = a.k3c("images", "--node", NODES[1]).stdout.splitlines()
    assert [line.split()[-1] for line in only_b if line.startswith(repo)] == [NODES[1]]
    _no_fights(nodes)

    a.k3c("rmi", "--node", NODES[1], ref)
    a.wait(lambda: set(_objects(a, ref)) == {NODES[0]}, what="node-b's object gone")
    assert str(parse(ref)) not in b.containerd_images()
    assert str(parse(ref)) in a.containerd_images()
    a.k3c("rmi", ref)
    a.wait(lambda: not _objects(a, ref), what="node-a's object gone")
    assert str(parse(ref)) not in a.containerd_images()


def test_an_unplaced_pull_is_claimed_by_one_node(nodes: dict[str, ImagesStack], registry: RegistryProcess,
                                                 base: Path) -> None:
    ref = f"{registry.host}/k3c/unplaced:1"
    _in_registry(registry, base, ref, sized_image(0.1, layers=1, seed="unplaced"))
    a = nodes[NODES[0]]
    a.k3c("pull", ref)
    objs = _objects(a, ref)
    assert len(objs) == 1, objs
    (node, obj), = objs.items()
    assert obj["metadata"]["name"] == object_name(ref) and node in NODES
    holders = [n for n, stack in nodes.items() if str(parse(ref)) in stack.containerd_images()]
    assert holders == [node]
    _no_fights(nodes)
    a.k3c("rmi", ref)
    a.wait(lambda: not _objects(a, ref), what="object gone")
    assert not any(str(parse(ref)) in stack.containerd_images() for stack in nodes.values())
