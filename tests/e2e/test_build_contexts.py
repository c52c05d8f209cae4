"""Git build contexts against real git: a smart-HTTP server (``git http-backend``, tests/support/git_http.py)
and the context preparation the build reconciler runs (k3c.builder.context), in this process.

What an ImageBuild names is untrusted: its git URL and ref must not inject options or pick a transport
that runs commands (``ext::``), submodules are held to the same rules, and the node's own git and ssh
configuration (root's HOME: insteadOf rewrites, credential helpers, keys) is never used.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k3c.builder.context import ContextError, PreparedContext, prepare_context
from tests.support.git_http import GitHTTPServer, commit_all, git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[GitHTTPServer]:
    server = GitHTTPServer(tmp_path / "served").start()
    yield server
    server.stop()


def prepare(tmp_path: Path, git_spec: dict[str, Any], **kw: Any) -> tuple[PreparedContext, list[str]]:
    lines: list[str] = []
    spec = {"context": {"git": git_spec}, "dockerfileInline": "FROM scratch\n"}
    ctx = asyncio.run(prepare_context(spec, tmp_path / "work", tmp_path / "uploads", "default", "b", lines.append,
                                      **kw))
    return ctx, lines


def refused(tmp_path: Path, git_spec: dict[str, Any], match: str, **kw: Any) -> None:
    with pytest.raises(ContextError, match=match):
        prepare(tmp_path, git_spec, **kw)
    assert list((tmp_path / "work").iterdir()) == [], "the refused clone left files"


def test_a_repository_over_http_is_cloned(tmp_path: Path, served: GitHTTPServer) -> None:
    repo = served.root / "app.git"
    first = commit_all(repo, {"app/Dockerfile": "FROM scratch\n", "app/v": "1\n", "README": "x\n"})
    commit_all(repo, {"app/v": "2\n"})
    ctx, _ = prepare(tmp_path, {"url": served.url("app.git"), "ref": "main", "subPath": "app"})
    try:
        assert (ctx.dir / "v").read_text() == "2\n" and not (ctx.dir.parent / ".git").exists()
    finally:
        ctx.cleanup()
    ctx, _ = prepare(tmp_path, {"url": served.url("app.git"), "ref": first})
    try:
        assert (ctx.dir / "app" / "v").read_text() == "1\n"
    finally:
        ctx.cleanup()


def test_refs_and_urls_that_look_like_options_are_refused(tmp_path: Path, served: GitHTTPServer) -> None:
    commit_all(served.root / "app.git", {"Dockerfile": "FROM scratch\n"})
    marker = tmp_path / "pwned"
    refused(tmp_path, {"url": served.url("app.git"), "ref": f"--upload-pack=touch {marker};git-upload-pack"},
            "invalid git ref '--upload-pack=.*': it may not start with '-'")
    refused(tmp_path, {"url": f"--upload-pack=touch {marker}"}, "invalid git URL .*: it may not start with '-'")
    refused(tmp_path, {"url": f"ssh://-oProxyCommand=touch {marker}/x"}, "invalid git URL")
    assert not marker.exists()


@pytest.mark.parametrize("url", ["ext::sh -c touch% {marker}", "fd::0", "foo::bar", "ftp://127.0.0.1/x.git",
                                 "git+ssh://host/x"])
def test_only_https_http_ssh_and_git_transports(tmp_path: Path, url: str) -> None:
    marker = tmp_path / "pwned"
    refused(tmp_path, {"url": url.format(marker=marker)}, "only https, http, ssh and git URLs are allowed")
    assert not marker.exists()


def test_local_git_contexts_need_the_operator_switch(tmp_path: Path) -> None:
    repo = tmp_path / "local"
    commit_all(repo, {"Dockerfile": "FROM scratch\n"})
    for url in (f"file://{repo}", str(repo)):
        refused(tmp_path, {"url": url}, "the node's filesystem .* --allow-local-git-contexts")


def test_a_submodule_is_held_to_the_same_rules(tmp_path: Path, served: GitHTTPServer) -> None:
    marker = tmp_path / "pwned"
    for name, url in (("ext", f"ext::sh -c touch% {marker}"), ("dash", f"--upload-pack=touch {marker}")):
        repo = served.root / f"{name}.git"
        commit_all(repo, {"Dockerfile": "FROM scratch\n"})
        sub = commit_all(served.root / "sub.git", {"f": "x\n"})
        git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub},evil")
        (repo / ".gitmodules").write_text(f'[submodule "evil"]\n\tpath = evil\n\turl = {url}\n')
        commit_all(repo, {})
        refused(tmp_path, {"url": served.url(f"{name}.git")}, "submodule 'evil': invalid git URL")
    assert not marker.exists()


def test_the_nodes_git_configuration_is_not_used(tmp_path: Path, served: GitHTTPServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """root's ~/.gitconfig (an insteadOf rewrite, a credential helper, ext allowed) must not apply."""
    commit_all(served.root / "app.git", {"Dockerfile": "FROM scratch\n", "which": "the named repository\n"})
    commit_all(served.root / "other.git", {"Dockerfile": "FROM scratch\n", "which": "a rewritten URL\n"})
    commit_all(served.root / "secret.git", {"Dockerfile": "FROM scratch\n"})
    home, marker = tmp_path / "home", tmp_path / "helper-ran"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f'[url "{served.url("other.git")}"]\n\tinsteadOf = {served.url("app.git")}\n'
        f'[credential]\n\thelper = "!touch {marker}; echo username=u; echo password=p; true"\n'
        "[protocol]\n\tallow = always\n")
    monkeypatch.setenv("HOME", str(home))
    ctx, _ = prepare(tmp_path, {"url": served.url("app.git")})
    try:
        assert (ctx.dir / "which").read_text() == "the named repository\n"
    finally:
        ctx.cleanup()
    refused(tmp_path, {"url": served.url("private/secret.git")}, "git fetch failed")
    assert not marker.exists(), "the node's credential helper ran"


