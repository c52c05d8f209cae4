"""Unit tests of the build pieces that need no daemon: .dockerignore, Dockerfile parsing, buildah output
parsing, the CLI's context decisions and tars."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest

from k3c.builder.buildah import StepParser
from k3c.builder.dockerfile import external_images, instructions, substitute
from k3c.builder.dockerignore import IgnoreMatcher, parse, walk
from k3c.cli.build import git_context, is_git_url, is_loopback_server, make_context_tar, parse_secrets

# moby/patternmatcher's TestMatches table (pattern, path, matches)
MOBY_CASES = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "/", True), ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**", "dir/file/", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True), ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True),
    ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True), ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True),
    (".*", ".foo", True), (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True), ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False), ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MOBY_CASES)
def test_pattern_matches_like_moby(pattern: str, path: str, expected: bool) -> None:
    assert IgnoreMatcher.from_lines([pattern]).excluded(path) is expected


def test_docker_semantics_not_gitignore() -> None:
    m = IgnoreMatcher.from_lines(parse("*.log\n"))
    assert m.excluded("a.log")
    assert not m.excluded("sub/a.log"), "in Docker *.log only matches at the context root"
    assert IgnoreMatcher.from_lines(["**/*.log"]).excluded("sub/deep/a.log")


def test_exceptions_last_match_wins() -> None:
    m = IgnoreMatcher.from_lines(parse("**/*.log\n!**/keep.log\ndir\n!dir/keep\nsecret*\n!secret.pub\nsecret.pub\n"))
    assert m.excluded("x.log") and m.excluded("a/b/x.log")
    assert not m.excluded("keep.log") and not m.excluded("a/keep.log")
    assert m.excluded("dir") and m.excluded("dir/other") and not m.excluded("dir/keep")
    assert m.excluded("secret.pub"), "the last matching line decides"
    assert m.has_exclusions


def test_parse_normalizes_like_readall() -> None:
    text = "\ufeff# comment\n  /abs/path  \n\n./a/../b/\n!  /c\n  # not a comment when indented\n"
    assert parse(text) == ["abs/path", "b", "!c", "# not a comment when indented"]


def test_exclamation_alone_is_an_error() -> None:
    with pytest.raises(ValueError):
        IgnoreMatcher.from_lines(["!"])


#: The .dockerignore that froze the operator (issue 10): eleven ``**/`` before a name that never matches
#: made a backtracking matcher try every way to split a 24-level path among them.
REDOS_PATTERN = "**/" * 11 + "nomatch"
DEEP_PATH = "/".join(["d"] * 24) + "/file"


@pytest.mark.timeout(20)
def test_many_double_stars_match_in_linear_time() -> None:
    m = IgnoreMatcher.from_lines(parse(REDOS_PATTERN + "\n" + "**/" * 11 + "d/**/x*y\n"))
    start = time.monotonic()
    assert not m.excluded(DEEP_PATH)
    assert not m.excluded(DEEP_PATH + "/" + "e" * 200)
    assert time.monotonic() - start < 0.5, "matching is linear in the path and the pattern"
    assert IgnoreMatcher.from_lines(["**/" * 11 + "file"]).excluded(DEEP_PATH), "repeated ** still match"


def test_pattern_count_and_length_are_capped() -> None:
    from k3c.builder.dockerignore import MAX_PATTERN_BYTES, MAX_PATTERNS, IgnoreFileError

    assert len(parse("a\n" * MAX_PATTERNS)) == MAX_PATTERNS
    with pytest.raises(IgnoreFileError) as err:
        parse("a\n" * (MAX_PATTERNS + 1))
    assert str(err.value) == f".dockerignore: more than {MAX_PATTERNS} patterns"
    assert parse("x" * MAX_PATTERN_BYTES) == ["x" * MAX_PATTERN_BYTES]
    with pytest.raises(IgnoreFileError) as err:
        parse("ok\n# comment\n" + "y" * (MAX_PATTERN_BYTES + 1) + "\n")
    assert str(err.value) == f".dockerignore: line 3: pattern longer than {MAX_PATTERN_BYTES} bytes"


def test_undecodable_names_match_as_go_reads_them() -> None:
    """A byte that is not UTF-8 is one character to ``?`` and ``*``, as in Go's regexp (RuneError)."""
    name = b"a\xffb".decode("utf-8", "surrogateescape")
    assert IgnoreMatcher.from_lines(["a?b"]).excluded(name)
    assert IgnoreMatcher.from_lines(["a*"]).excluded(name + "/c")
    assert not IgnoreMatcher.from_lines(["a??b"]).excluded(name)


def test_walk_enters_excluded_dirs_only_for_exceptions(tmp_path: Path) -> None:
    for rel in ("a.txt", "b.log", "keep.log", "sub/c.log", "sub/d.txt", "node_modules/x/y.js", "docs/a.md",
                "docs/readme.md", "Dockerfile"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / ".dockerignore").write_text("*.log\n!keep.log\nnode_modules\ndocs/**\n!docs/readme.md\nDockerfile\n")
    from k3c.builder.dockerignore import load

    kept = list(walk(tmp_path, load(tmp_path), keep=["Dockerfile", ".dockerignore"]))
    assert kept == [".dockerignore", "Dockerfile", "a.txt", "docs", "docs/readme.md", "keep.log", "sub",
                    "sub/c.log", "sub/d.txt"]


