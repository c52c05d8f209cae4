"""The sandbox ("pause") image, built on this machine: k3c never downloads it.

Every CRI pod sandbox starts one process that holds the pod's namespaces; containerd's ``sandbox_image``
must name an image that is already local, since no registry may be reachable. k3c compiles the few lines of
``pause.c`` (shipped beside this module) with ``gcc -static -Os -s``, packs the binary as a one-layer OCI
image (:mod:`k3c.oci.layout`, deterministic) and imports it into containerd's ``k8s.io`` namespace
through the Content/Images API (:mod:`k3c.cri.imagestore`), then waits until CRI reports it.

The compiled binary is cached under ``work_dir`` by a hash of the source and the compiler, so a restart
reuses it and re-importing an unchanged image is a no-op (same digests). ``init.c``, the init of
``k3c run --init``, is compiled the same way (:func:`compile_init`); the operator mounts that binary.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from k3c.oci.layout import HostFile, ImageConfig, OCIImage, build_image, build_layer
from k3c.pauseimage import PAUSE_IMAGE

__all__ = ["INIT_SOURCE", "PAUSE_SOURCE", "build_pause_image", "compile_init", "compile_pause", "ensure_pause_image"]

#: The C sources, shipped as package data.
PAUSE_SOURCE = Path(__file__).with_name("pause.c")
INIT_SOURCE = Path(__file__).with_name("init.c")


def compile_init(work_dir: str | os.PathLike[str], *, cc: str = "gcc") -> Path:
    """Compile ``init.c`` (``k3c run --init``) statically into ``work_dir``, cached as the pause binary is."""
    return compile_pause(work_dir, cc=cc, source=INIT_SOURCE, name="init")


def compile_pause(work_dir: str | os.PathLike[str], *, cc: str = "gcc", source: Path = PAUSE_SOURCE,
                  name: str = "pause") -> Path:
    """Compile ``pause.c`` statically into ``work_dir`` (cached by source+compiler hash); returns the binary."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cc_path = shutil.which(cc)
    if cc_path is None:
        raise FileNotFoundError(
            f"C compiler {cc!r} not found: needed to build the pause image (apt-get install gcc libc6-dev)"
        )
    key = hashlib.sha256(source.read_bytes() + b"\0" + os.fsencode(os.path.realpath(cc_path))).hexdigest()[
        :16
    ]
    out = work / f"{name}-{key}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp_out = Path(tmp) / "pause"
        # cwd=tmp so nothing path-dependent leaks into the (stripped) binary.
        proc = subprocess.run(
            [cc_path, "-static", "-Os", "-s", "-Wall", "-o", str(tmp_out), str(source.resolve())],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{proc.stderr}")
        os.replace(tmp_out, out)
    return out


def build_pause_image(work_dir: str | os.PathLike[str], *, cc: str = "gcc") -> OCIImage:
    """Compile (or reuse) the pause binary and pack it as image ``/pause`` with entrypoint ``/pause``."""
    binary = compile_pause(work_dir, cc=cc)
    layer = build_layer({"pause": HostFile(binary, 0o755)})
    return build_image([layer], ImageConfig(env=[], entrypoint=["/pause"], user="0:0", stop_signal="SIGTERM"))


async def ensure_pause_image(
    address: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    name: str = PAUSE_IMAGE,
    timeout: float = 10.0,
) -> str:
    """Make ``name`` a local image CRI can run as sandbox, building and importing it if needed.

    Returns the image id (config digest). Waits until CRI's ImageStatus shows the image: CRI learns of
    imports from containerd's event stream, asynchronously, and a RunPodSandbox before that would try to
    *pull* the sandbox image.
    """
    # Imported lazily: k3c.cri.* imports grpc, which the pure image-building helpers above do not need.
    from k3c.cri.imagestore import ContainerdImages
    from k3c.cri.restarts import while_unavailable
    from k3c.cri.runtime import CRIClient, wait_for_image

    image = await asyncio.to_thread(build_pause_image, work_dir)
    async with CRIClient(address) as cri, ContainerdImages(address) as store:
        # (a containerd just started on a loaded machine can be slow to take its first connection)
        current = await while_unavailable(lambda: cri.image_status(name), timeout)
        if current is not None and current.id == image.id:
            return image.id
        await store.import_image(name, image)
        return await wait_for_image(cri, name, image.id, timeout)
