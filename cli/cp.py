"""`k3c cp`: files between a container and the local filesystem (or a tar on stdin/stdout), docker's rules.

The container side is the LocalContainer's `archive` subresource (k3c.streams.archive): a HEAD stats a
path, a GET returns a tar of it, a PUT extracts a tar into a directory. What goes where follows docker's
cp (its archive.PrepareArchiveCopy): into an existing directory a source keeps its name; a missing
destination takes the source's place under the destination's name; `SRC/.` copies a directory's
contents; a directory cannot replace a file. `-L` follows a symlink named as the source, `-a` keeps the
owners. Local extraction uses the project's safe extractor (k3c.untar), so a tar from a container cannot
write outside the destination either.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import sys
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from k3c.api import LOCAL_CONTAINERS
from k3c.cli.common import Containers, Session, Subcommands, add_command, command, session
from k3c.cli.errors import CLIError

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
_GO_DIR, _GO_SYMLINK = 1 << 31, 1 << 27


def register(sub: Subcommands) -> None:
    p = add_command(sub, "cp", "Copy files/folders between a container and the local filesystem",
                    usage="k3c cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                          "       k3c cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.set_defaults(func=cp_cmd)


# ---- docker's path rules ----------------------------------------------------------------------------
def split_cp_arg(arg: str) -> tuple[str, str]:
    """``CONTAINER:PATH`` → (container, path); an absolute path or ``./x:y`` is local (container '')."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def asserts_directory(path: str) -> bool:
    return path.endswith(("/", "/.")) or path == "."


def split_dir_entry(path: str) -> tuple[str, str]:
    """docker's SplitPathDirEntry: ``/etc/.`` → (/etc, .), ``a/b/`` → (a, b)."""
    cleaned = os.path.normpath(path)
    if path.endswith("/.") or path == ".":
        cleaned = cleaned + "/." if cleaned != "." else "."
        return os.path.dirname(cleaned) or ".", "."
    return os.path.dirname(cleaned) or ("/" if cleaned.startswith("/") else "."), os.path.basename(cleaned) or "/"


@dataclass
class CopyInfo:
    """docker's archive.CopyInfo: a path, whether it exists and is a directory, and a name to rebase to."""

    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""


def prepare(src: CopyInfo, dst: CopyInfo) -> tuple[str, str | None]:
    """docker's PrepareArchiveCopy: (the directory to extract into, the name the source's base becomes;
    None: it keeps its own, or the one `-L` gave it)."""
    dst_dir, dst_base = split_dir_entry(dst.path)
    if dst.exists and dst.is_dir:
        return dst.path, None
    if dst.exists and src.is_dir:
        raise CLIError("cannot copy directory", 1)
    if not dst.exists and not src.is_dir and asserts_directory(dst.path):
        raise CLIError("no such directory", 1)
    return dst_dir, dst_base


def rebased(name: str, old: str, new: str) -> str:
    """A member name with its leading ``old`` component renamed ``new`` (docker's RebaseArchiveEntries)."""
    if new == old:
        return name
    if old == ".":
        rest = "" if name in (".", "./") else name.removeprefix("./")
        return new + ("/" + rest if rest else "")
    if name in (old, old + "/"):
        return new
    if name.startswith(old + "/"):
        return new + "/" + name[len(old) + 1:]
    return name


# ---- the command ------------------------------------------------------------------------------------
@command()
def cp_cmd(args: argparse.Namespace) -> int:
    src_container, src_path = split_cp_arg(args.source)
    dst_container, dst_path = split_cp_arg(args.destination)
    if src_container and dst_container:
        raise CLIError("copying between containers is not supported", 1)
    if not src_container and not dst_container:
        raise CLIError("must specify at least one container source", 1)
    if not (src_path if src_container else dst_path):
        raise CLIError("filepath cannot be empty", 1)
    s = session(args)
    if src_container:
        return _from_container(s, src_container, src_path, dst_path, args.follow_link)
    return _to_container(s, dst_container, dst_path, src_path, args.follow_link, args.archive)


def _archive_path(s: Session, container: str, path: str) -> tuple[str, str]:
    obj = Containers(s).get(container)
    url = s.path(LOCAL_CONTAINERS, obj["metadata"]["name"], "archive")
    return url, url + "?" + urllib.parse.urlencode({"path": path})


def _stat(s: Session, url: str, container: str, path: str) -> dict[str, Any] | None:
    """The container path's stat, or None if it does not exist."""
    status, headers, body = raw_request(s, "HEAD", url)
    if status == 404:
        return None
    if status >= 400:
        raise CLIError(f"Error response from daemon: {error_message(body)}", 1)
    value = headers.get(PATH_STAT_HEADER, "")
    doc: dict[str, Any] = json.loads(base64.b64decode(value)) if value else {}
    return doc


