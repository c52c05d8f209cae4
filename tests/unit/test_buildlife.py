"""The ImageBuild both front doors write (k3c.buildlife) and the docker lines its log becomes."""

from __future__ import annotations

from k3c.buildlife import BuildRequest, imagebuild_object, step_instruction
from k3c.dockerapi.build import docker_line


def test_imagebuild_object_leaves_out_what_is_not_asked():
    obj = imagebuild_object("build-1", BuildRequest({"upload": {"digest": "sha256:0"}}, build_args={"X": "1"},
                                                    tags=["img"], target="t", network="default"), "k3c-docker-api")
    assert obj["metadata"] == {"name": "build-1", "labels": {"app.kubernetes.io/created-by": "k3c-docker-api"}}
    assert obj["spec"] == {"context": {"upload": {"digest": "sha256:0"}}, "buildArgs": {"X": "1"},
                           "tags": ["img"], "target": "t", "ttlSecondsAfterFinished": 3600}
    secret = imagebuild_object("b", BuildRequest({}, secret_ids=["tok"], node="n1", network="host"), "x")["spec"]
    assert secret["secrets"] == [{"id": "tok", "secretName": "b-secrets", "key": "tok"}]
    assert secret["nodeName"] == "n1" and secret["network"] == "host"


def test_log_lines_as_docker_prints_them():
    assert docker_line("STEP 1/3: FROM busybox") == "Step 1/3 : FROM busybox\n"
    assert docker_line("[2/2] STEP 3/5: RUN make") == "Step 3/5 : RUN make\n"
    assert docker_line("--> Using cache sha256:abc") == " ---> Using cache\n"
    assert docker_line("hello") == "hello\n"
    assert docker_line("build failed: exit code 3") is None
    assert step_instruction("[1/2] STEP 2/2: RUN exit 3") == "RUN exit 3"
    assert step_instruction("odd") == "odd"
