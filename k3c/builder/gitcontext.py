"""Git build contexts: a repository an ImageBuild names, cloned without letting it reach the node.

The URL, the ref and the repository's submodules come from whoever may create an ImageBuild, and git runs
as root on the node. So, as BuildKit's git source does:

- A URL or ref that starts with ``-`` is refused (``git fetch origin --upload-pack=CMD`` runs CMD), and
  ``--end-of-options`` comes before them all the same; an ssh host or user may not start with ``-``.
- Only the ``https``, ``http``, ``ssh`` (``ssh://`` or ``user@host:path``) and ``git`` transports: no
  remote helpers (``ext::``, which runs a command, ``fd::``, ``foo::``, ``foo://``). ``file://`` URLs and
  paths on the node read the node's filesystem, like ``spec.context.dir``: only where the operator allows it
  (``--allow-local-git-contexts``; ``k3c daemon``'s embedded mode does, as docker.sock trusts its users).
  ``GIT_ALLOW_PROTOCOL`` holds git to the same list, submodules included.
- Submodule URLs and paths are checked by the same rules before ``git submodule update`` fetches them, one
  level at a time (each submodule's own ``.gitmodules`` before its submodules).
- git runs with a clean environment: ``HOME`` a private temporary directory, no system or global
  configuration (so no ``insteadOf`` rewrites, credential helpers or protocol overrides of the node), no
  terminal prompt, and ssh with no configuration, keys or agent of the node's user. Proxy variables of the
  operator's own environment are kept: reaching the network is the node's business.
- Credentials in a URL (``https://user:token@host/…``) never reach the build log or the build's status:
  every line git writes and every message naming the URL shows ``https://xxxxx@host/…``, as BuildKit does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path

__all__ = ["TRANSPORTS", "GitError", "check_ref", "check_url", "clone", "redact"]

#: Where output lines of git go: the build log.
LineSink = Callable[[str], None]

#: The transports a git context may use (besides ``file`` where the operator allows it).
TRANSPORTS = ("https", "http", "ssh", "git")
#: Submodules inside submodules are followed this deep (a repository can name itself).
MAX_SUBMODULE_DEPTH = 8
#: ssh as git runs it: no config file, no keys or agent of the node's user, no questions asked. (Without
#: known hosts to check against, host keys are accepted, as BuildKit does when none are given.)
SSH_COMMAND = ("ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=none "
               "-o IdentityAgent=none -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR")
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")  # transport::address: a remote helper
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GitError(Exception):
    """The git context is refused or cannot be cloned; the message is the build's failure."""


def check_ref(ref: str) -> None:
    """A ref (branch, tag or commit) may not look like an option or hold spaces or control characters."""
    if ref.startswith("-"):
        raise GitError(f"invalid git ref {ref!r}: it may not start with '-'")
    if _CONTROL.search(ref) or " " in ref:
        raise GitError(f"invalid git ref {ref!r}: no spaces or control characters")


def transport(url: str) -> str:
    """The transport git would use for ``url``: a scheme, ``ssh`` for ``host:path``, ``file`` for a path,
    or ``NAME::`` for a remote helper (git's own reading: a colon before any slash means scp-like ssh)."""
    if m := _HELPER.match(url):
        return m.group(0)
    if m := _SCHEME.match(url):
        return m.group(1).lower()
    colon, slash = url.find(":"), url.find("/")
    return "ssh" if colon > 0 and (slash < 0 or colon < slash) else "file"


def check_url(url: str, allow_local: bool, prefix: str = "") -> str:
    """Refuse what a git context may not name (see the module doc); returns the transport. ``prefix`` says
    whose URL it is in the message (a submodule's)."""
    shown = redact(url)
    if url.startswith("-"):
        raise GitError(f"{prefix}invalid git URL {shown!r}: it may not start with '-'")
    if _CONTROL.search(url):
        raise GitError(f"{prefix}invalid git URL {shown!r}: no control characters")
    kind = transport(url)
    if kind == "file":
        if not allow_local:
            raise GitError(f"{prefix}git URL {shown!r} reads the node's filesystem (file:// or a path): refused "
                           "unless the operator runs with --allow-local-git-contexts")
        return kind
    if kind not in TRANSPORTS:
        raise GitError(f"{prefix}invalid git URL {shown!r}: only https, http, ssh and git URLs are allowed")
    if kind == "ssh" and any(part.startswith("-") for part in _ssh_user_and_host(url)):
        raise GitError(f"{prefix}invalid git URL {shown!r}: an ssh user or host may not start with '-'")
    return kind


def _ssh_user_and_host(url: str) -> tuple[str, str]:
    if _SCHEME.match(url):
        netloc = urllib.parse.urlsplit(url).netloc
    else:
        netloc = url.split(":", 1)[0]
    user, _, host = netloc.rpartition("@")
    return user, host


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact(text: str) -> str:
    """URLs in ``text`` with their credentials replaced, as BuildKit shows them (``https://xxxxx@host/…``)."""
    return _USERINFO.sub(r"\g<scheme>xxxxx@", text)


# ------------------------------------------------------------------------------------------ running git