def test_with_the_switch_local_repositories_clone_but_options_are_still_refused(tmp_path: Path) -> None:
    """What ``k3c daemon`` (embedded) allows: the same rules otherwise, so the confirmed exploit (a local
    URL, where git runs --upload-pack's command itself) stays closed."""
    repo = tmp_path / "local"
    commit_all(repo, {"Dockerfile": "FROM scratch\n", "f": "local\n"})
    for url in (f"file://{repo}", str(repo)):
        ctx, _ = prepare(tmp_path, {"url": url, "ref": "main"}, allow_local_git=True)
        try:
            assert (ctx.dir / "f").read_text() == "local\n"
        finally:
            ctx.cleanup()
    marker = tmp_path / "pwned"
    refused(tmp_path, {"url": str(repo), "ref": f"--upload-pack=touch {marker};git-upload-pack"},
            "it may not start with '-'", allow_local_git=True)
    assert not marker.exists()


def test_credentials_in_the_url_are_redacted(tmp_path: Path, served: GitHTTPServer) -> None:
    """``https://user:token@host/…`` shows as ``https://xxxxx@host/…`` (BuildKit's form) in every line of
    the build log and in the failure, whether git or k3c says it."""
    commit_all(served.root / "app.git", {"Dockerfile": "FROM scratch\n"})
    secret = "k3cuser:s3cr3t-tok"
    ctx, lines = prepare(tmp_path, {"url": served.url("app.git", secret)})
    ctx.cleanup()
    assert f"cloning http://xxxxx@127.0.0.1:{served.port}/app.git" in lines
    for git_spec in ({"url": served.url("app.git", secret), "subPath": "nope"},
                     {"url": served.url("missing.git", secret)},
                     {"url": served.url("app.git", secret), "ref": "no-such-branch"}):
        lines = []
        spec = {"context": {"git": git_spec}, "dockerfileInline": "FROM scratch\n"}
        with pytest.raises(ContextError) as failure:
            asyncio.run(prepare_context(spec, tmp_path / "work", tmp_path / "uploads", "default", "b", lines.append))
        assert "s3cr3t" not in str(failure.value) and not [line for line in lines if "s3cr3t" in line], lines
        assert any("xxxxx@127.0.0.1" in line for line in lines)
