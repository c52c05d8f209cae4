"""A key for a whole build: same key, same image, so a rebuild with nothing changed need not run the builder.

Why: buildah answers an unchanged build from its layer cache, but still takes a quarter of a second or
more (one cache lookup and image commit per step); BuildKit answers the same from content checksums in
milliseconds. This key is that checksum for the build as a whole: the Dockerfile, build args, target,
labels, secret values, the containerd digests of the base images, and the content and mode of every file
of the context that .dockerignore keeps (mtimes do not count, as in buildah's and docker's caches).

File digests are remembered by (device, inode, size, mtime, ctime), like git's index, so a 50 MB context
that did not change costs a few stat calls. No key (None) is given when the result could differ for the
same inputs without us seeing it: a base image that is not in containerd (a registry may have moved the
tag), ``ADD`` of a URL, or a Dockerfile-specific ignore file we do not interpret.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from k3c.builder.dockerfile import instructions
from k3c.builder.dockerignore import IgnoreMatcher, load, walk
from k3c.builder.rootfs import resolve

__all__ = ["ContextHasher", "KeyInputs", "feed"]

_REMOTE_ADD = re.compile(r"(^|\s)(https?://|git@|git://)")
_CHUNK = 1 << 20


@dataclass
class KeyInputs:
    """Everything a build's outcome depends on, besides the context files."""

    engine: str
    dockerfile: bytes
    build_args: Mapping[str, str]
    target: str
    labels: Mapping[str, str]
    secrets: Mapping[str, bytes]
    bases: Mapping[str, str]  #: normalized base image name -> containerd manifest digest
    network: str = "default"  #: RUN steps' network (BuildRequest.network)


class ContextHasher:
    """Computes build keys; keeps file digests between builds (one instance per engine)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, int], tuple[int, int, int, str]] = {}

    def key(self, context: Path, dockerfile_path: Path, inputs: KeyInputs) -> str | None:
        """The build key, or None when the build must run (see the module docstring)."""
        text = inputs.dockerfile.decode(errors="replace")
        for keyword, rest in instructions(text):
            if keyword == "ADD" and _REMOTE_ADD.search(rest):
                return None
        if any(p.name.endswith(".dockerignore") and p.name != ".dockerignore" for p in context.iterdir()):
            return None
        h = hashlib.sha256()
        for part in (inputs.engine, inputs.target):
            feed(h, part.encode())
        if inputs.network != "default":  # only then, so the keys of builds made before it stay valid
            feed(h, f"network={inputs.network}".encode())
        feed(h, inputs.dockerfile)
        for mapping in (inputs.build_args, inputs.labels, inputs.bases):
            for k in sorted(mapping):
                feed(h, k.encode())
                feed(h, mapping[k].encode())
        for sid in sorted(inputs.secrets):
            feed(h, sid.encode())
            feed(h, hashlib.sha256(inputs.secrets[sid]).digest())
        self._hash_context(h, context, dockerfile_path)
        return h.hexdigest()

    def _hash_context(self, h: hashlib._Hash, context: Path, dockerfile_path: Path) -> None:
        matcher: IgnoreMatcher = load(context)
        keep = [".dockerignore"]
        try:
            keep.append(str(dockerfile_path.relative_to(context)))
        except ValueError:
            pass
        for rel in walk(context, matcher, keep=keep):
            path = context / rel
            st = path.lstat()
            feed(h, rel.encode())
            feed(h, f"{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode):o}".encode())
            if stat.S_ISREG(st.st_mode):
                feed(h, self.file_digest(path, st).encode())
            elif stat.S_ISLNK(st.st_mode):
                feed(h, os.readlink(path).encode())

    def file_digest(self, path: Path, st: os.stat_result) -> str:
        ident = (st.st_dev, st.st_ino)
        sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self._memo.get(ident)
        if known is not None and known[:3] == sig:
            return known[3]
        d = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                d.update(chunk)
        digest = d.hexdigest()
        self._memo[ident] = (*sig, digest)
        return digest


    def sources_digest(self, context: Path, kept_sorted: list[str], sources: list[str]) -> str:
        """Digest of what a COPY takes from the context: every kept file under each source (or glob match),
        by path, type, mode and content, so one step's cache key changes exactly when its input does.

        ``kept_sorted`` lists the context paths .dockerignore keeps, sorted: everything below ``dir`` is
        then one run starting at ``dir/``.
        """
        h = hashlib.sha256()
        for src in sources:
            pattern = posixpath.normpath("/" + src).lstrip("/")
            if pattern in ("", "."):
                roots = [""]
            elif any(c in pattern for c in "*?["):
                roots = [p for p in kept_sorted if _glob_match(pattern, p)]
            else:
                roots = [pattern]
            for rel in roots:
                feed(h, f"source:{rel}".encode())
                paths = _subtree(kept_sorted, rel)
                if rel and (context / rel).is_symlink():  # COPY follows it: what it leads to is the input
                    paths += _subtree(kept_sorted, str(resolve(context, "/" + rel).relative_to(context)))
                for p in paths:
                    self._hash_entry(h, context, p)
        return h.hexdigest()

    def _hash_entry(self, h: hashlib._Hash, context: Path, rel: str) -> None:
        path = context / rel
        try:
            st = path.lstat()
        except OSError:
            feed(h, f"missing:{rel}".encode())
            return
        feed(h, f"{rel}:{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode):o}".encode())
        if stat.S_ISREG(st.st_mode):
            feed(h, self.file_digest(path, st).encode())
        elif stat.S_ISLNK(st.st_mode):
            feed(h, os.readlink(path).encode())


def _subtree(kept_sorted: list[str], rel: str) -> list[str]:
    """``rel`` and every kept path below it (the whole context for ``""``)."""
    paths = [rel] if rel and rel != "." else []
    start = bisect.bisect_left(kept_sorted, rel + "/") if rel and rel != "." else 0
    for p in kept_sorted[start:]:
        if rel and rel != "." and not p.startswith(rel + "/"):
            break
        paths.append(p)
    return paths


def _glob_match(pattern: str, path: str) -> bool:
    """Go's filepath.Match per segment: ``*`` never crosses a ``/``."""
    segs, parts = pattern.split("/"), path.split("/")
    return len(segs) == len(parts) and all(fnmatch.fnmatchcase(p, s) for p, s in zip(parts, segs, strict=True))


def feed(h: hashlib._Hash, data: bytes | str) -> None:
    """Add one field to a key, length-prefixed, so no two different input lists feed the same bytes."""
    raw = data.encode() if isinstance(data, str) else data
    h.update(len(raw).to_bytes(8, "big"))
    h.update(raw)
