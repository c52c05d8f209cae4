"""Images end to end: `k3c` and `kubectl` against the API server, the image operator, containerd and a real
registry (Debian's docker-registry with htpasswd auth on 127.0.0.1).

The stack (tests/support/images_harness.py) runs the API server with the save/load subresources, the CRDs
and the image handlers of the operator under kopf, as `k3c daemon` does; everything is started here and stopped by
PID. What is checked is what a user sees: exit codes, one-line errors, `k3c images`, `kubectl get images`,
and, as ground truth, containerd's own image list (read with `ctr`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from k3c.oci.layout import busybox_image, write_oci_archive
from k3c.oci.reference import object_name, parse
from tests.support.harness import oldest_and_newest_kubectl
from tests.support.images_harness import (
    ImagesStack,
    RegistryProcess,
    import_image,
    new_base,
    remove_base,
    sized_image,
)

pytestmark = [pytest.mark.containerd, pytest.mark.skipif(
    not all(shutil.which(b) for b in ("docker-registry", "htpasswd", "ctr", "skopeo")),
    reason="needs ctr, docker-registry, apache2-utils and skopeo",
)]

USER, PASSWORD = "k3c", "s3cret"
KUBECTLS = oldest_and_newest_kubectl()


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = new_base("k3cimg-")
    yield path
    remove_base(path)


@pytest.fixture(scope="module")
def registry(base: Path) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(base / "registry", users={USER: PASSWORD}).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def stack(base: Path, registry: RegistryProcess) -> Iterator[ImagesStack]:
    st = ImagesStack(base / "stack")
    try:
        st.start()
        st.k3c("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD + "\n")
        yield st
    finally:
        st.stop()


def _obj(stack: ImagesStack, ref: str) -> dict[str, Any] | None:
    want = str(parse(ref))
    for o in stack.image_objects():
        if o["spec"]["reference"] == want:
            return o
    return None


def _ready(stack: ImagesStack, ref: str) -> dict[str, Any] | None:
    o = _obj(stack, ref)
    return o if o is not None and (o.get("status") or {}).get("phase") == "Ready" else None


def _local(stack: ImagesStack, ref: str, image: Any) -> None:
    """An image made here, put into containerd behind k3c's back; waits for its object."""
    import_image(stack.socket, str(parse(ref)), image)
    stack.wait(lambda: _ready(stack, ref), what=f"object of {ref}")


# ------------------------------------------------------------------------------------------ round trips


def test_push_rmi_pull_gives_same_digest(stack: ImagesStack, registry: RegistryProcess) -> None:
    """The pushed digest is the one pulled back, with the same image ID. busybox_image's layer is
    uncompressed, so, as docker does, it is pushed gzipped, under a manifest digest of its own."""
    import re

    ref = f"{registry.host}/k3c/busybox:v1"
    image = busybox_image(applets=["sh", "echo", "true"])
    _local(stack, ref, image)
    push = stack.k3c("push", ref)
    pushed = re.search(r"^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$", push.stdout, re.M)
    assert pushed is not None and pushed[1] != image.target.digest, push.stdout
    digest = pushed[1]
    assert "Pushed" in push.stdout
    rmi = stack.k3c("rmi", ref)
    assert rmi.stdout.splitlines() == [f"Untagged: {ref}", f"Deleted: {image.id}"]
    assert str(parse(ref)) not in stack.containerd_images()
    assert image.id not in stack.containerd_images(), "the image is gone, not just its name"
    assert _obj(stack, ref) is None
    pull = stack.k3c("pull", ref)
    assert pull.stdout.splitlines()[-1] == str(parse(ref))
    assert f"Digest: {digest}" in pull.stdout and "Pull complete" in pull.stdout
    obj = _ready(stack, ref)
    assert obj is not None and obj["status"]["digest"] == digest and obj["status"]["id"] == image.id
    assert obj["metadata"]["name"] == object_name(ref)
    assert stack.containerd_images()[str(parse(ref))] == digest
    assert stack.k3c("pull", "-q", ref).stdout == str(parse(ref)) + "\n"


