"""Unit tests of the native engine's pieces that need no containerd: Dockerfile stages, config
instructions, paths inside an image root, COPY's rules, users, and RUN mount points."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from k3c.builder import rootfs
from k3c.builder.confinement import Confinement
from k3c.builder.dockerfile import platform_args
from k3c.builder.imageconfig import ImageState, apply_metadata
from k3c.builder.instructions import Unsupported, check_platform, parse, stages_needed
from k3c.builder.sandbox import RunSpec, oci_spec

UNCONFINED = Confinement(None, "", 0)  #: for the specs whose capabilities, mounts and namespaces are checked

MULTI = """\
ARG BASE=busybox
FROM $BASE AS build
RUN make
FROM busybox AS unused
RUN true
FROM scratch
COPY --from=build /out /out
"""

# ------------------------------------------------------------------------------------------ stages


def test_stages_resolve_global_args_and_needed_stages() -> None:
    stages, global_args = parse(MULTI, {"BASE": "alpine"})
    assert [(s.index, s.name, s.base) for s in stages] == [(0, "build", "alpine"), (1, "unused", "busybox"),
                                                           (2, "", "scratch")]
    assert global_args == {"BASE": "alpine", **platform_args(), "TARGETSTAGE": "default"}, \
        "BuildKit's automatic ARGs are global too"
    assert [s.index for s in stages_needed(stages, "")] == [0, 2], "the unused stage is skipped"
    assert [s.index for s in stages_needed(stages, "unused")] == [1]
    with pytest.raises(ValueError, match="could not be found"):
        stages_needed(stages, "nope")


def test_instruction_forms() -> None:
    stages, _ = parse('FROM busybox\nRUN ["echo", "a b"]\nRUN echo "$HOME" && \\\n  true\n'
                      'COPY --chown=1:2 --from=x a b /dst/\nCMD echo hi\n', {})
    run_exec, run_shell, copy, cmd = stages[0].instructions
    assert run_exec.exec_form and run_exec.args == ["echo", "a b"]
    assert not run_shell.exec_form and run_shell.raw == 'echo "$HOME" && true'
    assert copy.flag("chown") == "1:2" and copy.flag("from") == "x" and copy.args == ["a", "b", "/dst/"]
    assert cmd.raw == "echo hi"


def test_heredocs() -> None:
    stages, _ = parse("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\nRUN cat <<-'END' > /f\n\thello $X\n\tEND\n"
                      "COPY <<A <<\"B\" /dst/\na-body\nA\nb-body\nB\nRUN echo $((1<<2))\n", {})
    script, shell, copy, shift = stages[0].instructions
    assert script.raw == "echo one\necho two\n" and script.text == "RUN <<EOF"
    assert shell.raw == "cat <<-'END' > /f\nhello $X\nEND", "a command with heredocs goes to the shell verbatim"
    assert copy.args == ["A", "B", "/dst/"] and [(d.name, d.body, d.quoted) for d in copy.heredocs] == [
        ("A", "a-body\n", False), ("B", "b-body\n", True)]
    assert shift.raw == "echo $((1<<2))" and not shift.heredocs
    with pytest.raises(ValueError, match="not terminated"):
        parse("FROM busybox\nRUN <<EOF\necho\n", {})


@pytest.mark.parametrize("text", [
    "FROM busybox\nCOPY <<EOF local.txt /dst/\nhi\nEOF\n",
    "FROM busybox\nRUN --mount=type=ssh make\n",
    "FROM busybox AS a\nFROM busybox\nRUN --mount=type=cache,target=/c,from=a true\n",
    "FROM busybox\nADD https://example.com/a.tgz /a/\n",
    "FROM busybox\nRUN --security=insecure true\n",
])
def test_what_the_native_engine_leaves_to_buildah(text: str) -> None:
    with pytest.raises(Unsupported):
        parse(text, {})


@pytest.mark.parametrize("text,message", [
    ("RUN true\n", "no FROM"),
    ("FROM busybox\nFROBNICATE x\n", "unknown instruction"),
    ("", "no FROM"),
])
def test_bad_dockerfiles_are_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text, {})


# ------------------------------------------------------------------------------------------ config


def _apply(state: ImageState, text: str, build_args: dict[str, str] | None = None) -> ImageState:
    stages, _ = parse("FROM scratch\n" + text, {})
    for ins in stages[0].instructions:
        apply_metadata(ins, state, build_args or {})
    return state


def test_config_instructions_like_docker() -> None:
    state = ImageState(config={"Env": ["PATH=/bin"], "Cmd": ["sh"]})
    _apply(state, 'ARG V=1\nENV A=$V B="two words"\nENV LEGACY value with spaces\nWORKDIR app\nWORKDIR sub\n'
                  "LABEL x=1 y=$A\nEXPOSE 80 53/udp\nUSER nobody:nogroup\nENTRYPOINT [\"/run\"]\n"
                  "STOPSIGNAL SIGINT\nVOLUME /data\n", {"V": "9"})
    c = state.config
    assert c["Env"] == ["PATH=/bin", "A=9", "B=two words", "LEGACY=value with spaces"]
    assert c["WorkingDir"] == "/app/sub" and c["Labels"] == {"x": "1", "y": "9"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["User"] == "nobody:nogroup"
    assert c["Entrypoint"] == ["/run"] and c["Cmd"] is None, "ENTRYPOINT resets an inherited CMD"
    assert c["StopSignal"] == "SIGINT" and c["Volumes"] == {"/data": {}}
    assert "V" not in {e.split("=")[0] for e in c["Env"]}, "ARG values never reach the config"
    assert state.env()["V"] == "9", "but RUN sees them"


def test_cmd_before_entrypoint_is_kept_and_shell_form_uses_shell() -> None:
    state = _apply(ImageState(), 'SHELL ["/bin/bash", "-c"]\nCMD echo hi\nENTRYPOINT ["/e"]\n')
    assert state.config["Cmd"] == ["/bin/bash", "-c", "echo hi"] and state.config["Entrypoint"] == ["/e"]


def test_arg_redeclared_in_a_stage_takes_the_global_value() -> None:
    stages, global_args = parse("ARG V=global\nARG W=g2\nFROM scratch\nARG V\nARG W=local\nARG X\n", {})
    state = ImageState()
    for ins in stages[0].instructions:
        apply_metadata(ins, state, {}, global_args)
    assert state.args == {"V": "global", "W": "local", "X": ""}
    state = ImageState()
    for ins in stages[0].instructions:
        apply_metadata(ins, state, {"V": "cli", "W": "cli"}, global_args)
    assert state.args["V"] == "cli" and state.args["W"] == "cli"


def test_platform_args_and_platform_check() -> None:
    own = platform_args()
    assert own["TARGETPLATFORM"] == own["BUILDPLATFORM"] == f"linux/{own['TARGETARCH']}"
    stages, global_args = parse("FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH TARGETSTAGE\n",
                                {}, "b")
    state = ImageState()
    apply_metadata(stages[0].instructions[0], state, {}, global_args)
    assert state.args == {"TARGETARCH": own["TARGETARCH"], "TARGETSTAGE": "b"}
    check_platform(own["TARGETPLATFORM"])
    check_platform(own["TARGETARCH"])
    with pytest.raises(ValueError, match="this node builds for"):
        check_platform("linux/s390x")
    with pytest.raises(Unsupported):
        parse("FROM --platform=linux/s390x busybox\n", {})


def test_env_wins_over_arg_of_the_same_name() -> None:
    state = _apply(ImageState(), "ARG X=from-arg\nENV X=from-env\n")
    assert state.env()["X"] == "from-env"


def test_healthcheck() -> None:
    state = _apply(ImageState(), "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/\n")
    assert state.config["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://localhost/"],
                                           "Interval": 90 * 10**9, "Retries": 3}
    from k3c.timefmt import parse_duration_ns

    assert parse_duration_ns("500ms") == 500_000_000
    with pytest.raises(ValueError):
        parse_duration_ns("5")


# ------------------------------------------------------------------------------------------ paths


def test_resolve_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert rootfs.resolve(root, "/abs/passwd") == root / "etc" / "passwd"
    assert rootfs.resolve(root, "/rel/passwd") == root / "etc" / "passwd"
    assert rootfs.resolve(root, "/../../x") == root / "x"
    assert rootfs.resolve(root, "/abs", follow_last=False) == root / "abs"
    with pytest.raises(OSError):
        rootfs.resolve(root, "/loop1/x")


def test_user_ids_from_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n")
    assert rootfs.user_ids(tmp_path, "app", supplementary=True) == rootfs.Owner(1000, 1001, (2000,))
    assert rootfs.user_ids(tmp_path, "app:extra") == rootfs.Owner(1000, 2000)
    assert rootfs.user_ids(tmp_path, "123:456") == rootfs.Owner(123, 456)
    assert rootfs.user_ids(tmp_path, "") == rootfs.Owner(0, 0)
    with pytest.raises(ValueError, match="unable to find user ghost"):
        rootfs.user_ids(tmp_path, "ghost")


@pytest.mark.timeout(20)
def test_user_files_of_an_image_are_read_only_if_small_regular_files(tmp_path: Path) -> None:
    """Issue 10: /etc/passwd and /etc/group come from the image, so the operator opens them without following
    a link, reads only a regular file (a FIFO would block it for ever), and at most PASSWD_MAX bytes."""
    host = tmp_path / "host-passwd"
    host.write_text("hostuser:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(host)  # absolute: inside the image it names root/<host path>
    with pytest.raises(ValueError, match="unable to find user hostuser"):
        rootfs.user_ids(root, "hostuser")
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(ValueError, match="^cannot read /etc/passwd of the image: not a regular file$"):
        rootfs.user_ids(root, "app")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").mkdir()
    with pytest.raises(ValueError, match="^cannot read /etc/passwd of the image: not a regular file$"):
        rootfs.user_ids(root, "1000")
    (root / "etc" / "passwd").rmdir()
    (root / "etc" / "passwd").write_text("app:x:1000:1000::/:/bin/sh\n")
    (root / "etc" / "group").write_text("#" * (rootfs.PASSWD_MAX + 1))
    with pytest.raises(ValueError, match=f"^cannot read /etc/group of the image: larger than {rootfs.PASSWD_MAX} bytes$"):
        rootfs.user_ids(root, "app:staff")
    with pytest.raises(ValueError, match="larger than"):
        rootfs.chown_owner(root, "app:staff")
    assert rootfs.user_ids(root, "app") == rootfs.Owner(1000, 1000), "the group file is not needed here"


# ------------------------------------------------------------------------------------------ COPY


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    for rel, text in {"a.txt": "a", "b.txt": "b", "dir/x": "x", "dir/sub/y": "y", "skip/z": "z"}.items():
        (c / rel).parent.mkdir(parents=True, exist_ok=True)
        (c / rel).write_text(text)
    os.chmod(c / "a.txt", 0o640)
    return c


def _kept(ctx: Path, excluded: str = "") -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(ctx):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), ctx)
            if not (excluded and (rel == excluded or rel.startswith(excluded + "/"))):
                out.add(rel)
    return out


def _copy(root: Path, ctx: Path, sources: list[str], dest: str, **kw: object) -> None:
    rootfs.copy_into(root, rootfs.CopySpec(ctx, sources, dest, kept=_kept(ctx, "skip"), **kw))  # type: ignore[arg-type]


def test_copy_rules_like_docker(tmp_path: Path, ctx: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _copy(root, ctx, ["a.txt"], "/file")  # file to a new name
    _copy(root, ctx, ["dir"], "/d")  # a directory's contents, not the directory
    _copy(root, ctx, ["*.txt"], "/many/")  # glob into a directory
    _copy(root, ctx, ["a.txt", "b.txt"], "/two/")
    assert (root / "file").read_text() == "a" and (root / "file").stat().st_mode & 0o777 == 0o640
    assert (root / "d" / "x").read_text() == "x" and (root / "d" / "sub" / "y").read_text() == "y"
    assert not (root / "d" / "dir").exists()
    assert sorted(os.listdir(root / "many")) == ["a.txt", "b.txt"] == sorted(os.listdir(root / "two"))
    assert (root / "d" / "x").stat().st_uid == 0
    with pytest.raises(rootfs.CopyError, match="not found"):
        _copy(root, ctx, ["skip/z"], "/z")  # excluded by .dockerignore
    with pytest.raises(rootfs.CopyError, match="not found"):
        _copy(root, ctx, ["missing"], "/m")


def test_copy_follows_image_symlinks_inside_the_root(tmp_path: Path, ctx: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "app")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "escape")
    _copy(root, ctx, ["a.txt"], "/app/")
    _copy(root, ctx, ["b.txt"], "/escape/")
    assert (root / "etc" / "a.txt").read_text() == "a"
    assert list(outside.iterdir()) == [], "an absolute symlink in the image is the image's path, not the host's"
    assert (root / str(outside).lstrip("/") / "b.txt").read_text() == "b"


def test_copy_of_a_tree_never_writes_through_an_image_symlink_onto_the_host(tmp_path: Path, ctx: Path) -> None:
    """COPY dir/ into a directory whose entry is an absolute symlink in the image (/app/sub -> /OUT):
    the files land in the image's /OUT, and nothing reaches (or is chmod'ed on) the host's."""
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    os.symlink(str(outside), root / "app" / "sub")
    _copy(root, ctx, ["dir"], "/app/")
    assert list(outside.iterdir()) == [] and outside.stat().st_mode & 0o777 == 0o700
    assert (root / str(outside).lstrip("/") / "y").read_text() == "y"
    assert (root / "app" / "x").read_text() == "x"