def test_context_tar_is_root_owned_and_filtered(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "sub" / "x.txt").write_text("x")
    (ctx / "skip.tmp").write_text("no")
    (ctx / "tool.sh").write_text("#!/bin/sh\n")
    (ctx / "tool.sh").chmod(0o755)
    (ctx / ".dockerignore").write_text("*.tmp\nDockerfile\n")
    tar_path = make_context_tar(ctx, "Dockerfile")
    try:
        with tarfile.open(tar_path) as tar:
            members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [".dockerignore", "Dockerfile", "sub", "sub/x.txt", "tool.sh"]
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        assert members["tool.sh"].mode & 0o777 == 0o755
    finally:
        tar_path.unlink()


def test_instructions_join_continuations_and_skip_comments() -> None:
    text = "# escape=`\nFROM a `\n  AS b\n# c\nRUN echo 1 `\n# inner\n  && echo 2\n"
    assert list(instructions(text)) == [("FROM", "a AS b"), ("RUN", "echo 1 && echo 2")]


def test_substitute_forms() -> None:
    env = {"A": "x", "E": ""}
    assert substitute("$A-${A}-${B:-d}-${E:-d}-${E-d}-${A:+y}-${B:+y}", env) == "x-x-d-d--y-"


def test_external_images_resolve_args_and_skip_stages() -> None:
    text = (
        "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-1.36} AS build\nRUN make\n"
        "FROM --platform=$BUILDPLATFORM build AS test\nFROM scratch\nCOPY --from=build /a /a\n"
        "COPY --from=alpine:3 /etc/os-release /\nCOPY --from=0 /b /b\n"
        "RUN --mount=type=bind,from=tools,target=/t true\n"
    )
    assert external_images(text) == ["busybox:1.36", "alpine:3", "tools"]
    assert external_images(text, {"BASE": "k3c.io/base", "TAG": "7"})[0] == "k3c.io/base:7"
    from k3c.oci.layout import host_architecture

    arch = "img-" + host_architecture()
    assert external_images("ARG TARGETARCH\nFROM img-$TARGETARCH\n") == [arch], "BuildKit's automatic ARGs count"


def test_step_parser_reports_step_and_exit_code() -> None:
    class Sink:
        def __init__(self) -> None:
            self.lines: list[str] = []
            self.steps: list[str] = []

        def line(self, text: str) -> None:
            self.lines.append(text)

        def step(self, text: str) -> None:
            self.steps.append(text)

    sink = Sink()
    parser = StepParser(sink)
    for line in ["[1/2] STEP 1/2: FROM busybox AS a", "--> Using cache 123", "[2/2] STEP 2/3: RUN echo bad; exit 3",
                 "bad", 'Error: building at STEP "RUN echo bad; exit 3": exit status 3']:
        parser(line)
    err = parser.failure(3)
    assert sink.steps == ["[1/2] STEP 1/2: FROM busybox AS a", "[2/2] STEP 2/3: RUN echo bad; exit 3"]
    assert parser.cached == 1
    assert err.step == "[2/2] STEP 2/3: RUN echo bad; exit 3" and err.exit_code == 3

    other = StepParser(sink)
    other("STEP 2/2: COPY nothere /")
    other('Error: building at STEP "COPY nothere /": checking on sources: no such file or directory')
    failed = other.failure(125)
    assert failed.exit_code is None and "no such file" in failed.message and failed.step == "STEP 2/2: COPY nothere /"


@pytest.mark.parametrize(("ref", "git"), [
    ("git://h/r", True), ("git@github.com:o/r.git", True), ("github.com/o/r", True),
    ("https://h/o/r.git", True), ("https://h/o/r.git#main:app", True), ("https://h/o/r", False),
    (".", False), ("/src/app", False),
])
def test_git_urls_like_docker(ref: str, git: bool) -> None:
    assert is_git_url(ref) is git


def test_git_fragment() -> None:
    assert git_context("https://h/r.git#v1:sub/dir") == {"git": {"url": "https://h/r.git", "ref": "v1",
                                                                 "subPath": "sub/dir"}}
    assert git_context("github.com/o/r") == {"git": {"url": "https://github.com/o/r"}}


def test_loopback_server() -> None:
    assert is_loopback_server("https://127.0.0.1:6443") and is_loopback_server("https://localhost:1")
    assert is_loopback_server("https://[::1]:6443") and not is_loopback_server("https://10.0.0.1:6443")


def test_secrets_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tok").write_text("s3cret")
    monkeypatch.setenv("MY_TOKEN", "fromenv")
    assert parse_secrets([f"id=tok,src={tmp_path / 'tok'}", "id=env1,env=MY_TOKEN"]) == {
        "tok": b"s3cret", "env1": b"fromenv"}


@pytest.mark.parametrize(("url", "kind"), [
    ("https://github.com/o/r.git", "https"), ("HTTP://h/r", "http"), ("git://h/r", "git"),
    ("ssh://git@h:22/r", "ssh"), ("git@github.com:o/r.git", "ssh"), ("h:r", "ssh"),
    ("file:///srv/r", "file"), ("/srv/r", "file"), ("./r:x", "file"), ("r", "file"),
    ("ext::sh -c x", "ext::"), ("fd::0", "fd::"), ("git-remote-x::y", "git-remote-x::"), ("foo://h/r", "foo"),
])
def test_git_transports_read_as_git_reads_them(url: str, kind: str) -> None:
    from k3c.builder.gitcontext import transport

    assert transport(url) == kind



def test_git_credentials_are_redacted_like_buildkit() -> None:
    from k3c.builder.gitcontext import redact

    assert redact("fatal: unable to access 'https://bob:ghp_s3cret@host/o/r.git/': 404") == \
        "fatal: unable to access 'https://xxxxx@host/o/r.git/': 404"
    assert redact("cloning https://token@host/r and ssh://git@h/r") == "cloning https://xxxxx@host/r and ssh://xxxxx@h/r"
    assert redact("git@github.com:o/r.git https://host/r") == "git@github.com:o/r.git https://host/r"