def test_tag_then_push_under_a_new_name(stack: ImagesStack, registry: RegistryProcess) -> None:
    src = f"{registry.host}/k3c/tagsrc:1"
    image = sized_image(0.4, layers=2, seed="tag-push")
    _local(stack, src, image)
    targets = [f"{registry.host}/other/renamed:2", "k3c.local/renamed:latest"]
    assert stack.k3c("tag", src, *targets).returncode == 0
    for t in targets:
        assert _ready(stack, t) is not None, "k3c tag returns once the objects exist"
        assert stack.containerd_images()[str(parse(t))] == image.target.digest
    assert not [o for o in stack.client().get("/apis/k3c.io/v1alpha1/imagetags")["items"]], "tag object cleaned up"
    out = stack.k3c("push", targets[0]).stdout
    assert f"digest: {image.target.digest}" in out
    inspect = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                              f"docker://{targets[0]}"], capture_output=True, text=True, check=True)
    assert json.loads(inspect.stdout) == json.loads(image.blobs[image.target.digest])
    # a missing source is docker's error
    bad = stack.k3c("tag", "nothing-here:1", "x:1", check=False)
    assert (bad.returncode, bad.stderr) == (1, "Error response from daemon: No such image: nothing-here:1\n")


def test_imagetag_with_push_by_kubectl(stack: ImagesStack, registry: RegistryProcess, tmp_path: Path) -> None:
    kubectl = KUBECTLS[-1] if KUBECTLS else pytest.skip("no kubectl")
    src = f"{registry.host}/k3c/applied:1"
    image = sized_image(0.2, layers=1, seed="applied")
    _local(stack, src, image)
    manifest = tmp_path / "tag.yaml"
    manifest.write_text(f"""apiVersion: k3c.io/v1alpha1
kind: ImageTag
metadata: {{name: release}}
spec:
  source: {src}
  targets: ["{registry.host}/k3c/applied:release"]
  push: true
""")
    stack.kubectl(kubectl, "apply", "-f", str(manifest))
    stack.kubectl(kubectl, "wait", "--for=condition=Ready", "imagetag/release", "--timeout=60s")
    tag = stack.client().get("/apis/k3c.io/v1alpha1/imagetags/release")
    assert tag["status"]["targets"][0]["pushedDigest"] == image.target.digest
    printed = stack.kubectl(kubectl, "get", "imagetags").stdout
    assert "release" in printed and "(pushed 1/1)" in printed
    stack.kubectl(kubectl, "delete", "imagetag", "release")
    stack.wait(lambda: not stack.client().get("/apis/k3c.io/v1alpha1/imagepushes")["items"], what="child pushes gone")


# ------------------------------------------------------------------------------------------ listing / deleting


