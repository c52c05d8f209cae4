"""ImageBuild end to end: real builds from images made locally, results read from containerd.

Every test runs against both engines: the native one (the default: containerd snapshots + runc) and
buildah (the operator's ``--build-engine buildah``, also the native engine's fallback). One private stack per engine
(tests/support/build_harness.py): containerd, the API server with ImageBuild's ``log``/``context`` subresources,
and the ImageBuild operator, in a temporary directory, stopped by PID. The teardown fails the module if
a build container, a snapshot, a mount, a process or a temporary directory was left behind.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from k3c.oci.layout import busybox_image
from k3c.oci.reference import normalize
from tests.support.build_harness import BUSYBOX, BuildStack, wait_until
from tests.support.git_http import GitHTTPServer, commit_all

pytestmark = [pytest.mark.containerd,
              pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]

MULTI_STAGE = """\
FROM busybox AS build
ARG VERSION=0
RUN mkdir /out && echo "version=$VERSION" > /out/version && echo built > /out/artifact
FROM busybox AS test
RUN echo tested > /tested
FROM busybox
COPY --from=build /out/ /app/
CMD ["cat", "/app/version"]
"""


@pytest.fixture(scope="module", params=["native", "buildah"])
def stack(request: pytest.FixtureRequest) -> Iterator[BuildStack]:
    if request.param == "buildah" and shutil.which("buildah") is None:
        pytest.skip("buildah not installed")
    st = BuildStack(Path(tempfile.mkdtemp(prefix="k3c-build-", dir="/tmp")), engine=request.param)
    try:
        st.start()
        st.import_image(BUSYBOX, busybox_image())
    except BaseException:
        st.close()
        raise
    yield st
    work = st.root / "builds" / "work"
    tmp = st.builder_root / "tmp"
    # buildah-cache: buildah's store for RUN --mount=type=cache, kept between builds on purpose
    left = [str(p) for d in (work, tmp) if d.exists() for p in d.iterdir() if p.name != "buildah-cache"]
    problems = st.close()
    assert not problems, f"the build stack left: {problems}"
    assert not left, f"temporary build directories left: {left}"


def make_context(base: Path, files: dict[str, str]) -> Path:
    ctx = base / f"ctx-{uuid.uuid4().hex[:8]}"
    for rel, text in files.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    ctx.mkdir(exist_ok=True)
    return ctx


def built(stack: BuildStack, cp: subprocess.CompletedProcess[str]) -> str:
    assert cp.returncode == 0, f"k3c build failed ({cp.returncode}):\n{cp.stderr}\n--- operator:\n{stack.operator.tail() if stack.operator else ''}"
    image_id = cp.stdout.strip().splitlines()[-1]
    assert image_id.startswith("sha256:") and len(image_id) == 71
    return image_id


def build_named(stack: BuildStack, prefix: str) -> dict[str, Any]:
    api = stack.api()
    try:
        items = api.get(stack.build_path()).get("items", [])
    finally:
        api.close()
    mine = [o for o in items if any(normalize(t).startswith(prefix) for t in (o.get("spec") or {}).get("tags") or [])]
    assert mine, f"no ImageBuild with a tag {prefix}*"
    return max(mine, key=lambda o: o["metadata"]["creationTimestamp"] + o["metadata"]["resourceVersion"].zfill(12))


# ------------------------------------------------------------------------------------------ builds


def test_multi_stage_with_copy_from_and_build_arg(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": MULTI_STAGE})
    image_id = built(stack, stack.k3c("build", "-t", "multi:1", "--build-arg", "VERSION=42", str(ctx)))
    manifest, config, files = stack.image("docker.io/library/multi:1")
    assert manifest["config"]["digest"] == image_id
    assert files["app/version"] == b"version=42\n" and files["app/artifact"] == b"built\n"
    assert "tested" not in files, "a stage the target does not need is not in the image"
    status = build_named(stack, "docker.io/library/multi:1")["status"]
    assert status["phase"] == "Succeeded" and status["imageID"] == image_id
    assert status["conditions"][0]["type"] == "Succeeded" and status["conditions"][0]["status"] == "True"
    assert status["imageDigest"].startswith("sha256:") and status["imageSize"] > 1_000_000
    assert status["startTime"] <= status["completionTime"]
    assert status["stepsDone"] == len(status["steps"]) == 6, "the unused stage `test` is skipped"
    assert not any(step.startswith("[2/3]") for step in status["steps"])


def test_target_stops_at_the_stage(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": MULTI_STAGE})
    built(stack, stack.k3c("build", "-q", "-t", "multi:test", "--target", "test", str(ctx)))
    _, _, files = stack.image("docker.io/library/multi:test")
    assert files["tested"] == b"tested\n" and "app/version" not in files


def test_from_an_image_k3c_built_needs_no_registry(stack: BuildStack, tmp_path: Path) -> None:
    base = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo layer-one > /one\n"})
    built(stack, stack.k3c("build", "-q", "-t", "k3c.test/base:1", str(base)))
    child = make_context(tmp_path, {"Dockerfile": "FROM k3c.test/base:1\nRUN cat /one > /two\n"})
    cp = stack.k3c("build", "--progress", "plain", "-t", "k3c.test/child:1", str(child))
    built(stack, cp)
    if stack.engine == "buildah":  # the native engine reads containerd's snapshots directly
        assert "loading k3c.test/base:1 from containerd" in cp.stderr
    assert stack.image("k3c.test/child:1")[2]["two"] == b"layer-one\n"


def test_config_reaches_the_image(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
ENV GREETING=hello PATH=/usr/local/bin:/bin
WORKDIR /srv/app
USER nobody
EXPOSE 8080/tcp 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $GREETING"]
LABEL org.example.team=builders
"""})
    built(stack, stack.k3c("build", "-t", "example.com/cfg:v1", "--label", "from.cli=yes", str(ctx)))
    _, config, _ = stack.image("example.com/cfg:v1")
    c = config["config"]
    assert "GREETING=hello" in c["Env"] and "PATH=/usr/local/bin:/bin" in c["Env"]
    assert c["WorkingDir"] == "/srv/app" and c["User"] == "nobody"
    assert set(c["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["echo $GREETING"]
    assert c["Labels"]["org.example.team"] == "builders" and c["Labels"]["from.cli"] == "yes"


DOCKERIGNORE_FILES = {
    "Dockerfile": "FROM busybox\nCOPY . /src/\n",
    ".dockerignore": "# docker semantics\n*.log\n!keep.log\n**/*.tmp\nbuild\n!build/keep.txt\nsecret*\nDockerfile\n",
    "main.c": "int main;", "debug.log": "x", "keep.log": "k", "sub/nested.log": "n", "sub/scratch.tmp": "t",
    "deep/a/b/c.tmp": "t", "build/out.o": "o", "build/keep.txt": "kept", "secret.key": "s", "sub/code.c": "c",
}


def _src_files(files: dict[str, bytes]) -> set[str]:
    return {p[len("src/"):].rstrip("/") for p in files if p.startswith("src/") and not p.endswith("/")}


def test_dockerignore_excludes_files_in_dir_and_upload_contexts(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, DOCKERIGNORE_FILES)
    built(stack, stack.k3c("build", "-q", "-t", "ign:dir", str(ctx)))
    built(stack, stack.k3c("build", "-q", "-t", "ign:upload", "--upload", str(ctx)))
    expected = {".dockerignore", "main.c", "keep.log", "sub/nested.log", "sub/code.c", "build/keep.txt"}
    dir_files = _src_files(stack.image("docker.io/library/ign:dir")[2])
    upload_files = _src_files(stack.image("docker.io/library/ign:upload")[2])
    assert dir_files == expected, "the engine's .dockerignore handling of a dir context"
    assert upload_files == expected, "k3c's own matcher building the uploaded tar"
    upload = build_named(stack, "docker.io/library/ign:upload")
    assert "upload" in upload["spec"]["context"]
    assert not (stack.root / "builds" / "uploads" / "default" / upload["metadata"]["name"]).exists(), \
        "the upload is removed once its build is over"


def test_hostile_dockerignore_builds_promptly_and_the_operator_stays_responsive(stack: BuildStack,
                                                                              tmp_path: Path) -> None:
    """Issue 10: eleven ``**/`` and one 24-level path kept a build matching for minutes with the operator's
    event loop frozen. Now the build is prompt, another build created meanwhile gets its status at once, and
    the CLI's upload (its own walk of the context) is prompt too."""
    deep = "/".join(["d"] * 24) + "/file"
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nCOPY . /src/\nRUN sleep 1\n",
                                  ".dockerignore": "**/" * 11 + "nomatch\n", deep: "deep"})
    other = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo other > /other\n"})
    with ThreadPoolExecutor(2) as pool:
        hostile = pool.submit(stack.k3c, "build", "-q", "-t", "redos:dir", str(ctx), timeout=120)
        wait_until(lambda: (o := _build_tagged(stack, "docker.io/library/redos:dir")) and o.get("status"), 30,
                   "the hostile build to start")
        time.sleep(3)  # (the old matcher was deep in the 24 levels by now, the GIL held for minutes at a time)
        second = pool.submit(stack.k3c, "build", "-q", "-t", "redos:other", str(other), timeout=120)
        wait_until(lambda: (o := _build_tagged(stack, "docker.io/library/redos:other")) and o.get("status"), 15,
                   "the operator to write another build's status while the hostile one runs")
        built(stack, hostile.result())
        built(stack, second.result())
    assert stack.image("docker.io/library/redos:dir")[2]["src/" + deep] == b"deep"
    start = time.monotonic()
    built(stack, stack.k3c("build", "-q", "--upload", "-t", "redos:upload", str(ctx), timeout=60))
    assert time.monotonic() - start < 30, "the CLI's walk of the context is prompt"
    assert stack.image("docker.io/library/redos:upload")[2]["src/" + deep] == b"deep"


