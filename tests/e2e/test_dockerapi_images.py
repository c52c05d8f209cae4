"""The Docker API's image endpoints on `k3c daemon`'s socket, driven by real clients: Debian's docker CLI with
DOCKER_HOST and docker-py, against real docker-registry processes (one open, one with htpasswd auth).

One daemon for the module (the ``daemon`` fixture); the socket, CLI and docker-py helpers are
tests/e2e/test_dockerapi.py's (the fixtures: tests/e2e/conftest.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from k3c.api import IMAGES, SECRETS
from tests.e2e.test_dockerapi import DOCKER_CLI, cli, ok, raw
from tests.support.daemon_harness import TEST_IMAGE
from tests.support.images_harness import RegistryProcess, sized_image


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: Any) -> Any:
    reg = RegistryProcess(tmp_path_factory.mktemp("open-registry"), users=None).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: Any) -> Any:
    reg = RegistryProcess(tmp_path_factory.mktemp("auth-registry")).start()  # user k3c, password s3cret
    yield reg
    reg.stop()


def _references(daemon: Any) -> set[str]:
    return {o["spec"]["reference"] for o in daemon.api.get(IMAGES.path()).get("items", [])}


def _call_secrets(daemon: Any) -> list[str]:
    items = daemon.api.get(SECRETS.path("kube-system")).get("items", [])
    return [s["metadata"]["name"] for s in items if s["metadata"]["name"].startswith("k3c-docker-call-")
            or s["metadata"]["name"] == "k3c-registry-auth"]


def _stream(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_docker_cli_tag_push_rmi_pull_images(daemon, sock, open_registry):
    ref = f"{open_registry.host}/k3c/dockerapi-busybox:v1"
    ok(sock, "tag", TEST_IMAGE, ref)
    shown = ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert ref in shown and TEST_IMAGE in shown
    out = ok(sock, "push", ref)
    assert f"The push refers to repository [{ref.rsplit(':', 1)[0]}]" in out
    assert "v1: digest: sha256:" in out
    assert not [o for o in daemon.api.get("/apis/k3c.io/v1alpha1/imagepushes").get("items", [])]
    out = ok(sock, "rmi", ref)
    assert f"Untagged: {ref}" in out and "Deleted:" not in out  # TEST_IMAGE still names the image
    assert ref not in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert f"docker.io/{ref}" not in _references(daemon) and ref not in _references(daemon)
    out = ok(sock, "pull", ref, timeout=120)
    assert "v1: Pulling from k3c/dockerapi-busybox" in out
    assert f"Status: Downloaded newer image for {ref}" in out
    assert ref in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    out = ok(sock, "pull", ref, timeout=120)
    assert f"Status: Image is up to date for {ref}" in out
    assert ok(sock, "run", "--rm", ref, "echo", "pulled through the docker API").strip() == \
        "pulled through the docker API"
    ok(sock, "rmi", ref)
    cp = cli(sock, "run", "--rm", ref, "echo", "pulled by run", timeout=120)  # create's 404 makes the CLI pull
    assert cp.returncode == 0, cp.stderr
    assert f"Unable to find image '{ref}' locally" in cp.stderr and cp.stdout == "pulled by run\n"
    ok(sock, "rmi", ref)


def test_pull_failure_is_an_error_line_in_a_200_stream(daemon, sock, open_registry):
    ref = f"{open_registry.host}/k3c/no-such-image"
    before = _references(daemon)
    cp = cli(sock, "pull", f"{ref}:v9", timeout=120)
    assert cp.returncode == 1, cp
    assert "not found" in cp.stderr.lower() or "unknown" in cp.stderr.lower(), cp.stderr
    status, headers, body = raw(sock, "POST", f"/v1.41/images/create?fromImage={ref}&tag=v9")
    assert status == 200 and headers["content-type"] == "application/json"
    lines = _stream(body)
    assert lines[0] == {"status": "Pulling from k3c/no-such-image", "id": "v9"}
    assert set(lines[-1]) == {"errorDetail", "error"} and lines[-1]["errorDetail"]["message"] == lines[-1]["error"]
    assert _references(daemon) == before  # the failed pull's object is gone again
    status, _, body = raw(sock, "POST", "/v1.41/images/create?fromImage=NOT%20A%20REF")
    assert status == 400 and json.loads(body)["message"]
    status, _, body = raw(sock, "POST", f"/v1.41/images/{ref}/push?tag=v9")
    assert status == 404
    assert json.loads(body)["message"] == f"An image does not exist locally with the tag: {ref}"


def test_x_registry_auth_is_used_for_that_call_only(daemon, dockerpy, auth_registry):
    repo = f"{auth_registry.host}/k3c/private"
    creds = {"username": "k3c", "password": "s3cret"}
    dockerpy.images.get(TEST_IMAGE).tag(repo, "v1")
    with pytest.raises(docker.errors.APIError):  # no credentials: the registry refuses the push
        for line in dockerpy.api.push(repo, "v1", stream=True, decode=True):
            if "error" in line:
                raise docker.errors.APIError(line["error"])
    pushed = [line for line in dockerpy.api.push(repo, "v1", stream=True, decode=True, auth_config=creds)]
    assert not [line for line in pushed if "error" in line], pushed
    assert pushed[-1]["aux"]["Tag"] == "v1" and pushed[-1]["aux"]["Digest"].startswith("sha256:")
    dockerpy.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.APIError):
        dockerpy.images.pull(repo, "v1")
    image = dockerpy.images.pull(repo, "v1", auth_config=creds)
    assert f"{repo}:v1" in image.tags
    assert _call_secrets(daemon) == []  # used for the call, never stored
    obj = next(o for o in daemon.api.get(IMAGES.path()).get("items", []) if o["spec"]["reference"] == f"{repo}:v1")
    assert "authSecret" not in obj["spec"]
    dockerpy.images.remove(f"{repo}:v1")


def test_a_bad_x_registry_auth_header_is_a_400(sock, open_registry):
    status, _, body = raw(sock, "POST", f"/images/create?fromImage={open_registry.host}/x&tag=1",
                          headers={"X-Registry-Auth": "%%%not-base64"})
    assert status == 400 and "X-Registry-Auth" in json.loads(body)["message"]
    header = base64.urlsafe_b64encode(b"{}").decode()  # what clients send without credentials: no Secret
    status, _, _ = raw(sock, "POST", f"/images/create?fromImage={open_registry.host}/x&tag=1",
                       headers={"X-Registry-Auth": header})
    assert status == 200


def test_rmi_of_an_image_a_container_uses_is_409_and_force_removes_the_tag(daemon, sock):
    ok(sock, "tag", TEST_IMAGE, "k3c.test/in-use:1")
    cid = ok(sock, "run", "-d", "k3c.test/in-use:1", "sleep", "300").strip()
    try:
        cp = cli(sock, "rmi", "k3c.test/in-use:1")
        assert cp.returncode == 1
        assert 'conflict: unable to remove repository reference "k3c.test/in-use:1" (must force)' in cp.stderr
        assert f"container {cid[:12]} is using its referenced image" in cp.stderr
        status, _, body = raw(sock, "DELETE", "/v1.41/images/k3c.test/in-use:1")
        assert status == 409 and "must force" in json.loads(body)["message"]
        status, _, body = raw(sock, "DELETE", "/v1.41/images/k3c.test/in-use:1?force=1&noprune=1")
        assert status == 200, body
        assert json.loads(body) == [{"Untagged": "k3c.test/in-use:1"}]
    finally:
        ok(sock, "rm", "-f", cid)
    status, _, body = raw(sock, "DELETE", "/v1.41/images/k3c.test/in-use:1")
    assert status == 404 and json.loads(body)["message"] == "No such image: k3c.test/in-use:1"


def test_history_and_docker_py_tag_remove(daemon, sock, dockerpy):
    out = ok(sock, "history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", TEST_IMAGE).splitlines()
    image_id = json.loads(ok(sock, "image", "inspect", "-f", "{{json .Id}}", TEST_IMAGE))
    assert out and out[0].startswith(image_id)
    history = dockerpy.images.get(TEST_IMAGE).history()
    assert history[0]["Id"] == image_id and TEST_IMAGE in history[0]["Tags"]
    assert all(isinstance(h["Created"], int) and isinstance(h["Size"], int) for h in history)
    status, _, body = raw(sock, "GET", "/v1.41/images/k3c.test/nope:1/history")
    assert status == 404
    image = dockerpy.images.get(TEST_IMAGE)
    assert image.tag("k3c.test/dockerpy-tag", "2") is True
    assert "k3c.test/dockerpy-tag:2" in dockerpy.images.get(TEST_IMAGE).tags
    status, _, body = raw(sock, "POST", "/v1.41/images/k3c.test/nope:1/tag?repo=k3c.test/x&tag=1")
    assert status == 404
    status, _, body = raw(sock, "POST", f"/v1.41/images/{TEST_IMAGE}/tag?repo=BAD%20REPO")
    assert status == 400
    dockerpy.images.remove("k3c.test/dockerpy-tag:2")
    with pytest.raises(docker.errors.ImageNotFound):
        dockerpy.images.get("k3c.test/dockerpy-tag:2")


def test_image_prune_all_removes_only_unused_images(daemon, sock):
    daemon.import_image("k3c.test/prune-me:1", sized_image(0.05, layers=1, seed="prune-me"))
    deadline = time.monotonic() + 10
    while "k3c.test/prune-me:1" not in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split():
        assert time.monotonic() < deadline, "the imported image never showed"
        time.sleep(0.1)
    cid = ok(sock, "run", "-d", TEST_IMAGE, "sleep", "300").strip()
    try:
        status, _, body = raw(sock, "POST", '/v1.41/images/prune?filters={"dangling":["false"]}')
        assert status == 200, body
        doc = json.loads(body)
        assert {"Untagged": "k3c.test/prune-me:1"} in doc["ImagesDeleted"]
        assert any("Deleted" in d for d in doc["ImagesDeleted"]) and doc["SpaceReclaimed"] > 0
        shown = ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
        assert "k3c.test/prune-me:1" not in shown and TEST_IMAGE in shown
        out = ok(sock, "image", "prune", "-f")  # nothing dangling
        assert "Total reclaimed space: 0B" in out
        status, _, body = raw(sock, "POST", '/v1.41/images/prune?filters={"until":["1h"]}')
        assert status == 400
    finally:
        ok(sock, "rm", "-f", cid)


# ---- build ------------------------------------------------------------------------------------------------
def _context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def _build_cli(sock: str, *args: str, buildkit: str = "0") -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(Path(sock).parent / "docker-config"),
           "DOCKER_BUILDKIT": buildkit}
    return subprocess.run([DOCKER_CLI, "build", *args], capture_output=True, text=True, timeout=300, env=env)


def test_docker_cli_classic_build_with_build_arg_and_target(daemon, sock, tmp_path):
    ctx = _context(tmp_path, f"FROM {TEST_IMAGE} AS t\nARG X=0\nCOPY msg /msg\nRUN echo \"X is $X\" >> /msg\n"
                             'CMD ["cat", "/msg"]\n'
                             f"FROM {TEST_IMAGE}\nRUN false\n", msg="from the context\n")
    cp = _build_cli(sock, "--build-arg", "X=1", "--target", "t", "-t", "k3c.test/dockerapi-built", str(ctx))
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "Step 1/5 : FROM" in cp.stdout or "Step 1/" in cp.stdout, cp.stdout
    assert "Successfully built " in cp.stdout
    assert "Successfully tagged k3c.test/dockerapi-built:latest" in cp.stdout
    built = cp.stdout.split("Successfully built ")[1].split()[0]
    assert ok(sock, "run", "--rm", "k3c.test/dockerapi-built") == "from the context\nX is 1\n"
    assert json.loads(ok(sock, "image", "inspect", "-f", "{{json .Id}}", "k3c.test/dockerapi-built")) \
        .removeprefix("sha256:").startswith(built)
    assert "k3c.test/dockerapi-built:latest" in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    builds = daemon.api.get("/apis/k3c.io/v1alpha1/namespaces/default/imagebuilds").get("items", [])
    assert any(b["spec"].get("buildArgs") == {"X": "1"} and b["spec"].get("target") == "t" for b in builds)
    ok(sock, "rmi", "k3c.test/dockerapi-built")


def test_a_failing_run_exits_non_zero_with_its_message(sock, tmp_path):
    ctx = _context(tmp_path, f"FROM {TEST_IMAGE}\nRUN echo going to fail; exit 3\n")
    cp = _build_cli(sock, "-t", "k3c.test/dockerapi-fails", str(ctx))
    assert cp.returncode == 1, cp
    assert "going to fail" in cp.stdout
    assert "The command '/bin/sh -c echo going to fail; exit 3' returned a non-zero code: 3" in cp.stderr, cp.stderr
    assert cli(sock, "image", "inspect", "k3c.test/dockerapi-fails").returncode == 1


def test_buildkit_is_refused_naming_the_classic_path(sock, tmp_path):
    ctx = _context(tmp_path, f"FROM {TEST_IMAGE}\n")
    cp = _build_cli(sock, "-t", "k3c.test/bk", str(ctx), buildkit="1")
    assert cp.returncode == 1
    assert "Error response from daemon: BuildKit is not supported" in cp.stderr, cp.stderr
    assert "DOCKER_BUILDKIT=0" in cp.stderr
    for path in ("/session", "/v1.41/session", "/grpc"):
        status, _, body = raw(sock, "POST", path)
        assert status == 400 and "DOCKER_BUILDKIT=0" in json.loads(body)["message"]


def test_build_refuses_bad_input_with_400(sock):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        data = f"FROM {TEST_IMAGE}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    for query, words in (("t=NOT%20A%20TAG", "invalid reference format"), ("buildargs=%5B1%5D", "buildargs"),
                         ("memory=1000000", "memory"), ("networkmode=bridge2", "network mode"),
                         ("remote=https://example.com/x.tar", "remote")):
        status, headers, body = raw(sock, "POST", f"/v1.41/build?{query}", body=tar.getvalue(),
                                    headers={"Content-Type": "application/x-tar"})
        assert status == 400, (query, body)
        assert words in json.loads(body)["message"], (query, body)
    status, _, body = raw(sock, "POST", "/v1.41/build?t=k3c.test/not-a-tar", body=b"this is not a tar" * 64,
                          headers={"Content-Type": "application/x-tar"})
    assert status == 400 and "tar" in json.loads(body)["message"]
    status, _, _ = raw(sock, "GET", "/_ping")
    assert status == 200


def test_docker_py_builds_from_a_path_and_a_fileobj(dockerpy, tmp_path):
    ctx = _context(tmp_path, f"FROM {TEST_IMAGE}\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\n")
    image, logs = dockerpy.images.build(path=str(ctx), tag="k3c.test/dockerpy-built:1",
                                        buildargs={"GREETING": "hello docker-py"}, rm=True)
    assert "k3c.test/dockerpy-built:1" in image.tags
    assert any("Successfully built" in line.get("stream", "") for line in logs)
    container = dockerpy.containers.run("k3c.test/dockerpy-built:1", ["cat", "/greeting"], detach=True)
    assert container.wait(timeout=30)["StatusCode"] == 0
    assert container.logs() == b"hello docker-py\n"
    container.remove()
    image, _ = dockerpy.images.build(fileobj=io.BytesIO(f"FROM {TEST_IMAGE}\nLABEL made=fileobj\n".encode()),
                                     tag="k3c.test/dockerpy-fileobj:1")
    assert image.labels.get("made") == "fileobj"
    with pytest.raises(docker.errors.BuildError) as err:
        dockerpy.images.build(fileobj=io.BytesIO(f"FROM {TEST_IMAGE}\nRUN exit 7\n".encode()))
    assert "returned a non-zero code: 7" in str(err.value)
    dockerpy.images.remove("k3c.test/dockerpy-built:1")
    dockerpy.images.remove("k3c.test/dockerpy-fileobj:1")


# ---- save / load ------------------------------------------------------------------------------------------
def test_docker_cli_save_rmi_load(sock, tmp_path):
    ok(sock, "tag", TEST_IMAGE, "k3c.test/saved-by-cli:1")
    archive = tmp_path / "saved.tar"
    ok(sock, "save", "-o", str(archive), "k3c.test/saved-by-cli:1")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["k3c.test/saved-by-cli:1"]
    ok(sock, "rmi", "k3c.test/saved-by-cli:1")
    assert cli(sock, "image", "inspect", "k3c.test/saved-by-cli:1").returncode == 1
    out = ok(sock, "load", "-i", str(archive))
    assert "Loaded image: k3c.test/saved-by-cli:1" in out
    assert "k3c.test/saved-by-cli:1" in ok(sock, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    cp = cli(sock, "save", "-o", str(tmp_path / "none.tar"), "k3c.test/never-there:1")
    assert cp.returncode == 1 and "No such image: k3c.test/never-there:1" in cp.stderr
    ok(sock, "rmi", "k3c.test/saved-by-cli:1")


def test_docker_py_save_load_round_trip(sock, dockerpy):
    dockerpy.images.get(TEST_IMAGE).tag("k3c.test/saved-by-py", "1")
    data = b"".join(dockerpy.images.get("k3c.test/saved-by-py:1").save(named="k3c.test/saved-by-py:1"))
    assert data[257:262] == b"ustar"
    dockerpy.images.remove("k3c.test/saved-by-py:1")
    loaded = dockerpy.images.load(data)
    assert len(loaded) == 1 and "k3c.test/saved-by-py:1" in loaded[0].tags
    status, _, body = raw(sock, "GET", "/v1.41/images/get?names=k3c.test/saved-by-py:1&names=" + TEST_IMAGE)
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tags = sorted(t for m in json.load(tar.extractfile("manifest.json")) for t in m["RepoTags"] or [])
    assert tags == sorted(["k3c.test/saved-by-py:1", TEST_IMAGE])
    status, _, body = raw(sock, "POST", "/v1.41/images/load", body=b"not an archive" * 100,
                          headers={"Content-Type": "application/x-tar"})
    assert status == 400, body
    assert json.loads(body)["message"]
    status, _, _ = raw(sock, "GET", "/v1.41/images/get")
    assert status == 400
    dockerpy.images.remove("k3c.test/saved-by-py:1")