def _k3c_rows(stack: ImagesStack) -> set[tuple[str, str, str]]:
    out = stack.k3c("images", "--no-trunc", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").stdout
    return {tuple(line.split()) for line in out.splitlines()}  # type: ignore[misc]


@pytest.mark.parametrize("kubectl", KUBECTLS or [None])
def test_kubectl_get_images_lists_what_k3c_images_lists(stack: ImagesStack, kubectl: str | None) -> None:
    if kubectl is None:
        pytest.skip("no kubectl")
    _local(stack, "k3c.local/listed:a", sized_image(0.1, layers=1, seed="listed"))
    out = stack.kubectl(kubectl, "get", "images", "--no-headers", "-o",
                        "custom-columns=R:.status.repository,T:.status.tag,I:.status.id").stdout
    from_kubectl = {tuple(line.split()) for line in out.splitlines() if line.strip()}
    assert from_kubectl - {r for r in from_kubectl if r[0] == "k3c.io/pause"} == _k3c_rows(stack)
    table = stack.kubectl(kubectl, "get", "images").stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert any("k3c.local/listed" in line and " a " in line for line in table)
    wide = stack.kubectl(kubectl, "get", "images", "-o", "wide").stdout.splitlines()[0]
    assert "DIGEST" in wide


def test_kubectl_delete_image_removes_it(stack: ImagesStack) -> None:
    kubectl = KUBECTLS[0] if KUBECTLS else pytest.skip("no kubectl")
    ref = "k3c.local/doomed:v1"
    image = sized_image(0.1, layers=1, seed="doomed")
    _local(stack, ref, image)
    stack.kubectl(kubectl, "delete", "image", object_name(ref))
    assert _obj(stack, ref) is None
    names = stack.containerd_images()
    assert str(parse(ref)) not in names and image.id not in names


def test_image_removed_behind_k3cs_back_loses_its_object(stack: ImagesStack) -> None:
    ref = "k3c.local/vanishing:v1"
    _local(stack, ref, sized_image(0.1, layers=1, seed="vanishing"))
    stack.ctr("images", "rm", str(parse(ref)))
    stack.wait(lambda: _obj(stack, ref) is None, what="object deleted after ctr images rm")


def test_rmi_refused_while_a_container_uses_the_image(stack: ImagesStack) -> None:
    kubectl = KUBECTLS[0] if KUBECTLS else pytest.skip("no kubectl")
    ref = "k3c.local/inuse:v1"
    _local(stack, ref, sized_image(0.1, layers=1, seed="inuse"))
    client = stack.client()
    path = "/apis/k3c.io/v1alpha1/namespaces/default/localcontainers"
    user = client.create(path, {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": "user"},
                                "spec": {"image": "k3c.local/inuse:v1"}})
    docker_id = hashlib.sha256(user["metadata"]["uid"].encode()).hexdigest()[:12]  # docker's ID, even unstarted
    try:
        refused = stack.k3c("rmi", ref, check=False)
        assert refused.returncode == 1 and "conflict: unable to remove repository reference" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        # the DELETE itself is refused (409, through the operator's admission webhook): nothing is left Terminating
        cp = stack.kubectl(kubectl, "delete", "image", object_name(ref), "--wait=false", check=False)
        assert cp.returncode == 1 and "Error from server (Conflict)" in cp.stderr, cp.stderr
        assert (f'conflict: unable to remove repository reference "{ref}" (must force) - container {docker_id} '
                "is using its referenced image") in cp.stderr
        obj = _obj(stack, ref)
        assert obj is not None and not obj["metadata"].get("deletionTimestamp")
        assert str(parse(ref)) in stack.containerd_images()
    finally:
        client.delete(f"{path}/user")
    stack.kubectl(kubectl, "delete", "image", object_name(ref), "--wait=false")
    stack.wait(lambda: _obj(stack, ref) is None, timeout=15, what="deletion completes once the container is gone")
    assert str(parse(ref)) not in stack.containerd_images()
    # with -f the image goes despite a user
    _local(stack, ref, sized_image(0.1, layers=1, seed="inuse"))
    client.create(path, {"apiVersion": "k3c.io/v1alpha1", "kind": "LocalContainer", "metadata": {"name": "user2"},
                         "spec": {"image": ref}})
    try:
        assert "Untagged: k3c.local/inuse:v1" in stack.k3c("rmi", "-f", ref).stdout
        assert str(parse(ref)) not in stack.containerd_images()
    finally:
        client.delete(f"{path}/user2")


def test_image_prune_removes_dangling_images(stack: ImagesStack) -> None:
    image = sized_image(0.1, layers=1, seed="dangling")
    digest_ref = f"k3c.local/dangling@{image.target.digest}"
    _local(stack, digest_ref, image)
    assert (_obj(stack, digest_ref) or {})["status"]["tag"] == "<none>"
    out = stack.k3c("image", "prune", "-f").stdout
    assert f"untagged: {digest_ref}" in out and "Total reclaimed space:" in out
    assert _obj(stack, digest_ref) is None


# ------------------------------------------------------------------------------------------ archives


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_rmi_load_round_trip(stack: ImagesStack, base: Path, fmt: str) -> None:
    ref = f"k3c.local/saved-{fmt}:v1"
    image = sized_image(2.5, layers=2, seed=f"saved-{fmt}")
    _local(stack, ref, image)
    out = base / f"saved-{fmt}.tar"
    stack.k3c("save", "--format", fmt, "-o", str(out), ref)
    assert out.stat().st_size > 2_500_000 and not list(base.glob("*.tmp"))
    stack.k3c("rmi", ref)
    assert _obj(stack, ref) is None
    loaded = stack.k3c("load", "-i", str(out))
    assert loaded.stdout == f"Loaded image: {ref}\n"
    obj = _ready(stack, ref)
    assert obj is not None and obj["status"]["id"] == image.id
    if fmt == "oci-archive":
        assert obj["status"]["digest"] == image.target.digest


def test_load_accepts_docker_archives_from_skopeo(stack: ImagesStack, base: Path) -> None:
    image = sized_image(0.5, layers=2, seed="skopeo-cli")
    src, dst = base / "skopeo-oci.tar", base / "skopeo-docker.tar"
    write_oci_archive(src, {"docker.io/library/fromskopeo:v3": image})
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{src}", f"docker-archive:{dst}:fromskopeo:v3"], check=True)
    with open(dst, "rb") as f:  # from stdin, like `docker load < file`
        cp = stack.k3c("load", input=f.read())
    assert cp.stdout == b"Loaded image: fromskopeo:v3\n"
    assert (_ready(stack, "fromskopeo:v3") or {})["status"]["id"] == image.id


def test_broken_archive_is_one_clear_line_and_leaves_nothing(stack: ImagesStack, base: Path) -> None:
    image = sized_image(2.5, layers=1, seed="half")
    src = base / "half.tar"
    write_oci_archive(src, {"k3c.local/half:v1": image})
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    before = stack.containerd_images()
    cp = stack.k3c("load", "-i", str(src), check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("Error response from daemon: invalid archive")
    assert len(cp.stderr.splitlines()) == 1
    assert stack.containerd_images() == before
    assert stack.ctr("content", "active").stdout.splitlines()[1:] == []
    missing = stack.k3c("save", "-o", str(base / "never.tar"), "k3c.local/absent:v1", check=False)
    assert missing.returncode == 1 and not (base / "never.tar").exists()


def _crafted(members: list[tuple[tarfile.TarInfo, bytes]], compress: bool = False) -> bytes:
    """A tar of the given headers and data (each header's size set from its data unless it says otherwise)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.size == 0:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), 1) if compress else buf.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _huge_pax_header() -> bytes:
    """One PAX header of 2 MiB (a single ``comment`` record), then a file: gzip makes it a few KiB."""
    value = "x" * (2 << 20)
    record = f" comment={value}\n"
    length = len(record) + len(str(len(record)))
    length += len(str(length)) - len(str(len(record)))
    payload = f"{length}{record}".encode()
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(payload)
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + payload + b"\0" * (-len(payload) % 512)
    raw += _crafted([(_file("manifest.json"), b"[]")])
    return gzip.compress(raw, 1)


def _gzip_bomb() -> bytes:
    """A gzip'd tar whose one member is 600 MiB of zeros: about 600 KiB on the wire."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    size = 600 << 20
    info = _file("layer.tar")
    info.size = size
    parts = [z.compress(info.tobuf(format=tarfile.PAX_FORMAT))]
    zeros = bytes(1 << 20)
    parts += [z.compress(zeros) for _ in range(size >> 20)]
    parts += [z.compress(bytes(1024)), z.flush()]
    return b"".join(parts)


HOSTILE_ARCHIVES: dict[str, tuple[Callable[[], bytes], str]] = {
    "huge PAX header": (_huge_pax_header, "tar header of 2097169 bytes (more than 1048576)"),
    "huge manifest.json": (lambda: _crafted([(_file("manifest.json"), b"[" + b" " * (5 << 20) + b"]")], True),
                           "manifest.json is larger than 4 MiB"),
    "gzip bomb": (_gzip_bomb, "inflates to more than 100 times"),
    "manifest.json of numbers": (lambda: _crafted([(_file("manifest.json"), b"[1, 2]")]),
                                 "manifest.json is not a list of images"),
    "config not JSON": (lambda: _crafted([(_file("c.json"), b"{nope"), (_file("manifest.json"),
                                          b'[{"Config": "c.json", "Layers": []}]')]), "config c.json is not JSON"),
    "index of a bad descriptor": (lambda: _crafted([(_file("index.json"), b'{"manifests": [{"digest": 5}]}'),
                                                    (_file("oci-layout"), b'{"imageLayoutVersion": "1.0.0"}')]),
                                  "index.json: invalid descriptor"),
}


@pytest.mark.parametrize("case", list(HOSTILE_ARCHIVES))
def test_hostile_archive_is_one_clear_line_and_leaves_nothing(stack: ImagesStack, base: Path, case: str) -> None:
    """Headers and metadata are capped, gzip is bounded, malformed metadata is named: a 400 in one line,
    and no image, ingest, lease or blob stays behind."""
    make, message = HOSTILE_ARCHIVES[case]
    src = base / "hostile.tar"
    src.write_bytes(make())
    images, content = stack.containerd_images(), set(stack.ctr("content", "ls", "-q").stdout.split())
    leases = stack.ctr("leases", "ls", "-q").stdout.split()
    cp = stack.k3c("load", "-i", str(src), check=False)
    assert cp.returncode == 1, cp
    assert cp.stderr.startswith("Error response from daemon: invalid archive: ") and message in cp.stderr, cp.stderr
    assert len(cp.stderr.splitlines()) == 1
    assert stack.containerd_images() == images
    assert stack.ctr("content", "active").stdout.splitlines()[1:] == []
    assert set(stack.ctr("content", "ls", "-q").stdout.split()) <= content, "blobs of the failed load stayed"
    assert stack.ctr("leases", "ls", "-q").stdout.split() == leases


# ------------------------------------------------------------------------------------------ behind k3c's back


def test_ctr_import_appears_as_object_within_a_second(stack: ImagesStack, base: Path) -> None:
    image = sized_image(0.2, layers=1, seed="ctr-import")
    archive = base / "ctr-import.tar"
    write_oci_archive(archive, {"docker.io/library/imported:ctr": image})
    stack.ctr("images", "import", str(archive))
    start = time.monotonic()
    obj = stack.wait(lambda: _ready(stack, "imported:ctr"), timeout=5, what="object for ctr-imported image")
    assert time.monotonic() - start < 1.0
    assert obj["status"]["id"] == image.id and obj["status"]["repository"] == "imported"


# ------------------------------------------------------------------------------------------ failures


def test_login_with_wrong_password_fails_cleanly(stack: ImagesStack, registry: RegistryProcess) -> None:
    before = stack.client().get("/api/v1/namespaces/kube-system/secrets/k3c-registry-auth")["data"]
    cp = stack.k3c("login", "-u", USER, "--password-stdin", registry.host, input="wrong\n", check=False)
    assert cp.returncode == 1
    assert cp.stderr.splitlines() == [f"Error response from daemon: login attempt to {registry.host} failed: "
                                      "unauthorized: authentication required"]
    after = stack.client().get("/api/v1/namespaces/kube-system/secrets/k3c-registry-auth")["data"]
    assert after == before, "the stored credentials are untouched"
    down = stack.k3c("login", "-u", "x", "--password-stdin", "127.0.0.1:1", input="y\n", check=False)
    assert down.returncode == 1 and "connection refused" in down.stderr and len(down.stderr.splitlines()) == 1


def test_logout_then_pull_is_refused_and_login_again(stack: ImagesStack, registry: RegistryProcess) -> None:
    assert stack.k3c("logout", registry.host).stdout == f"Removing login credentials for {registry.host}\n"
    assert stack.k3c("logout", registry.host).stdout == f"Not logged in to {registry.host}\n"
    try:
        cp = stack.k3c("pull", f"{registry.host}/k3c/busybox:v1", check=False)
        assert cp.returncode == 1 and "unauthorized" in cp.stderr and len(cp.stderr.splitlines()) == 1
    finally:
        stack.k3c("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD + "\n")


@pytest.mark.parametrize(("text", "message"), [
    ("Upper", "invalid reference format: repository name must be lowercase"),
    ("nowhere.invalid/x", "dial tcp: lookup nowhere.invalid: no such host"),
    ("k3c.local/nothing:here", "manifest for k3c.local/nothing:here not found"),
])
def test_pull_errors_are_one_line(stack: ImagesStack, registry: RegistryProcess, text: str, message: str) -> None:
    if text.startswith("k3c.local"):
        text = f"{registry.host}/nothing:here"
        message = f"manifest for {text} not found"
    cp = stack.k3c("pull", text, check=False)
    assert cp.returncode == 1 and message in cp.stderr and len(cp.stderr.splitlines()) == 1
    assert _obj(stack, text.lower()) is None


class BlobProxy:
    """An HTTP proxy to the registry that stops a large blob halfway: it ``stall``s until released, or
    ``cut``s the connection. Loopback, so containerd pulls through it over plain HTTP."""

    def __init__(self, upstream: str, mode: str) -> None:
        from tests.support.harness import free_port

        self.upstream = upstream
        self.mode = mode
        self.port = free_port()
        self.release = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()
        self.thread.start()
        self.started.wait(5)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.started.set()
        self.loop.run_forever()

    async def _handle(self, request: Any) -> Any:
        import aiohttp
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
                request.method, f"http://{self.upstream}{request.path_qs}", headers=headers,
                data=await request.read(), allow_redirects=False) as up:
            body_len = int(up.headers.get("Content-Length", "0"))
            resp = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items() if k.lower() not in ("transfer-encoding", "connection")})
            await resp.prepare(request)
            big = request.method == "GET" and "/blobs/" in request.path and (
                body_len > 1_000_000 or "Range" in request.headers)
            sent = 0
            async for chunk in up.content.iter_chunked(65536):
                if big and sent >= (body_len // 2 if self.mode == "stall" else min(body_len // 2, 200_000)):
                    if self.mode == "cut":
                        request.transport.close()
                        return resp
                    while not self.release.is_set():
                        await asyncio.sleep(0.05)
                    return resp
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp

    def stop(self) -> None:
        self.release.set()
        fut = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _pushed_big_image(stack: ImagesStack, registry: RegistryProcess, name: str) -> Any:
    image = sized_image(6, layers=2, seed=name)
    ref = f"{registry.host}/k3c/{name}:v1"
    _local(stack, ref, image)
    stack.k3c("push", "-q", ref)
    stack.k3c("rmi", ref)
    return image


def _downloading(stack: ImagesStack, ref: str) -> bool:
    o = _obj(stack, ref)
    layers = (((o or {}).get("status") or {}).get("pull") or {}).get("layers") or []
    return any(x["state"] == "Downloading" and x["current"] > 0 for x in layers)


def test_interrupted_pull_leaves_no_broken_image(stack: ImagesStack, registry: RegistryProcess) -> None:
    _pushed_big_image(stack, registry, "interrupted")
    proxy = BlobProxy(registry.host, "stall")
    stack.k3c("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD + "\n")
    ref = f"{proxy.host}/k3c/interrupted:v1"
    try:
        cli = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "pull", ref], env=stack.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        stack.wait(lambda: _downloading(stack, ref), timeout=30, what="per-layer progress of the pull")
        cli.send_signal(signal.SIGINT)  # Ctrl-C: the CLI withdraws its request, the operator cancels the pull
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 130, (out, err)
        stack.wait(lambda: _obj(stack, ref) is None, what="object of the cancelled pull gone")
        stack.wait(lambda: not stack.ctr("content", "active").stdout.splitlines()[1:], what="ingests aborted")
        assert str(parse(ref)) not in stack.containerd_images()
    finally:
        proxy.stop()


def test_cut_connections_are_resumed(stack: ImagesStack, registry: RegistryProcess) -> None:
    image = _pushed_big_image(stack, registry, "cut")
    proxy = BlobProxy(registry.host, "cut")  # every blob response dies after 200 kB
    stack.k3c("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD + "\n")
    ref = f"{proxy.host}/k3c/cut:v1"
    try:
        stack.k3c("pull", "-q", ref, timeout=120)
        assert (_ready(stack, ref) or {})["status"]["digest"] == image.target.digest
    finally:
        proxy.stop()
        stack.k3c("rmi", ref)


def test_registry_gone_mid_pull_fails_cleanly(stack: ImagesStack, registry: RegistryProcess) -> None:
    _pushed_big_image(stack, registry, "gone")
    proxy = BlobProxy(registry.host, "stall")
    stack.k3c("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD + "\n")
    ref = f"{proxy.host}/k3c/gone:v1"
    cli = subprocess.Popen([sys.executable, "-m", "k3c.cli.main", "pull", ref], env=stack.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stack.wait(lambda: _downloading(stack, ref), timeout=30, what="per-layer progress of the pull")
    finally:
        proxy.stop()  # the registry goes away: the transfer breaks and every retry is refused
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, (out, err)
    assert err.startswith("Error response from daemon:") and len(err.splitlines()) == 1
    assert _obj(stack, ref) is None
    assert str(parse(ref)) not in stack.containerd_images()
    stack.wait(lambda: not stack.ctr("content", "active").stdout.splitlines()[1:], what="ingests aborted")


def test_inspect_image(stack: ImagesStack, registry: RegistryProcess) -> None:
    from k3c.cli.images import inspect_image

    ref = "k3c.local/inspected:v1"
    image = sized_image(0.1, layers=1, seed="inspected")
    _local(stack, ref, image)
    doc = inspect_image(stack.client(), ref)
    assert doc is not None and doc["Id"] == image.id and doc["RepoTags"] == [ref]
    assert doc["Config"]["Cmd"] == ["sh"] and doc["RootFS"]["Layers"] == image.config["rootfs"]["diff_ids"]
    assert inspect_image(stack.client(), image.id[7:19])["Id"] == image.id  # type: ignore[index]
    assert inspect_image(stack.client(), "k3c.local/none:v1") is None
    out = stack.k3c("image", "inspect", "--format", "{{.Id}}", ref).stdout
    assert out == image.id + "\n"


def test_a_container_runs_from_a_pulled_image(stack: ImagesStack, registry: RegistryProcess) -> None:
    """k3c pull, then CRI runs the image (host network: no CNI needed) and its output is in the log."""
    from k3c.cri.runtime import CRIClient, pb
    from k3c.daemon.pause import ensure_pause_image

    ref = f"{registry.host}/k3c/runnable:v1"
    image = busybox_image(applets=["sh", "echo"])
    _local(stack, ref, image)
    stack.k3c("push", "-q", ref)
    stack.k3c("rmi", ref)
    stack.k3c("pull", "-q", ref)
    logs = stack.base / "pod-logs"
    logs.mkdir(exist_ok=True)

    async def run() -> str:
        await ensure_pause_image(stack.socket, stack.base / "pause")
        async with CRIClient(stack.socket, timeout=30) as cri:
            host_net = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE)))
            sc = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="pulled", uid="pulled-uid", namespace="t"),
                                     log_directory=str(logs), linux=host_net)
            sid = await cri.run_pod_sandbox(sc)
            try:
                cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=ref),
                                         command=["sh", "-c", "echo hello from the pulled image"], log_path="c.log")
                cid = await cri.create_container(sid, cfg, sc)
                await cri.start_container(cid)
                deadline = time.monotonic() + 20
                while (await cri.container_status(cid)).status.state != pb.CONTAINER_EXITED:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                return (logs / "c.log").read_text()
            finally:
                await cri.stop_pod_sandbox(sid)
                await cri.remove_pod_sandbox(sid)

    assert "hello from the pulled image" in asyncio.run(run())