def _build_tagged(stack: BuildStack, tag: str) -> dict[str, Any] | None:
    api = stack.api()
    try:
        items = api.get(stack.build_path()).get("items", [])
    finally:
        api.close()
    return next((o for o in items if tag in [normalize(t) for t in (o.get("spec") or {}).get("tags") or []]), None)
def _files_near_uploads(root: Path) -> set[Path]:
    """Files in the directories a context upload could reach with ``..`` for a namespace and a name."""
    dirs = (root, root / "builds", root / "builds" / "uploads")
    return {p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file()}


def test_context_upload_names_must_be_dns_names(stack: BuildStack, tmp_path: Path) -> None:
    """A namespace that is no DNS label or a name that is no DNS subdomain (``..``, ``.``, upper case) is
    refused before the upload touches the disk: nothing lands outside ``builds/uploads/<ns>/<name>``."""
    import requests

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        data = b"FROM busybox\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    token = (stack.root / "tls" / "admin.token").read_text().strip()
    before = _files_near_uploads(stack.root)
    for ns, name in (("default", "%2E%2E"), ("%2E%2E", "%2E%2E"), ("%2E%2E", "x"), ("%2E", "x"),
                     ("default", "Bad_Name"), ("default", "%2E")):
        r = requests.post(f"https://127.0.0.1:{stack.port}/apis/k3c.io/v1alpha1/namespaces/{ns}/imagebuilds/{name}/"
                          "context", data=tar.getvalue(), timeout=30, verify=str(stack.root / "tls" / "ca.crt"),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"})
        assert r.status_code in (400, 404), (ns, name, r.status_code, r.text)
        assert r.json()["kind"] == "Status"
    assert _files_near_uploads(stack.root) == before
    assert sorted(p.name for p in (stack.root / "builds" / "uploads").iterdir()) in ([], ["default"])


def test_cached_rebuild_reuses_every_layer(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\n"
                                                "RUN cat /a.txt > /b\nENV X=1\n", "a.txt": "a"})
    first = stack.k3c("build", "--progress", "plain", "-t", "cache:1", str(ctx))
    id1 = built(stack, first)
    layers1 = [x["digest"] for x in stack.image("docker.io/library/cache:1")[0]["layers"]]
    second = stack.k3c("build", "--progress", "plain", "-t", "cache:1", str(ctx))
    id2 = built(stack, second)
    assert id1 == id2
    assert second.stderr.count("--> Using cache") == 4, second.stderr
    assert "nothing changed" in second.stderr, "an unchanged build is answered without running a step"
    assert [x["digest"] for x in stack.image("docker.io/library/cache:1")[0]["layers"]] == layers1
    assert "4 steps from cache" in build_named(stack, "docker.io/library/cache:1")["status"]["message"]
    (ctx / "a.txt").write_text("changed")
    third = stack.k3c("build", "--progress", "plain", "-t", "cache:1", str(ctx))
    assert built(stack, third) != id1
    assert third.stderr.count("--> Using cache") == 1, "only the step before the changed COPY is cached"
    layers3 = [x["digest"] for x in stack.image("docker.io/library/cache:1")[0]["layers"]]
    assert layers3[:2] == layers1[:2] and layers3[2:] != layers1[2:]
    other_arg = stack.k3c("build", "--progress", "plain", "--build-arg", "UNUSED=1", "-t", "cache:1", str(ctx))
    built(stack, other_arg)
    assert "nothing changed" not in other_arg.stderr and other_arg.stderr.count("--> Using cache") == 4
    no_cache = stack.k3c("build", "--progress", "plain", "--no-cache", "-t", "cache:1", str(ctx))
    built(stack, no_cache)
    assert "Using cache" not in no_cache.stderr