def test_copy_sources_follow_symlinks_inside_their_root(tmp_path: Path, ctx: Path) -> None:
    """A source named by COPY that is a symlink is followed (Docker's rule), inside the context: a link to
    a host file outside it finds nothing."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("a.txt", ctx / "link")
    os.symlink("/etc/hostname", ctx / "host-link")
    kept = _kept(ctx, "skip")
    rootfs.copy_into(root, rootfs.CopySpec(ctx, ["link"], "/copied", kept=kept))
    assert not (root / "copied").is_symlink() and (root / "copied").read_text() == "a"
    with pytest.raises(rootfs.CopyError, match="not found"):
        rootfs.copy_into(root, rootfs.CopySpec(ctx, ["host-link"], "/leak", kept=kept))
    assert not os.path.lexists(root / "leak")


def test_chown_owner_as_buildkit_reads_it(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nextra:x:2000:\n")
    assert rootfs.chown_owner(tmp_path, "1000") == rootfs.Owner(1000, 1000), "a numeric user is its own group"
    assert rootfs.chown_owner(tmp_path, "app") == rootfs.Owner(1000, 1001)
    assert rootfs.chown_owner(tmp_path, "1000:extra") == rootfs.Owner(1000, 2000)
    assert rootfs.chown_owner(tmp_path, "root") == rootfs.Owner(0, 0)
    assert rootfs.chown_owner(tmp_path, "4242:7") == rootfs.Owner(4242, 7)


def test_chown_and_chmod_flags_are_expanded() -> None:
    from k3c.builder.native import _ownership_flags

    stages, _ = parse("FROM scratch\nCOPY --chown=$U:$G --chmod=$M a /b\nCOPY --chmod=${BAD} a /c\n", {})
    copy, bad = stages[0].instructions
    assert _ownership_flags(copy, {"U": "1000", "G": "2000", "M": "0750"}) == ("1000:2000", 0o750)
    with pytest.raises(ValueError, match="invalid --chmod=x9"):
        _ownership_flags(bad, {"BAD": "x9"})


def test_heredocs_are_words_of_their_own() -> None:
    """``<<<`` (a here-string) and a ``<<`` inside a word are not heredocs, as BuildKit reads them."""
    from k3c.builder.dockerfile import instructions

    text = "FROM x\nRUN tr a b <<<abc\nRUN echo a<<B\nRUN cat <<EOF\nhi\nEOF\n"
    assert list(instructions(text))[1:] == [("RUN", "tr a b <<<abc"), ("RUN", "echo a<<B"),
                                           ("RUN", "cat <<EOF\nhi\nEOF")]


def test_copy_chown_chmod_and_add_extracts(tmp_path: Path, ctx: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _copy(root, ctx, ["dir"], "/owned/", owner=rootfs.Owner(1000, 1001), mode=0o600)
    st = (root / "owned" / "x").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1001, 0o600)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"inside"
        info = tarfile.TarInfo("pkg/file")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "pkg.tgz").write_bytes(buf.getvalue())
    rootfs.copy_into(root, rootfs.CopySpec(ctx, ["pkg.tgz"], "/opt/", kept=_kept(ctx), extract=True))
    assert (root / "opt" / "pkg" / "file").read_bytes() == b"inside"


def test_run_mount_points_are_removed_but_existing_dirs_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "run").mkdir()
    missing = rootfs.mountpoints_missing(root, ["/etc/resolv.conf", "/run/secrets/token"])
    assert missing == ["/etc/resolv.conf", "/run/secrets", "/run/secrets/token"]
    (root / "etc" / "resolv.conf").touch()  # what runc does for a bind mount target
    (root / "run" / "secrets").mkdir()
    (root / "run" / "secrets" / "token").touch()
    rootfs.remove_created(root, missing)
    assert sorted(os.listdir(root)) == ["etc", "run"] and os.listdir(root / "run") == []


def test_run_spec_grants_only_dockers_default_capabilities(tmp_path: Path) -> None:
    spec = oci_spec(RunSpec("c1", tmp_path, tmp_path / "b", ["true"], ["PATH=/bin"], "/", rootfs.Owner(5, 6),
                            {"/run/secrets/s": tmp_path / "s"}, network="host", confinement=UNCONFINED))
    caps = spec["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" not in caps and "CAP_NET_ADMIN" not in caps and "CAP_CHOWN" in caps
    assert "CAP_NET_RAW" not in caps, "in the host's network namespace: no raw sockets on host interfaces"
    isolated = oci_spec(RunSpec("c2", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0),
                                network="none", confinement=UNCONFINED))
    assert "CAP_NET_RAW" in isolated["process"]["capabilities"]["effective"]
    assert {"type": "network"} in isolated["linux"]["namespaces"]
    assert not any(ns["type"] == "network" for ns in spec["linux"]["namespaces"]), "host: the host's"
    with pytest.raises(ValueError, match="needs the build sandbox's network namespace"):
        oci_spec(RunSpec("c0", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0), confinement=UNCONFINED))
    joined = oci_spec(RunSpec("c3", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0),
                              netns="/run/netns/build", confinement=UNCONFINED))
    assert {"type": "network", "path": "/run/netns/build"} in joined["linux"]["namespaces"]
    assert "CAP_NET_RAW" in joined["process"]["capabilities"]["bounding"]
    assert next(m for m in joined["mounts"] if m["destination"] == "/sys")["type"] == "sysfs"
    assert spec["process"]["user"] == {"uid": 5, "gid": 6, "additionalGids": []}
    secret = next(m for m in spec["mounts"] if m["destination"] == "/run/secrets/s")
    assert "ro" in secret["options"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]


def test_apparmor_is_applied_only_when_enabled_and_containerds_profile_is_loaded(tmp_path: Path) -> None:
    from k3c.builder.confinement import CONTAINERD_APPARMOR_PROFILE, apparmor_profile

    securityfs, module = tmp_path / "security", tmp_path / "enabled"
    assert apparmor_profile(securityfs, module) == "", "no AppArmor in the kernel"
    module.write_text("N\n")
    (securityfs / "apparmor").mkdir(parents=True)
    (securityfs / "apparmor" / "profiles").write_text(f"{CONTAINERD_APPARMOR_PROFILE} (enforce)\n")
    assert apparmor_profile(securityfs, module) == "", "AppArmor switched off"
    module.write_text("Y\n")
    assert apparmor_profile(securityfs, module) == CONTAINERD_APPARMOR_PROFILE == "cri-containerd.apparmor.d"
    (securityfs / "apparmor" / "profiles").write_text("docker-default (enforce)\n/usr/bin/man (complain)\n")
    assert apparmor_profile(securityfs, module) == "", "containerd's profile not loaded (yet): runc would fail"


def test_run_spec_carries_the_confinement(tmp_path: Path) -> None:
    from k3c.builder.confinement import Confinement

    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    confined = oci_spec(RunSpec("c1", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0),
                                netns="/run/netns/x", confinement=Confinement(seccomp, "cri-containerd.apparmor.d", 99)))
    assert confined["linux"]["seccomp"] == seccomp
    assert confined["process"]["apparmorProfile"] == "cri-containerd.apparmor.d"
    assert confined["process"]["noNewPrivileges"] is False, "setuid programs (sudo) keep working"
    assert confined["linux"]["resources"]["pids"] == {"limit": 99}
    assert confined["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}], "as containerd's"
    bare = oci_spec(RunSpec("c2", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0),
                            netns="/run/netns/x", confinement=Confinement(None, "", 0)))
    assert "seccomp" not in bare["linux"] and "apparmorProfile" not in bare["process"]
    assert "pids" not in bare["linux"]["resources"], "0: no limit"


def test_run_spec_mounts_from_the_host_are_nodev_nosuid(tmp_path: Path) -> None:
    """RUN --mount binds, cache mounts, secrets and tmpfs never open device nodes nor honour setuid bits."""
    spec = oci_spec(RunSpec("c1", tmp_path, tmp_path / "b", ["true"], [], "/", rootfs.Owner(0, 0),
                            {"/run/secrets/s": tmp_path / "s"}, {"/cache": (tmp_path / "c", False),
                                                                 "/ctx": (tmp_path / "x", True)},
                            {"/tmp/t": 0}, netns="/run/netns/x", confinement=UNCONFINED))
    mine = [m for m in spec["mounts"] if m["destination"] in ("/run/secrets/s", "/cache", "/ctx", "/tmp/t")]
    assert len(mine) == 4 and all({"nodev", "nosuid"} <= set(m["options"]) for m in mine), mine


def test_copy_cache_key_follows_exactly_the_files_copied(tmp_path: Path) -> None:
    """A COPY's key changes when a file it takes changes, and not for a file beside it (even one whose
    name sorts between a directory and its children, like ``a-c`` between ``a`` and ``a/b``)."""
    from k3c.builder.cachekey import ContextHasher

    for rel, text in {"a/b": "1", "a-c": "2", "x.txt": "3", "y.txt": "4", "z.md": "5"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    kept = sorted(["a", "a/b", "a-c", "x.txt", "y.txt", "z.md"])
    hasher = ContextHasher()

    def key(*sources: str) -> str:
        return hasher.sources_digest(tmp_path, kept, list(sources))

    before = {s: key(s) for s in ("a", "*.txt", ".")}
    (tmp_path / "a-c").write_text("changed")
    assert key("a") == before["a"], "a-c is not under a/"
    assert key(".") != before["."]
    (tmp_path / "a" / "b").write_text("changed")
    assert key("a") != before["a"]
    assert key("*.txt") == before["*.txt"]
    (tmp_path / "y.txt").write_text("changed")
    assert key("*.txt") != before["*.txt"]
    mode_before = key("z.md")
    os.chmod(tmp_path / "z.md", 0o755)
    assert key("z.md") != mode_before, "the mode is copied too"
    os.symlink("x.txt", tmp_path / "link")
    kept[:] = sorted([*kept, "link"])
    link_before = key("link")
    (tmp_path / "x.txt").write_text("changed")
    assert key("link") != link_before, "COPY follows a named symlink, so its target is part of the key"


# ------------------------------------------------------------------------------------------ words


def test_quotes_escapes_and_variables_as_buildkit_reads_them() -> None:
    """Single quotes and escaped dollars stay literal; double quotes expand; shlex-then-substitute got the
    first two wrong (ENV A='$B' became the value of B)."""
    state = _apply(ImageState(), "ENV B=bee\n"
                                 "ENV A=\\$B C='$B' D=\"$B\" E=$B F=\\\\ G=\"a \\\"q\\\" b\" H=\"in\\side\" I=out\\side\n"
                                 "LABEL l='$B' m=\"${B}s\"\nWORKDIR '/$B'\nUSER \"$B\"\n")
    env = state.env()
    assert (env["A"], env["C"], env["D"], env["E"]) == ("$B", "$B", "bee", "bee")
    assert (env["F"], env["G"], env["H"], env["I"]) == ("\\", 'a "q" b', "in\\side", "outside")
    assert state.config["Labels"] == {"l": "$B", "m": "bees"}
    assert state.config["WorkingDir"] == "/$B" and state.config["User"] == "bee"


def test_substitution_modifiers_and_word_splitting() -> None:
    from k3c.builder.words import expand, expand_words, split

    env = {"SET": "x", "EMPTY": "", "PORTS": "80 443/udp"}
    assert [expand(w, env) for w in ("${SET:-d}", "${EMPTY:-d}", "${EMPTY-d}", "${NONE-d}")] == ["x", "d", "", "d"]
    assert [expand(w, env) for w in ("${SET:+a}", "${EMPTY:+a}", "${EMPTY+a}", "${NONE+a}")] == ["a", "", "a", ""]
    assert expand("${NONE:-'$SET' \"$SET\"}", env) == "$SET x", "the default word is processed as a word"
    assert expand("$ alone, $1", env) == "$ alone, $1"
    with pytest.raises(ValueError, match="NONE: must be set"):
        expand("${NONE:?must be set}", env)
    with pytest.raises(ValueError, match="matching single-quote"):
        expand("'open", env)
    assert split("a 'b c' \"d e\" f\\ g") == ["a", "'b c'", '"d e"', "f\\ g"]
    assert expand_words("$PORTS 8080", env) == ["80", "443/udp", "8080"]
    state = _apply(ImageState(), "ARG P=\"80 9090\"\nEXPOSE $P\nARG Q='$P'\n")
    assert set(state.config["ExposedPorts"]) == {"80/tcp", "9090/tcp"} and state.args["Q"] == "$P"


def test_heredoc_expansion_keeps_quotes_and_drops_escapes() -> None:
    """An unquoted COPY heredoc as BuildKit expands it (its lexer with quote processing off)."""
    from k3c.builder.words import expand

    body = "a '$X' \"$X\" \\$X c:\\dir\n"
    assert expand(body, {"X": "v"}, quotes=False) == "a 'v' \"v\" $X c:dir\n"
    assert expand("trailing\\", {}) == "trailing"


def test_tmpfs_sizes_take_docker_units() -> None:
    from k3c.builder import runmounts

    stages, _ = parse("FROM scratch\nRUN --mount=type=tmpfs,target=/t,size=64m --mount=type=tmpfs,target=/u true\n"
                      "RUN --mount=type=tmpfs,target=/v,size=lots true\n", {})
    (t, u), (v,) = (runmounts.mounts_of(ins, "/") for ins in stages[0].instructions)
    assert runmounts._tmpfs_size(t) == 64 * 1024**2 and runmounts._tmpfs_size(u) == 0
    with pytest.raises(ValueError, match="invalid size=lots"):
        runmounts._tmpfs_size(v)