def test_images_flags_and_formats(stack: ImagesStack) -> None:
    image = sized_image(0.1, layers=1, seed="flags")
    for ref in ("k3c.local/flags:a", "k3c.local/flags:b"):
        _local(stack, ref, image)
    short = image.id[7:19]
    table = stack.k3c("images", "k3c.local/flags").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [line.split()[:3] for line in table[1:]] == [["k3c.local/flags", "a", short], ["k3c.local/flags", "b", short]]
    assert stack.k3c("image", "ls", "k3c.local/flags").stdout.splitlines() == table
    assert short in stack.k3c("images", "-q").stdout.split()
    assert stack.k3c("images", "-q").stdout.split().count(short) == 1, "-q lists each image ID once"
    assert image.id in stack.k3c("images", "-q", "--no-trunc").stdout.split()
    digests = stack.k3c("images", "--digests", "k3c.local/flags:a").stdout.splitlines()
    assert "DIGEST" in digests[0] and image.target.digest in digests[1]
    rows = [json.loads(line) for line in stack.k3c("images", "--format", "{{json .}}", "k3c.local/flags").stdout.splitlines()]
    assert {r["Tag"] for r in rows} == {"a", "b"} and rows[0]["ID"] == short
    assert stack.k3c("images", "--format", "{{.Repository}}:{{.Tag}}", "k3c.local/flags:b").stdout == "k3c.local/flags:b\n"
    # an ID naming two tags needs -f, then both go and the image with them
    refused = stack.k3c("rmi", short, check=False)
    assert refused.returncode == 1 and "must be forced" in refused.stderr
    out = stack.k3c("rmi", "-f", short).stdout.splitlines()
    assert sorted(out[:2]) == ["Untagged: k3c.local/flags:a", "Untagged: k3c.local/flags:b"]
    assert out[2] == f"Deleted: {image.id}"
    missing = stack.k3c("rmi", "k3c.local/flags:a", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error: No such image: k3c.local/flags:a\n"), (
        missing.stdout, [o["metadata"] for o in stack.image_objects() if "flags" in o["spec"]["reference"]],
        stack.containerd_images(), (stack.base / "operator.log").read_text()[-3000:])