def _environment(home: Path, allow_local: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "LC_ALL": "C", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ":".join(TRANSPORTS + (("file",) if allow_local else ())),
        "GIT_SSH_COMMAND": SSH_COMMAND,
    }
    for name in _PROXY_VARS + tuple(v.upper() for v in _PROXY_VARS):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class _Git:
    """git commands for one clone: the clean environment, output to the build log (credentials redacted)."""

    def __init__(self, env: dict[str, str], log: LineSink) -> None:
        self.env = env
        self.log = log

    async def run(self, args: list[str], cwd: Path | None, check: bool = True) -> int:
        """Run git, its output to the log; a failure is a GitError when ``check``."""
        code, _ = await self._exec(args, cwd, capture=False)
        if check and code != 0:
            raise GitError(f"git {args[0]} failed with exit code {code}")
        return code

    async def output(self, args: list[str], cwd: Path | None) -> str | None:
        """Run git for its standard output (errors to the log); None if it failed."""
        code, out = await self._exec(args, cwd, capture=True)
        return out if code == 0 else None

    async def _exec(self, args: list[str], cwd: Path | None, capture: bool) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if capture else asyncio.subprocess.STDOUT, start_new_session=True,
        )
        try:
            out, err = await proc.communicate() if capture else (await self._stream(proc), b"")
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise
        for raw in err.splitlines():
            self.log(redact(raw.decode(errors="replace")))
        return proc.returncode or 0, out.decode(errors="replace").strip()

    async def _stream(self, proc: asyncio.subprocess.Process) -> bytes:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.log(redact(raw.decode(errors="replace").rstrip("\r\n")))
        await proc.wait()
        return b""


async def clone(url: str, ref: str, dest: Path, log: LineSink, allow_local: bool) -> None:
    """Clone ``url`` at ``ref`` (default branch if empty) into the new directory ``dest``, submodules
    included, then drop the ``.git`` directories (they differ on every clone and would bust the COPY
    cache; BuildKit leaves them out too)."""
    check_ref(ref)
    check_url(url, allow_local)
    log(f"cloning {redact(url)}" + (f" at {ref}" if ref else ""))
    home = Path(tempfile.mkdtemp(prefix="git-home-", dir=dest.parent))
    try:
        git = _Git(_environment(home, allow_local), log)
        dest.mkdir(parents=True)
        await git.run(["init", "-q", str(dest)], None)
        await git.run(["remote", "add", "--end-of-options", "origin", url], dest)
        fetched = await git.run(["fetch", "-q", "--depth", "1", "origin", "--end-of-options", ref or "HEAD"],
                                dest, check=False) == 0
        if not fetched:  # a commit the server will not serve shallowly: fetch everything, then pick it
            await git.run(["fetch", "-q", "--tags", "origin", "--end-of-options",
                           "+refs/heads/*:refs/remotes/origin/*"], dest)
        commit = await _commit(git, dest, "FETCH_HEAD" if fetched else ref, url)
        await git.run(["checkout", "-q", "--detach", commit], dest)
        await _submodules(git, dest, allow_local, MAX_SUBMODULE_DEPTH)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    await asyncio.to_thread(_drop_git_dirs, dest)


async def _commit(git: _Git, repo: Path, ref: str, url: str) -> str:
    """The commit ``ref`` names after a fetch (a commit, a tag, or a branch of origin), as a hex name."""
    for name in ([ref, f"origin/{ref}"] if ref else ["FETCH_HEAD"]):
        found = await git.output(["rev-parse", "--verify", "-q", "--end-of-options", f"{name}^{{commit}}"], repo)
        if found and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", found):
            return found
    raise GitError(f"git ref {ref!r} not found in {redact(url)}")


async def _submodules(git: _Git, repo: Path, allow_local: bool, depth: int) -> None:
    """Check this level's submodules (URLs as the context's, paths inside), fetch them, then theirs."""
    if not (repo / ".gitmodules").is_file():
        return
    if depth == 0:
        raise GitError(f"submodules nest more than {MAX_SUBMODULE_DEPTH} levels deep")
    listing = await git.output(["config", "--file", ".gitmodules", "--null", "--list"], repo)
    if listing is None:
        raise GitError("cannot read .gitmodules")
    paths: list[str] = []
    for entry in listing.split("\0"):
        key, _, value = entry.partition("\n")
        m = re.fullmatch(r"submodule\.(.+)\.(url|path)", key, re.DOTALL)
        if m is None:
            continue
        name, field = m.groups()
        if field == "url" and not value.startswith(("./", "../")):  # (relative: the superproject's transport)
            check_url(value, allow_local, prefix=f"submodule {name!r}: ")
        elif field == "path":
            if value.startswith(("-", "/")) or ".." in value.split("/"):
                raise GitError(f"submodule {name!r}: invalid path {value!r}")
            paths.append(value)
    await git.run(["submodule", "update", "-q", "--init", "--depth", "1"], repo)
    for path in paths:
        await _submodules(git, repo / path, allow_local, depth - 1)


def _drop_git_dirs(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            shutil.rmtree(Path(dirpath) / ".git")
            dirnames.remove(".git")
        elif ".git" in filenames:  # a submodule's gitlink file
            (Path(dirpath) / ".git").unlink()