def raw_request(s: Session, method: str, url: str, body: IO[bytes] | None = None,
             out: IO[bytes] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw request on a connection of its own (a tar streams through, never held whole)."""
    conn = s.client.connection(unbounded=True)
    try:
        headers = s.client.headers("application/x-tar" if body is not None else None, accept="*/*")
        if body is not None:
            headers["Transfer-Encoding"] = "chunked"
        conn.request(method, url, body=body, headers=headers, encode_chunked=body is not None)
        resp = conn.getresponse()
        if resp.status < 400 and out is not None:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
            return resp.status, dict(resp.headers), b""
        return resp.status, dict(resp.headers), resp.read() if method != "HEAD" else b""
    finally:
        conn.close()


def error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or body.decode(errors="replace"))
    except ValueError:
        return body.decode(errors="replace").strip()


def _from_container(s: Session, container: str, src: str, dst: str, follow: bool) -> int:
    base_url, url = _archive_path(s, container, src)
    rebase = ""
    if follow:
        st = _stat(s, url, container, src)
        if st is not None and st.get("mode", 0) & _GO_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(split_dir_entry(src)[0], target)
            rebase = split_dir_entry(src)[1]
            src = target
            url = base_url + "?" + urllib.parse.urlencode({"path": src})
    with tempfile.TemporaryFile() as spool:
        status, headers, body = raw_request(s, "GET", url, out=spool)
        if status == 404:
            raise CLIError(f"Error: No such container:path: {container}:{src}", 1)
        if status >= 400:
            raise CLIError(f"Error response from daemon: {error_message(body)}", 1)
        spool.seek(0)
        if dst == "-":
            while chunk := spool.read(1 << 16):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return 0
        value = headers.get(PATH_STAT_HEADER, "")
        st = json.loads(base64.b64decode(value)) if value else {}
        info = CopyInfo(src, True, bool(st.get("mode", 0) & _GO_DIR), rebase)
        _extract_local(spool, info, _destination(dst))
    return 0


def _destination(path: str) -> CopyInfo:
    """docker's CopyInfoDestinationPath: symlinks at the destination followed; a missing one needs its parent."""
    seen = 0
    while os.path.islink(path.rstrip("/") or "/"):
        seen += 1
        if seen > 10:
            raise CLIError(f"too many symlinks in {path}", 1)
        target = os.readlink(path.rstrip("/"))
        path = target if target.startswith("/") else os.path.join(split_dir_entry(path)[0], target)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = split_dir_entry(path)[0]
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                raise CLIError("not a directory", 1)
        except FileNotFoundError:
            raise CLIError(f"stat {parent}: no such file or directory", 1) from None
        return CopyInfo(path)
    return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))


def _extract_local(spool: IO[bytes], src: CopyInfo, dst: CopyInfo) -> None:
    from k3c.untar import Extractor, Options, UntarError, open_archive

    into, new_base = prepare(src, dst)
    old_base = split_dir_entry(src.path)[1]  # what the container named the entries
    final = new_base if new_base is not None else (src.rebase_name or old_base)  # (-L: the link's own name)
    try:
        with open_archive(fileobj=spool) as tar, Extractor(_local_dir(into), Options(mode_mask=0o7777)) as out:
            for member in tar:
                member.name = rebased(member.name, old_base, final)
                if member.islnk():
                    member.linkname = rebased(member.linkname, old_base, final)
                out.extract(tar, member)
    except (tarfile.TarError, UntarError) as err:
        raise CLIError(f"Error: invalid archive from the container: {err}", 1) from None


def _local_dir(path: str) -> Path:
    return Path(path)


def _to_container(s: Session, container: str, dst: str, src: str, follow: bool, keep_owners: bool) -> int:
    base_url, url = _archive_path(s, container, dst)
    dst_info = CopyInfo(dst)
    st = _stat(s, url, container, dst)
    if st is not None and st.get("mode", 0) & _GO_SYMLINK:
        target = st.get("linkTarget") or ""
        if not target.startswith("/"):
            target = os.path.join(split_dir_entry(dst)[0], target)
        dst_info.path = target
        st = _stat(s, base_url + "?" + urllib.parse.urlencode({"path": target}), container, target)
    if st is not None:
        dst_info.exists, dst_info.is_dir = True, bool(st.get("mode", 0) & _GO_DIR)
    with tempfile.TemporaryFile() as spool:
        if src == "-":
            if not dst_info.is_dir:
                raise CLIError(f'destination "{container}:{dst}" must be a directory', 1)
            into = dst_info.path
            source: IO[bytes] = sys.stdin.buffer
        else:
            into = _local_tar(src, follow, dst_info, spool)
            spool.seek(0)
            source = spool
        put = base_url + "?" + urllib.parse.urlencode({"path": into, "copyUIDGID": "true" if keep_owners else "false"})
        status, _, body = raw_request(s, "PUT", put, body=source)
    if status == 404:
        raise CLIError(f"Error: No such container:path: {container}:{dst}", 1)
    if status >= 400:
        raise CLIError(f"Error response from daemon: {error_message(body)}", 1)
    return 0


def _local_tar(src: str, follow: bool, dst: CopyInfo, out: IO[bytes]) -> str:
    """The tar of a local source as docker's TarResource makes it, named for the destination; the
    directory it is to be extracted into."""
    path, rebase = src, ""
    if follow:
        path = os.path.realpath(src.rstrip("/") or "/")
        if src.endswith("/."):
            path += "/."
        rebase = split_dir_entry(src)[1]
    try:
        st = os.lstat(path) if not path.endswith("/.") else os.stat(path)
    except FileNotFoundError:
        raise CLIError(f"lstat {path}: no such file or directory", 1) from None
    info = CopyInfo(path, True, stat.S_ISDIR(st.st_mode), rebase)
    into, new_base = prepare(info, dst)
    base = new_base if new_base is not None else (rebase or split_dir_entry(path)[1])
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(path, arcname=base, recursive=True)
    return into
