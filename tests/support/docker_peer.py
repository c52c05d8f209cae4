"""Images for the private dockerd 20.10 that e2e tests compare k3c's output with (bench/peers.DockerPeer).

The ``docker_peer`` fixture (tests/e2e/conftest.py) starts the peer; this module gives it the images the
test daemon has, built by the same k3c code, so both sides run the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from bench.peers import DockerPeer, docker_archive
from k3c.oci.layout import OCIImage, write_oci_archive


def load_image(peer: DockerPeer, workdir: Path, name: str, image: OCIImage) -> None:
    """``docker load`` of ``image`` tagged ``name`` (OCI archive → docker-archive with skopeo)."""
    stem = name.replace("/", "_").replace(":", "_")
    oci = workdir / f"{stem}.oci.tar"
    write_oci_archive(oci, {name: image})
    peer.load(docker_archive(oci, workdir / f"{stem}.docker.tar", name))