def _layer_members(stack: BuildStack, digest: str) -> dict[str, tarfile.TarInfo]:
    data = stack.containerd_call(lambda store: store.read(digest))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_layers_whiteouts_users_and_secrets(stack: BuildStack, tmp_path: Path) -> None:
    """What the native engine's layers hold: deletions as whiteouts, COPY --chown owners, RUN as USER with a
    secret mounted, and none of the mount points runc made for the RUN."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
RUN mkdir -p /data && echo old > /data/old && echo keep > /data/keep
RUN rm /bin/cat /data/old
COPY --chown=65534:65534 f.txt /home/app/
RUN --network=none ls /sys/class/net > /nets-none
RUN ls /sys/class/net > /nets-default && grep CapEff /proc/self/status > /capeff-default
RUN --network=host grep CapEff /proc/self/status > /capeff-host
USER nobody
WORKDIR /tmp/work
RUN --mount=type=secret,id=tok,uid=65534 id -u > uid && wc -c < /run/secrets/tok > toklen && pwd > cwd
""", "f.txt": "f"})
    token = tmp_path / "token"
    token.write_text("s3cret")
    built(stack, stack.k3c("build", "-q", "-t", "native:layers", "--allow", "network.host", "--secret",
                           f"id=tok,src={token}", str(ctx)))
    manifest, config, files = stack.image("docker.io/library/native:layers")
    assert "bin/cat" not in files and "bin/sh" in files, "RUN rm is a whiteout over the base layer"
    assert "data/old" not in files and files["data/keep"] == b"keep\n"
    assert files["home/app/f.txt"] == b"f"
    assert files["nets-none"] == b"lo\n", "RUN --network=none has only a loopback device"
    assert files["nets-default"] == b"eth0\nlo\n", "a RUN is on the build network, not the host's"
    default_caps = int(files["capeff-default"].split()[1], 16)
    host_caps = int(files["capeff-host"].split()[1], 16)
    assert default_caps & 1 and default_caps & (1 << 13), "Docker's defaults (CAP_NET_RAW) in its own netns"
    assert host_caps & 1 and not host_caps & (1 << 13) and not host_caps & (1 << 10), \
        "RUN --network=host has CAP_CHOWN but no CAP_NET_RAW/CAP_NET_BIND_SERVICE in the host's namespace"
    assert not (default_caps | host_caps) & (1 << 21), "and never CAP_SYS_ADMIN"
    assert files["tmp/work/uid"] == b"65534\n" and files["tmp/work/cwd"] == b"/tmp/work\n"
    assert files["tmp/work/toklen"].strip() == b"6"
    assert not any(p.startswith("run/") or p == "etc/resolv.conf" or p == "etc/hosts" for p in files), \
        "mount points runc created for the RUN are not in the image"
    assert all(layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar" for layer in manifest["layers"])
    copy_layer = _layer_members(stack, manifest["layers"][3]["digest"])
    assert (copy_layer["home/app/f.txt"].uid, copy_layer["home/app/f.txt"].gid) == (65534, 65534)
    assert b"s3cret" not in b"".join(files.values()), "the secret's value is in no layer"
    assert config["rootfs"]["diff_ids"][-1] == manifest["layers"][-1]["digest"], "uncompressed: diff ID = digest"


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_whole_build_cache_answers_a_layerless_image(stack: BuildStack, tmp_path: Path) -> None:
    """FROM scratch with config only (no layer, so no snapshot chain) is answered from the whole-build key."""
    ctx = make_context(tmp_path, {"Dockerfile": 'FROM scratch\nLABEL only=config\nCMD ["/app"]\n'})
    first = built(stack, stack.k3c("build", "-q", "-t", "layerless:1", str(ctx)))
    again = stack.k3c("build", "--progress", "plain", "-t", "layerless:1", str(ctx))
    assert built(stack, again) == first
    assert "nothing changed since the last build" in again.stderr, again.stderr


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_scratch_add_and_fallback_to_buildah(stack: BuildStack, tmp_path: Path) -> None:
    """FROM scratch with ADD of a local archive; and a Dockerfile the native engine does not handle
    (an ssh mount) goes to buildah unchanged."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg/hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    ctx = make_context(tmp_path, {"Dockerfile": "FROM scratch\nADD pkg.tgz /opt/\nCOPY plain.txt /\n",
                                  "plain.txt": "p"})
    (ctx / "pkg.tgz").write_bytes(buf.getvalue())
    built(stack, stack.k3c("build", "-q", "-t", "native:scratch", str(ctx)))
    manifest, _, files = stack.image("docker.io/library/native:scratch")
    assert files["opt/pkg/hello"] == b"hello" and files["plain.txt"] == b"p" and "bin/sh" not in files
    assert len(manifest["layers"]) == 2
    if shutil.which("buildah") is None:
        return
    other = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN --mount=type=ssh echo hi > /hi\n"})
    cp = stack.k3c("build", "--progress", "plain", "-t", "native:fallback", str(other))
    built(stack, cp)
    assert "is not supported; building with buildah" in cp.stderr
    assert stack.image("docker.io/library/native:fallback")[2]["hi"] == b"hi\n"


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_dockerfile_forms(stack: BuildStack, tmp_path: Path) -> None:
    """The forms people write: COPY --from an image, exec-form RUN, a numeric USER with no passwd entry,
    ADD of a plain file, variables in COPY destinations, relative WORKDIR/COPY, and a context symlink."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
ENV DEST=/opt/dest
WORKDIR /work
WORKDIR sub
COPY a.txt rel/
COPY a.txt $DEST/
COPY link.txt /link.txt
ADD plain.txt /added.txt
COPY --from=busybox /bin/busybox /from-image
RUN ["/bin/sh", "-c", "pwd > /pwd && echo exec > /exec"]
USER 4242:4243
RUN id -u > /tmp/uid && id -g >> /tmp/uid
""", "a.txt": "a", "plain.txt": "p"})
    os.symlink("a.txt", ctx / "link.txt")
    built(stack, stack.k3c("build", "-q", "-t", "native:forms", str(ctx)))
    _, config, files = stack.image("docker.io/library/native:forms")
    assert files["work/sub/rel/a.txt"] == b"a" and files["opt/dest/a.txt"] == b"a"
    assert files["link.txt"] == b"a", "a symlink named by COPY is followed (BuildKit's FollowSymlinks)"
    assert files["added.txt"] == b"p"
    assert files["from-image"] == files["bin/busybox"] and len(files["from-image"]) > 100_000
    assert files["pwd"] == b"/work/sub\n" and files["exec"] == b"exec\n"
    assert files["tmp/uid"] == b"4242\n4243\n"
    assert config["config"]["WorkingDir"] == "/work/sub" and config["config"]["User"] == "4242:4243"


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_cache_and_tmpfs_mounts(stack: BuildStack, tmp_path: Path) -> None:
    """RUN --mount=type=cache keeps its directory between builds (even with --no-cache) and out of the
    image; type=tmpfs is scratch space that leaves nothing behind."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
RUN --mount=type=cache,target=/var/cache/app,id=app-cache echo run >> /var/cache/app/log && \\
    wc -l < /var/cache/app/log > /count
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/f && ls /scratch > /tmpfs-list
"""})
    counts = []
    for _ in range(2):
        built(stack, stack.k3c("build", "-q", "--no-cache", "-t", "native:mounts", str(ctx)))
        _, _, files = stack.image("docker.io/library/native:mounts")
        counts.append(files["count"].strip())
    assert counts == [b"1", b"2"], "the cache mount's content outlives the build"
    assert not any(p.startswith(("var/cache/app", "scratch")) for p in files), "no mount leaves a trace"
    assert files["tmpfs-list"] == b"f\n"


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_heredocs(stack: BuildStack, tmp_path: Path) -> None:
    """Dockerfile 1.4 heredocs (which buildah 1.28 cannot build): a RUN script, a command fed by a heredoc,
    and COPY of heredocs as files, unquoted ones with variables expanded."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
ENV WHO=k3c
RUN <<EOF
echo one > /script
echo two >> /script
EOF
RUN cat <<'END' > /fed
literal $WHO
END
COPY <<greeting <<'raw' /etc/app/
hello $WHO
escaped \\$WHO "quoted" back\\slash
greeting
kept $WHO \\$WHO
raw
"""})
    cp = stack.k3c("build", "--progress", "plain", "-t", "native:heredoc", str(ctx))
    built(stack, cp)
    assert "STEP 3/5: RUN <<EOF" in cp.stderr
    files = stack.image("docker.io/library/native:heredoc")[2]
    assert files["script"] == b"one\ntwo\n" and files["fed"] == b"literal $WHO\n"
    assert files["etc/app/greeting"] == b'hello k3c\nescaped $WHO "quoted" backslash\n', \
        "BuildKit expands an unquoted heredoc as a word whose quotes stay and whose escapes go"
    assert files["etc/app/raw"] == b"kept $WHO \\$WHO\n"


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_bind_mounts(stack: BuildStack, tmp_path: Path) -> None:
    """RUN --mount=type=bind of the context (only what .dockerignore keeps), of a file, and of another
    stage; read-only unless rw, whose writes are thrown away; none of it in the image; and the step's
    cache follows the bound files."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox AS tools
RUN mkdir /tools && echo tool > /tools/t
FROM busybox
RUN --mount=type=bind,target=/ctx ls /ctx > /listing && cat /ctx/src/a > /a-copy
RUN --mount=type=bind,source=src/a,target=/one cat /one > /one-copy
RUN --mount=type=bind,from=tools,source=/tools,target=/t cat /t/t > /from-stage
RUN --mount=type=bind,target=/ctx (touch /ctx/x 2>/dev/null && echo writable || echo ro) > /ro-test
RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && echo ok > /rw-test
""", "src/a": "A", "secret.txt": "hidden", ".dockerignore": "secret.txt\n"})
    cp = stack.k3c("build", "--progress", "plain", "-t", "native:binds", str(ctx))
    built(stack, cp)
    files = stack.image("docker.io/library/native:binds")[2]
    assert files["listing"] == b"Dockerfile\nsrc\n", ".dockerignore'd files (secret.txt) are not in a context bind"
    assert files["a-copy"] == b"A" and files["one-copy"] == b"A" and files["from-stage"] == b"tool\n"
    assert files["ro-test"] == b"ro\n" and files["rw-test"] == b"ok\n"
    assert not (ctx / "new").exists() and not (ctx / "x").exists(), "the context itself is never written"
    assert not any(p in ("one", "ctx", "t") or p.startswith(("ctx/", "t/")) for p in files), "no mount point left"
    (ctx / "src" / "a").write_text("B")
    again = stack.k3c("build", "--progress", "plain", "-t", "native:binds", str(ctx))
    built(stack, again)
    assert stack.image("docker.io/library/native:binds")[2]["one-copy"] == b"B", "a changed bound file reruns"


#: What the loop device of :func:`host_device` holds: bytes no build may ever see.
DEVICE_MARKER = b"K3C-HOST-DEVICE-BYTES-"


@pytest.fixture
def host_device(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real block device of the host with known content (a loop device over a small file full of
    :data:`DEVICE_MARKER`): its (major, minor), for a Dockerfile to mknod."""
    backing = tmp_path / "disk.img"
    backing.write_bytes(DEVICE_MARKER * (65536 // len(DEVICE_MARKER) + 1))
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        rdev = os.stat(dev).st_rdev
        yield os.major(rdev), os.minor(rdev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _device_image(major: int, minor: int) -> Any:
    """busybox plus a layer with a block device of the host's numbers and a FIFO under /devs."""
    from k3c.oci.layout import MEDIA_LAYER, Layer, build_image, sha256_digest

    base = busybox_image()
    digest = base.manifest["layers"][0]["digest"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind in (("devs", tarfile.DIRTYPE), ("devs/disk", tarfile.BLKTYPE), ("devs/pipe", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.devmajor, info.devminor = kind, 0o755 if kind == tarfile.DIRTYPE else 0o666, major, minor
            tar.addfile(info)
        plain = tarfile.TarInfo("devs/plain")
        plain.size = 6
        tar.addfile(plain, io.BytesIO(b"plain\n"))
    raw = buf.getvalue()
    return build_image([Layer(base.blobs[digest], MEDIA_LAYER, digest, digest),
                        Layer(raw, MEDIA_LAYER, sha256_digest(raw), sha256_digest(raw))])


def _mounts_under(prefix: str) -> list[tuple[str, set[str]]]:
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    return [(r[4], set(r[5].split(","))) for r in rows if r[4].startswith(prefix)]


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_device_nodes_never_reach_a_run(stack: BuildStack, tmp_path: Path,
                                                host_device: tuple[int, int]) -> None:
    """Issue 10: a stage that mknods a host block device's numbers, then ``RUN --mount=type=bind,from=STAGE,rw``
    (a copy made by the operator) gave the next RUN the device's bytes. Devices and FIFOs are not copied,
    the operator's mounts are nodev (and nosuid where nothing runs from them), a lone device is refused, and
    a base image shipping a device node gets no further."""
    major, minor = host_device
    ctx = make_context(tmp_path, {"Dockerfile": f"""\
FROM busybox AS dev
RUN mkdir /devs && mknod /devs/disk b {major} {minor} && echo plain > /devs/plain && \\
    (head -c 64 /devs/disk > /devs/self-read 2>&1 || true)
FROM busybox
RUN --mount=type=bind,from=dev,source=/devs,target=/d,rw (ls /d; head -c 64 /d/disk) > /rw-read 2>&1 || true
RUN --mount=type=bind,from=dev,source=/devs,target=/d (head -c 64 /d/disk) > /ro-read 2>&1 || true
RUN --mount=type=bind,from=dev,source=/devs,target=/d sleep 2
COPY --from=dev /devs /copied
"""})
    seen: list[tuple[str, set[str]]] = []
    work = str(stack.builder_root / "native" / "work") + "/"
    with ThreadPoolExecutor(1) as pool:
        build = pool.submit(stack.k3c, "build", "-q", "-t", "devices:stage", str(ctx))
        while not build.done():
            seen += _mounts_under(work)
            time.sleep(0.05)
        built(stack, build.result())
    manifest, _, files = stack.image("docker.io/library/devices:stage")
    leaked = [path for path, data in files.items() if DEVICE_MARKER in data]
    assert not leaked, f"the host device's bytes reached {leaked}"
    assert files["rw-read"].split(b"\n")[:3] == [b"plain", b"self-read", b"head: /d/disk: No such file or directory"], \
        "a rw copy holds no device node"
    assert files["ro-read"] and DEVICE_MARKER not in files["ro-read"]
    assert seen and all("nodev" in opts for _, opts in seen), seen
    assert all("nosuid" in opts for _, opts in seen if "ro" in opts), "read-only views: nodev,nosuid"

    lone = make_context(tmp_path, {"Dockerfile": f"""\
FROM busybox AS dev
RUN mknod /disk b {major} {minor}
FROM busybox
RUN --mount=type=bind,from=dev,source=/disk,target=/one,rw head -c 64 /one
"""})
    refused = stack.k3c("build", "--progress", "plain", "-t", "devices:lone", str(lone))
    assert refused.returncode == 1 and DEVICE_MARKER.decode() not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "--mount from=dev: /disk is not a regular file, a directory or a symlink"), refused.stderr

    stack.import_image("k3c.test/devbase:1", _device_image(major, minor))
    based = make_context(tmp_path, {"Dockerfile": """\
FROM k3c.test/devbase:1 AS base
RUN (head -c 64 /devs/disk) > /from-base 2>&1 || true
FROM busybox
COPY --from=base /from-base /from-base
RUN --mount=type=bind,from=k3c.test/devbase:1,source=/devs,target=/d,rw (ls /d; head -c 64 /d/disk) > /rw-base 2>&1 || true
COPY --from=k3c.test/devbase:1 /devs /copied
"""})
    built(stack, stack.k3c("build", "-q", "-t", "devices:base", str(based)))
    manifest, _, files = stack.image("docker.io/library/devices:base")
    assert not [path for path, data in files.items() if DEVICE_MARKER in data]
    assert files["from-base"] and files["rw-base"].split() == [b"plain", b"head:", b"/d/disk:", b"No", b"such",
                                                                b"file", b"or", b"directory"], files["rw-base"]
    copied = _layer_members(stack, manifest["layers"][-1]["digest"])
    assert "copied/plain" in copied and not any(m.isblk() or m.ischr() or m.isfifo() for m in copied.values())


EUID_C = '#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf("%d\\n", (int)geteuid()); return 0; }\n'


@pytest.mark.parametrize("stack", ["native"], indirect=True)
def test_native_runs_are_confined_like_containers(stack: BuildStack, tmp_path: Path) -> None:
    """Issue 10: a RUN gets the seccomp profile containerd gives containers (RuntimeDefault: no user
    namespaces without CAP_SYS_ADMIN), devices denied as in containers, and a pids limit; new privileges
    stay allowed, so a setuid program run by USER nobody still gets euid 0 (sudo in Dockerfiles)."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox
COPY euid /usr/local/bin/euid
RUN chmod 4755 /usr/local/bin/euid && grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status > /status
RUN (unshare -U true && echo unshared || echo refused) > /userns 2>&1
USER nobody
RUN /usr/local/bin/euid > /tmp/euid-of-nobody
"""})
    subprocess.run(["gcc", "-static", "-Os", "-o", str(ctx / "euid"), "-x", "c", "-"], input=EUID_C.encode(),
                   check=True)
    built(stack, stack.k3c("build", "-q", "-t", "confined:1", str(ctx)))
    files = stack.image("docker.io/library/confined:1")[2]
    assert files["status"].split() == [b"NoNewPrivs:", b"0", b"Seccomp:", b"2"], files["status"]
    assert files["userns"].split(b"\n")[-2] == b"refused", files["userns"]
    assert files["tmp/euid-of-nobody"] == b"0\n", "setuid works: new privileges are allowed, the root is not nosuid"

    bomb = make_context(tmp_path, {"Dockerfile": "FROM busybox\n"
                                   "RUN i=0; while [ $i -lt 2200 ]; do sleep 120 & i=$((i+1)); done; wait\n"})
    start = time.monotonic()
    cp = stack.k3c("build", "--progress", "plain", "-t", "forks:1", str(bomb))
    assert cp.returncode == 1 and "can't fork" in cp.stderr, cp.stderr[-2000:]
    assert cp.stderr.strip().splitlines()[-1].endswith(": exit code 2"), cp.stderr[-2000:]
    assert time.monotonic() - start < 60
    assert stack.build_leftovers() == []


def test_builder_prune_drops_the_cache_but_not_images(stack: BuildStack, tmp_path: Path) -> None:
    """`k3c builder prune` (docker builder prune) through this node's BuildCache object: a declined prompt
    changes nothing; -f frees what only the cache held (a stage the image does not contain), the image
    stays, and the next build runs its steps again."""
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox AS scratchpad
RUN head -c 400000 /dev/urandom > /blob && echo done > /done
FROM busybox
COPY --from=scratchpad /done /done
RUN --mount=type=cache,target=/c echo x >> /c/log
"""})
    built(stack, stack.k3c("build", "-q", "-t", "prune:1", str(ctx)))
    api = stack.api()
    path = "/apis/k3c.io/v1alpha1/buildcaches/build-node"
    try:
        cache = wait_until(lambda: (o := api.get(path)) and (o.get("status") or {}).get("size", 0) > 400_000 and o,
                           15, "the BuildCache to count the build's layers")
        assert cache["status"]["node"] == "build-node" and cache["status"]["entries"] >= 1
        declined = stack.k3c("builder", "prune", input=b"n\n")
        assert declined.returncode == 0 and declined.stdout == (
            "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
            "Total reclaimed space: 0B\n"), "docker's one-line prompt, and its report of nothing freed"
        assert "pruneRequest" not in (api.get(path).get("spec") or {}), "a declined prune asks for nothing"
        cp = stack.k3c("builder", "prune", "-f")
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.startswith("Total reclaimed space: ") and cp.stdout.strip() != "Total reclaimed space: 0B"
        status = api.get(path)["status"]
        assert status["prunedRequest"] == api.get(path)["spec"]["pruneRequest"] and status["reclaimed"] > 400_000
        assert status["size"] < cache["status"]["size"]
    finally:
        api.close()
    assert stack.image("docker.io/library/prune:1")[2]["done"] == b"done\n", "images stay"
    again = stack.k3c("build", "--progress", "plain", "-t", "prune:1", str(ctx))
    built(stack, again)
    assert "Using cache" not in again.stderr


def _events_of(stack: BuildStack, obj: dict[str, Any]) -> list[dict[str, Any]]:
    api = stack.api()
    try:
        items = api.get("/api/v1/namespaces/default/events").get("items", [])
    finally:
        api.close()
    return [e for e in items if e["involvedObject"].get("uid") == obj["metadata"]["uid"]]


def test_failing_run_reports_step_and_exit_code(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo fine\nRUN echo broken >&2; exit 3\n"
                                                "RUN echo never\n"})
    cp = stack.k3c("build", "--progress", "plain", "-t", "fails:1", str(ctx))
    assert cp.returncode == 1, cp.stderr
    last = cp.stderr.strip().splitlines()[-1]
    assert last == 'k3c: build failed at step "STEP 3/4: RUN echo broken >&2; exit 3": exit code 3', cp.stderr
    assert "broken" in cp.stderr and "never" not in cp.stderr.replace("RUN echo never", "")
    assert "\nbuild failed: " not in cp.stderr, "the error is said once, by k3c's own last line"
    status = build_named(stack, "docker.io/library/fails:1")["status"]
    cond = status["conditions"][0]
    assert (status["phase"], cond["status"], cond["reason"]) == ("Failed", "False", "Failed")
    assert status["failedStep"] == "STEP 3/4: RUN echo broken >&2; exit 3" and status["exitCode"] == 3
    assert status["stepsDone"] == 2
    mine = wait_until(lambda: _events_of(stack, build_named(stack, "docker.io/library/fails:1")), 10,
                      "the build's Event (written just after its status)")
    assert [(e["type"], e["reason"]) for e in mine] == [("Warning", "BuildFailed")], "kubectl describe shows it"
    assert mine[0]["message"] == status["message"] and mine[0]["source"]["component"] == "k3c-builder"
    assert stack.image("docker.io/library/fails:1") is None
    assert stack.build_leftovers() == []
    quiet = stack.k3c("build", "-q", "-t", "fails:1", str(ctx))
    assert quiet.returncode == 1 and "broken" in quiet.stderr and quiet.stdout == ""


def test_network_flag_and_iidfile(stack: BuildStack, tmp_path: Path) -> None:
    """docker build --network sets the RUN steps' network (a step's own --network still wins, on the native
    engine), is part of the cache key, and --iidfile gets the image ID; a bad mode is one line and exit 1."""
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN ls /sys/class/net > /nets\n"})
    iid = tmp_path / "iid"
    iid.write_text("stale")
    image_id = built(stack, stack.k3c("build", "-q", "--rm", "--force-rm", "--network", "none", "--iidfile", str(iid), "-t", "net:none",
                                      str(ctx)))
    assert iid.read_text() == image_id, "the ID alone, no newline, as docker writes it"
    _, _, files = stack.image("docker.io/library/net:none")
    assert files["nets"] == b"lo\n", "--network=none: loopback only"
    again = stack.k3c("build", "--progress", "plain", "-t", "net:default", str(ctx))
    built(stack, again)
    _, _, files = stack.image("docker.io/library/net:default")
    assert files["nets"] != b"lo\n", again.stderr + "the none build's cached layer is not reused for another network"
    bad = stack.k3c("build", "--network", "bridge", "--iidfile", str(iid), str(ctx))
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        'k3c: network mode "bridge" not supported by k3c build (default, host, none)'], bad.stderr
    failing = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN exit 1\n"})
    iid.write_text("stale")
    assert stack.k3c("build", "-q", "--iidfile", str(iid), str(failing)).returncode == 1
    assert not iid.exists(), "a failed build leaves no iidfile"
    if stack.engine == "native":
        mixed = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN --network=default ls /sys/class/net > /n\n"})
        built(stack, stack.k3c("build", "-q", "--network", "none", "-t", "net:mixed", str(mixed)))
        _, _, files = stack.image("docker.io/library/net:mixed")
        assert files["n"] == b"eth0\nlo\n", "a step's own --network wins over the build's"


def test_host_network_needs_the_network_host_entitlement(stack: BuildStack, tmp_path: Path) -> None:
    """Issue 10: the host's network is BuildKit's ``network.host`` entitlement (``--allow network.host``,
    ``spec.allow``); without it the build fails with BuildKit's one line, even when an identical build is
    cached. ``--network host`` asks for it, as buildx does. Otherwise RUN steps are in the builder's sandbox,
    on both engines (buildah with runc, not chroot), and confined."""
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN ls /sys/class/net > /nets && "
                                                "grep -E '^Seccomp:' /proc/self/status > /status\n"})
    built(stack, stack.k3c("build", "-q", "-t", "ent:default", str(ctx)))
    files = stack.image("docker.io/library/ent:default")[2]
    assert files["nets"] == b"eth0\nlo\n", "the builder's sandbox, never the host's interfaces"
    assert files["status"].split() == [b"Seccomp:", b"2"]

    built(stack, stack.k3c("build", "-q", "--network", "host", "-t", "ent:host", str(ctx)))
    assert stack.containerd_config.bridge.encode() in stack.image("docker.io/library/ent:host")[2]["nets"]
    assert build_named(stack, "docker.io/library/ent:host")["spec"]["allow"] == ["network.host"]
    api = stack.api()
    try:  # the same build through the API without spec.allow: refused, although the result is cached
        api.create(stack.build_path(), {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild",
                                        "metadata": {"name": "ent-no-allow"},
                                        "spec": {"context": {"dir": str(ctx)}, "network": "host",
                                                 "tags": ["ent:refused"]}})
    finally:
        api.close()
    status = stack.wait_phase("ent-no-allow", ("Succeeded", "Failed"))["status"]
    assert (status["phase"], status["message"]) == ("Failed", "build failed: network.host is not allowed")
    assert stack.image("docker.io/library/ent:refused") is None

    for flag, line in (("network.hots", "k3c: invalid entitlement: network.hots"),
                       ("security.insecure", "k3c: entitlement security.insecure is not supported by k3c build")):
        bad = stack.k3c("build", "--allow", flag, str(ctx))
        assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [line], bad.stderr
    if stack.engine == "native":
        step = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN --network=host ls /sys/class/net > /n\n"})
        refused = stack.k3c("build", "-t", "ent:step", str(step))
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == "k3c: build failed: network.host is not allowed"
        built(stack, stack.k3c("build", "-q", "--allow", "network.host", "-t", "ent:step", str(step)))
        assert stack.containerd_config.bridge.encode() in stack.image("docker.io/library/ent:step")[2]["n"]


def test_without_a_build_sandbox_runs_fail_instead_of_using_the_hosts_network(stack: BuildStack,
                                                                              tmp_path: Path) -> None:
    """Issue 10: when the builder's sandbox cannot be made (here: no pause image, so CRI cannot make
    one), a RUN step fails with one line; it never falls back to the host's network namespace."""
    from k3c.daemon.pause import ensure_pause_image
    from k3c.pauseimage import PAUSE_IMAGE

    assert stack.operator is not None
    stack.operator.stop()  # (its build sandbox goes with it)
    stack.containerd_call(lambda store: store.delete(PAUSE_IMAGE, sync=True))
    try:
        stack.start_operator()
        ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN ls /sys/class/net > /nets\n"})
        cp = stack.k3c("build", "--no-cache", "-t", "nosandbox:1", str(ctx))
        assert cp.returncode == 1, cp.stderr
        assert "cannot make the build sandbox" in cp.stderr.strip().splitlines()[-1], cp.stderr
        assert stack.image("docker.io/library/nosandbox:1") is None
    finally:
        asyncio.run(ensure_pause_image(stack.socket, stack.base / "cache"))
    assert stack.sandboxes() == [], "no half-made sandbox is left"


def test_finished_builds_expire_after_their_ttl(stack: BuildStack, tmp_path: Path) -> None:
    """spec.ttlSecondsAfterFinished, as for Jobs: the object and its log go, the image stays; `k3c build`
    sets an hour so its builds do not pile up."""
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo ttl > /ttl\n"})
    built(stack, stack.k3c("build", "-q", "-t", "ttl:cli", str(ctx)))
    assert build_named(stack, "docker.io/library/ttl:cli")["spec"]["ttlSecondsAfterFinished"] == 3600
    api = stack.api()
    try:
        obj = api.create(stack.build_path(), {
            "apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "expires"},
            "spec": {"context": {"dir": str(ctx)}, "tags": ["ttl:1"], "ttlSecondsAfterFinished": 4}})
        done = stack.wait_phase("expires", ("Succeeded", "Failed"))
        assert done["status"]["phase"] == "Succeeded", done["status"]
        log = stack.root / "builds" / "logs" / f"{obj['metadata']['uid']}.log"
        assert log.exists() and stack.get_build("expires") is not None, "kept until its TTL has passed"
        events = wait_until(lambda: _events_of(stack, obj), 10, "the build's Event")
        assert [(e["type"], e["reason"]) for e in events] == [("Normal", "Built")]
        wait_until(lambda: stack.get_build("expires") is None, 20, "the finished build to expire")
        wait_until(lambda: not log.exists(), 10, "its log to go with it")
        assert stack.image("docker.io/library/ttl:1") is not None, "the image stays"
        with pytest.raises(Exception, match="422|Invalid|minimum"):
            api.create(stack.build_path(), {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild",
                                            "metadata": {"name": "negative"},
                                            "spec": {"context": {"dir": str(ctx)}, "ttlSecondsAfterFinished": -1}})
    finally:
        api.close()


def test_automatic_platform_args(stack: BuildStack, tmp_path: Path) -> None:
    """BuildKit's automatic ARGs (TARGETARCH, BUILDPLATFORM…), which multi-arch Dockerfiles rely on: set to
    this node's platform, in FROM and in a stage once declared; --platform takes this platform only."""
    from k3c.oci.layout import host_architecture

    arch = host_architecture()
    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM --platform=$BUILDPLATFORM busybox AS tools
ARG TARGETARCH TARGETOS
ARG TARGETPLATFORM
RUN echo "$TARGETOS/$TARGETARCH $TARGETPLATFORM" > /plat && echo "[$BUILDARCH]" > /undeclared
FROM busybox
COPY --from=tools /plat /undeclared /
"""})
    built(stack, stack.k3c("build", "-q", "--platform", f"linux/{arch}", "-t", "plat:1", str(ctx)))
    _, config, files = stack.image("docker.io/library/plat:1")
    assert files["plat"] == f"linux/{arch} linux/{arch}\n".encode()
    assert files["undeclared"] == b"[]\n", "an ARG not declared in the stage stays unset, as in BuildKit"
    assert config["architecture"] == arch and config["os"] == "linux"
    other = "arm64" if arch != "arm64" else "amd64"
    bad = stack.k3c("build", "--platform", f"linux/{other}", str(ctx))
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        f"k3c: build failed: cannot build for linux/{other}: this node builds for linux/{arch} only"], bad.stderr


def test_output_exports_the_stage_files(stack: BuildStack, tmp_path: Path) -> None:
    """docker build -o: the target stage's files as a directory or a tar (on stdout with -), layers applied
    with their whiteouts; no image ID on a stdout that carries the tar; no temporary files left."""
    import tempfile

    ctx = make_context(tmp_path, {"Dockerfile": """\
FROM busybox AS build
RUN mkdir -p /out && echo artifact > /out/app && rm /bin/cat
FROM scratch AS export
COPY --from=build /out/app /bin/app
"""})
    before = set(Path(tempfile.gettempdir()).glob("k3c-output-*"))
    dest = tmp_path / "out"
    built(stack, stack.k3c("build", "-q", "-o", f"type=local,dest={dest}", str(ctx)))
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["bin", "bin/app"]
    assert (dest / "bin" / "app").read_text() == "artifact\n"
    full = tmp_path / "full"
    built(stack, stack.k3c("build", "-q", "--target", "build", "-o", str(full), str(ctx)))
    assert (full / "out" / "app").read_text() == "artifact\n"
    assert not (full / "bin" / "cat").exists() and (full / "bin" / "sh").is_symlink(), "whiteouts applied"
    streamed = subprocess.run([sys.executable, "-m", "k3c.cli.main", "build", "-q", "-o", "-", str(ctx)],
                              capture_output=True, env={**os.environ, **stack.env()}, timeout=120)
    assert streamed.returncode == 0, streamed.stderr
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        assert tar.extractfile("bin/app").read() == b"artifact\n"
    tarred = tmp_path / "out.tar"
    built(stack, stack.k3c("build", "-q", "-o", f"type=tar,dest={tarred}", str(ctx)))
    with tarfile.open(tarred) as tar:
        assert sorted(tar.getnames()) == ["bin", "bin/app"]
    bad = stack.k3c("build", "-o", "type=registry", str(ctx))
    assert bad.returncode != 0 and "not supported" in bad.stderr
    assert set(Path(tempfile.gettempdir()).glob("k3c-output-*")) == before


def test_stdin_tar_and_lone_dockerfile(stack: BuildStack, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY hello /hello\n"), ("hello", b"from a tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    built(stack, stack.k3c("build", "-q", "-t", "stdin:tar", "-", input=buf.getvalue()))
    assert stack.image("docker.io/library/stdin:tar")[2]["hello"] == b"from a tar\n"
    built(stack, stack.k3c("build", "-q", "-t", "stdin:df", "-", input=b"FROM busybox\nRUN echo lone > /lone\n"))
    assert stack.image("docker.io/library/stdin:df")[2]["lone"] == b"lone\n"


def test_dockerfile_outside_context_and_build_secret(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"data.txt": "data"})
    dockerfile = tmp_path / "elsewhere.Dockerfile"
    dockerfile.write_text("FROM busybox\nCOPY data.txt /data.txt\n"
                          "RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /token-length\n")
    secret = tmp_path / "token"
    secret.write_text("k3c-s3cr3t-xyzzy-42")
    built(stack, stack.k3c("build", "-q", "-f", str(dockerfile), "--secret", f"id=token,src={secret}",
                           "-t", "secret:1", str(ctx)))
    files = stack.image("docker.io/library/secret:1")[2]
    assert files["token-length"].strip() == b"19" and files["data.txt"] == b"data"
    assert not any(b"s3cr3t-xyzzy" in v for v in files.values()), "the secret never lands in the image"
    obj = build_named(stack, "docker.io/library/secret:1")
    assert "dockerfileInline" in obj["spec"]
    api = stack.api()
    try:
        secrets = api.get("/api/v1/namespaces/default/secrets", labelSelector="k3c.io/build-secret-for").get("items")
    finally:
        api.close()
    assert secrets == [], "the one-off Secret is deleted with the build over"


def test_kubectl_apply_of_a_git_build(stack: BuildStack, tmp_path: Path) -> None:
    served = GitHTTPServer(tmp_path / "served").start()
    try:
        repo = served.root / "repo.git"
        sha = commit_all(repo, {"app/Dockerfile": "FROM busybox\nARG VERSION\nCOPY hello.txt /hello.txt\n"
                                                  "RUN echo $VERSION > /version\n",
                                "app/hello.txt": "hello from git\n", "README": "not in the context\n"})
        marker = tmp_path / "upload-pack-ran"
        manifest = f"""\
apiVersion: k3c.io/v1alpha1
kind: ImageBuild
metadata: {{name: web}}
spec:
  context: {{git: {{url: "{served.url('repo.git')}", ref: main, subPath: app}}}}
  dockerfile: Dockerfile
  buildArgs: {{VERSION: "1.2"}}
  tags: ["example.com/org/web:dev"]
---
apiVersion: k3c.io/v1alpha1
kind: ImageBuild
metadata: {{name: web-at-commit}}
spec:
  context: {{git: {{url: "{served.url('repo.git')}", ref: "{sha}", subPath: app}}}}
  tags: ["example.com/org/web:{sha[:7]}"]
---
apiVersion: k3c.io/v1alpha1
kind: ImageBuild
metadata: {{name: leaky}}
spec:
  context: {{git: {{url: "{served.url('repo.git', 'k3cuser:s3cr3t-tok')}", subPath: nope}}}}
---
apiVersion: k3c.io/v1alpha1
kind: ImageBuild
metadata: {{name: injected}}
spec:
  context: {{git: {{url: "file://{repo}", ref: "--upload-pack=touch {marker};git-upload-pack", subPath: app}}}}
  tags: ["example.com/org/web:injected"]
"""
        cp = subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest, capture_output=True, text=True,
                            env={**os.environ, "KUBECONFIG": str(stack.kubeconfig)}, timeout=60)
        assert cp.returncode == 0, cp.stderr
        for name in ("web", "web-at-commit"):
            obj = stack.wait_phase(name, ("Succeeded", "Failed"))
            assert obj["status"]["phase"] == "Succeeded", obj["status"]
        injected = stack.wait_phase("injected", ("Succeeded", "Failed"))
        leaky = stack.wait_phase("leaky", ("Succeeded", "Failed"))
    finally:
        served.stop()
    # credentials in the URL are redacted as BuildKit does, in the log, the status and the Event
    events = wait_until(lambda: _events_of(stack, leaky), 10, "the failed build's Event")
    assert leaky["status"]["phase"] == "Failed", leaky["status"]
    assert f"is not a directory of http://xxxxx@127.0.0.1:{served.port}/repo.git" in leaky["status"]["message"]
    for where, text in (("status", json.dumps(leaky["status"])), ("Event", json.dumps(events)),
                        ("log", _log(stack, "leaky"))):
        assert "s3cr3t-tok" not in text, f"the URL's token is in the build's {where}"
    assert injected["status"]["phase"] == "Failed" and not marker.exists(), "the ref ran a command on the node"
    assert "invalid git ref '--upload-pack=" in injected["status"]["message"], injected["status"]
    files = stack.image("example.com/org/web:dev")[2]
    assert files["hello.txt"] == b"hello from git\n" and files["version"] == b"1.2\n"
    assert "README" not in files
    assert stack.image(f"example.com/org/web:{sha[:7]}") is not None
    cp = subprocess.run(["kubectl", "get", "imagebuilds", "web"], capture_output=True, text=True,
                        env={**os.environ, "KUBECONFIG": str(stack.kubeconfig)}, timeout=60)
    assert "Succeeded" in cp.stdout and "example.com/org/web:dev" in cp.stdout, cp.stdout


# ------------------------------------------------------------------------------------------ cancel


def _build_processes(stack: BuildStack) -> list[int]:
    """PIDs whose root or command line lies in this stack's directories (buildah, its RUN processes), but
    not the stack's own processes (the operator's command line says ``--build-engine buildah``)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in stack.started:
            continue
        try:
            root = os.readlink(f"/proc/{entry.name}/root")
            cmd = open(f"/proc/{entry.name}/cmdline", "rb").read()
        except OSError:
            continue
        if root.startswith(str(stack.base)) or (b"buildah" in cmd and str(stack.base).encode() in cmd):
            pids.append(int(entry.name))
    return pids


def _log(stack: BuildStack, name: str) -> str:
    api = stack.api()
    try:
        conn = api.connection()  # a plain GET of the text subresource
        conn.request("GET", stack.build_path(name) + "/log", headers=api.headers(accept="text/plain"))
        return conn.getresponse().read().decode()
    finally:
        api.close()


def test_deleting_a_running_build_cancels_and_cleans(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 30\nRUN echo after\n"})
    obj = {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "slow"},
           "spec": {"context": {"dir": str(ctx)}, "tags": ["slow:1"]}}
    api = stack.api()
    try:
        api.create(stack.build_path(), obj)
        wait_until(lambda: "started" in _log(stack, "slow").splitlines(), 60, "the RUN step to run")
        running = wait_until(lambda: (b := stack.get_build("slow")) and "k3c.io/imagebuild" in (
            b["metadata"].get("finalizers") or []) and b, 10, "the running build's finalizer")
        assert running["status"]["phase"] == "Running"
        uid = running["metadata"]["uid"]
        t0 = time.monotonic()
        api.delete(stack.build_path("slow"))
        wait_until(lambda: stack.get_build("slow") is None, 20, "the canceled build to be gone")
        assert time.monotonic() - t0 < 10, "canceling kills the build, it does not wait for sleep 30"
    finally:
        api.close()
    assert stack.build_leftovers() == []
    wait_until(lambda: not _build_processes(stack), 10, "buildah and its RUN processes to be gone")
    assert stack.image("docker.io/library/slow:1") is None
    assert not (stack.root / "builds" / "logs" / f"{uid}.log").exists()
    assert list((stack.root / "builds" / "work").iterdir()) == []
    assert [p for p in (stack.builder_root / "tmp").iterdir() if p.name != "buildah-cache"] == []


def test_ctrl_c_cancels_the_build(stack: BuildStack, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 30\n"})
    cmd = [sys.executable, "-m", "k3c.cli.main", "build", "--progress", "plain", "-t", "interrupted:1", str(ctx)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **stack.env()})
    try:
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"started\n" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.read1(4096)
        assert b"started\n" in seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"build canceled" in err
    api = stack.api()
    try:
        left = [o for o in api.get(stack.build_path()).get("items", [])
                if "interrupted:1" in (o["spec"].get("tags") or [])]
    finally:
        api.close()
    assert left == []
    # a build canceled in its first moments has no finalizer yet: its cleanup may finish after the CLI exits
    wait_until(lambda: stack.build_leftovers() == [], 10, "the canceled build's cleanup")
    work = stack.root / "builds" / "work"
    wait_until(lambda: not list(work.iterdir()), 10, "the build's work directories to go")
    assert stack.image("docker.io/library/interrupted:1") is None


# ------------------------------------------------------------------------------------------ running it


def test_built_image_runs_through_cri(stack: BuildStack, tmp_path: Path) -> None:
    """The image is usable by CRI at once (what `k3c run` and k3s pods use), with no push or pull."""
    from k3c.cri.restarts import while_unavailable
    from k3c.cri.runtime import CRIClient, pb
    from k3c.daemon.pause import ensure_pause_image
    from k3c.pauseimage import PAUSE_IMAGE

    ctx = make_context(tmp_path, {"Dockerfile": MULTI_STAGE})
    built(stack, stack.k3c("build", "-q", "-t", "runme:1", "--build-arg", "VERSION=7", str(ctx)))
    logs = tmp_path / "podlogs"
    logs.mkdir()

    async def scenario() -> tuple[int, str]:
        await ensure_pause_image(stack.socket, stack.base / "cache")
        async with CRIClient(stack.socket, timeout=30) as cri:
            assert await while_unavailable(lambda: cri.image_status(PAUSE_IMAGE), 20) is not None  # (as pause.py)
            image = await wait_image(cri, "docker.io/library/runme:1")
            assert image.id.startswith("sha256:")
            sc = pb.PodSandboxConfig(
                metadata=pb.PodSandboxMetadata(name="runme", uid=uuid.uuid4().hex, namespace="k3c-build-test"),
                log_directory=str(logs),
                linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE))),
            )
            sid = await cri.run_pod_sandbox(sc)
            try:
                cid = await cri.create_container(sid, pb.ContainerConfig(
                    metadata=pb.ContainerMetadata(name="app"), image=pb.ImageSpec(image="docker.io/library/runme:1"),
                    log_path="app.log"), sc)
                await cri.start_container(cid)
                deadline = time.monotonic() + 20
                while (st := (await cri.container_status(cid)).status).state != pb.CONTAINER_EXITED:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                await cri.remove_container(cid)
                return st.exit_code, (logs / "app.log").read_text()
            finally:
                await cri.stop_pod_sandbox(sid)
                await cri.remove_pod_sandbox(sid)

    code, output = asyncio.run(scenario())
    assert code == 0
    assert "version=7" in output