def test_tls_registry_with_the_ca_named_in_k3c_registries(stack: ImagesStack, base: Path) -> None:
    """The CA in kube-system/k3c-registries is used by login, by pushes and (hosts.toml) by CRI's pulls."""
    import yaml

    reg = RegistryProcess(base / "tls-registry", users={USER: PASSWORD}, tls=True).start()
    client = stack.client()
    cms = "/api/v1/namespaces/kube-system/configmaps"
    try:
        assert reg.ca is not None
        settings = {"configs": {reg.host: {"tls": {"ca": reg.ca.read_text()}}}}
        client.create(cms, {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "k3c-registries", "namespace": "kube-system"},
                            "data": {"registries.yaml": yaml.safe_dump(settings)}})
        stack.k3c("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
        ref = f"{reg.host}/secure/app:v1"
        image = sized_image(0.3, layers=1, seed="tls")
        _local(stack, ref, image)
        stack.k3c("push", "-q", ref)
        stack.k3c("rmi", ref)
        stack.k3c("pull", "-q", ref)
        assert (_ready(stack, ref) or {})["status"]["digest"] == image.target.digest
        hosts_toml = (stack.certs_dir / reg.host / "hosts.toml").read_text()
        assert f'server = "https://{reg.host}"' in hosts_toml and "ca = " in hosts_toml
    finally:
        client.delete(f"{cms}/k3c-registries")
        reg.stop()


def test_pull_by_digest(stack: ImagesStack, registry: RegistryProcess) -> None:
    ref = f"{registry.host}/k3c/bydigest:v1"
    image = sized_image(0.2, layers=1, seed="bydigest")
    _local(stack, ref, image)
    stack.k3c("push", "-q", ref)
    stack.k3c("rmi", ref)
    by_digest = f"{registry.host}/k3c/bydigest@{image.target.digest}"
    assert stack.k3c("pull", "-q", by_digest).stdout == by_digest + "\n"
    obj = _ready(stack, by_digest)
    assert obj is not None and obj["status"]["tag"] == "<none>" and obj["status"]["id"] == image.id
    assert "<none>" in stack.k3c("images", f"{registry.host}/k3c/bydigest").stdout
    stack.k3c("rmi", by_digest)
    assert _obj(stack, by_digest) is None