async def wait_image(cri: Any, name: str) -> Any:
    for _ in range(200):
        image = await cri.image_status(name)
        if image is not None:
            return image
        await asyncio.sleep(0.02)
    raise AssertionError(f"CRI does not know {name}")


def test_operator_restart_rebuilds_an_interrupted_build(stack: BuildStack, tmp_path: Path) -> None:
    """Level-based: a build whose operator died mid-way is built again by the next operator."""
    ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 3\nRUN echo done > /done\n"})
    obj = {"apiVersion": "k3c.io/v1alpha1", "kind": "ImageBuild", "metadata": {"name": "survivor"},
           "spec": {"context": {"dir": str(ctx)}, "tags": ["survivor:1"]}}
    api = stack.api()
    try:
        api.create(stack.build_path(), obj)
    finally:
        api.close()
    wait_until(lambda: "started" in _log(stack, "survivor").splitlines(), 60, "the RUN step to run")
    assert stack.operator is not None
    stack.operator.stop()
    assert stack.get_build("survivor")["status"]["phase"] == "Running"
    stack.start_operator()
    done = stack.wait_phase("survivor", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert stack.image("docker.io/library/survivor:1")[2]["done"] == b"done\n"
    assert stack.build_leftovers() == []


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry not installed")
def test_push_sends_the_tags_to_their_registry(stack: BuildStack, tmp_path: Path) -> None:
    import json
    import urllib.request

    from tests.support.harness import free_port

    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), 20, "the registry")
        ctx = make_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo pushed > /pushed\n"})
        tag = f"127.0.0.1:{port}/team/pushed:1"
        image_id = built(stack, stack.k3c("build", "-q", "--push", "-t", tag, str(ctx)))
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/team/pushed/manifests/1", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            manifest = json.loads(resp.read())
        assert manifest["config"]["digest"] == image_id
        assert build_named(stack, tag)["status"]["pushed"] == [tag]
        assert {layer["mediaType"] for layer in manifest["layers"]} <= {
            "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"}, \
            "layers go to the registry gzipped, whatever the engine keeps locally"
    finally:
        registry.terminate()
        registry.wait(10)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False
