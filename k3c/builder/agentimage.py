"""The node agent's image (the DaemonSet's ``k3c.local/k3c-agent:VERSION``), assembled from this host.

Where no base image can be pulled, the image is made the way the test images are: the host's Python
interpreter and standard library at their own paths, the Python packages k3c needs copied from the
environment that runs k3c (the closure of k3c's runtime requirements, as installed there), k3c itself, the
tools the agent runs (containerd and its shim, runc, ctr, nsenter, mount, ip, iptables, the CNI plugins) and
every shared library all of these load (found with ldd). Three layers, the one that changes most last:
system, Python packages, k3c.

k3c goes in as a wheel built from its source tree when it runs from one (an editable install, as in
development: the image holds the code as it is now, not a stale copy), else as the files of its installed
distribution. ``scripts/build-agent-image`` writes the image as an OCI archive; ``k3c install`` imports it
into a node runtime that lacks it (:func:`build`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Collection
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

import k3c
from k3c.oci.layout import (
    Dir,
    Entry,
    File,
    HostFile,
    ImageConfig,
    OCIImage,
    Symlink,
    build_image,
    build_layer,
)

__all__ = ["DEFAULT_TAG", "AgentImageError", "build", "source_tree"]

#: The name the DaemonSet runs (``manifests/base``) and ``k3c install`` imports.
DEFAULT_TAG = f"k3c.local/k3c-agent:{k3c.__version__}"
#: Where the Python packages and k3c go in the image (on PYTHONPATH).
SITE = "/opt/k3c/lib"
#: Commands the agent runs, by name (looked up on this host's PATH), and directories of plugins.
TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "mount", "umount", "ip",
         "iptables", "iptables-save", "iptables-restore", "ip6tables", "setpriv")
PLUGIN_DIRS = ("/usr/lib/cni", "/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/aarch64-linux-gnu/xtables")
#: Parts of the standard library the agent never imports.
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
               "lib2to3", "__pycache__"}
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


class AgentImageError(Exception):
    """The image cannot be made on this host (a tool is missing, k3c's wheel does not build)."""


class Tree:
    """The files of one layer by their path in the image, the host's symlinks kept as symlinks."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add_host(self, path: str) -> None:
        """``path`` as on the host, following and recording each symlink on the way."""
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if path in self.entries:
            return
        if os.path.islink(path):
            target = os.readlink(path)
            self.entries[path] = Symlink(target)
            self.add_host(os.path.normpath(os.path.join(os.path.dirname(path), target)))
        elif os.path.isdir(path):
            self.entries[path] = Dir()
        else:
            self.entries[path] = HostFile(path)

    def add_dir(self, top: str, skip: Collection[str] = ()) -> None:
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in [*dirs, *files]:
                full = os.path.join(root, name)
                if os.path.islink(full) or os.path.isfile(full):
                    self.add_host(full)

    def add_distribution(self, dist: metadata.Distribution) -> None:
        """The files an installed distribution put into site-packages, under :data:`SITE`."""
        for rel in dist.files or []:
            if rel.parts[0] == ".." or "__pycache__" in rel.parts:
                continue  # console scripts outside site-packages; bytecode is made again
            src = Path(str(dist.locate_file(rel)))
            if src.is_file():
                self.entries[f"{SITE}/{rel.as_posix()}"] = HostFile(src)

    def elf_files(self) -> list[str]:
        out = []
        for entry in self.entries.values():
            if isinstance(entry, HostFile):
                with open(entry.path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        out.append(os.fspath(entry.path))
        return out


def shared_libraries(files: list[str]) -> set[str]:
    """Every library the ELF ``files`` load, as ldd resolves them on this host."""
    libs: set[str] = set()
    for path in files:
        cp = subprocess.run(["ldd", path], capture_output=True, text=True)
        if cp.returncode == 0:
            libs.update(m.group(1) for m in _LDD_PATH.finditer(cp.stdout))
    return libs


def system_layer() -> Tree:
    """The host's Python (interpreter, its library, the standard library) and the tools, with their libraries."""
    tree = Tree()
    for top in ("bin", "sbin", "lib", "lib64"):  # merged /usr: /lib/... as ldd names them must resolve
        if os.path.islink(f"/{top}"):
            tree.entries[f"/{top}"] = Symlink(os.readlink(f"/{top}"))
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    tree.add_host(python)
    tree.entries["/usr/local/bin/python3"] = Symlink(python)
    stdlib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix,
                                       "installed_base": sys.base_prefix})["stdlib"]
    tree.add_dir(stdlib, STDLIB_SKIP)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise AgentImageError(f"not on this host: {', '.join(missing)} (scripts/lib/deps.sh installs them)")
    for tool in TOOLS:
        tree.add_host(str(shutil.which(tool)))
    for plugins in PLUGIN_DIRS:
        if os.path.isdir(plugins):
            tree.add_dir(plugins)
    for ca in ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/openssl.cnf"):
        if os.path.exists(ca):
            tree.add_host(ca)
    tree.entries.update({
        "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "/etc/group": b"root:x:0:\nnogroup:x:65534:\n",
        "/tmp": Dir(0o1777), "/root": Dir(0o700), "/var/lib/k3c": Dir(), "/run/k3c": Dir(),
    })
    return tree


def requirement_closure(name: str) -> list[metadata.Distribution]:
    """The installed distributions ``name``'s runtime requirements reach (no extras), ``name`` left out."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in metadata.requires(name) or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def packages_layer() -> Tree:
    """k3c's runtime requirements, copied from the installed environment into :data:`SITE`."""
    tree = Tree()
    for dist in requirement_closure("k3c"):
        tree.add_distribution(dist)
    return tree


def source_tree() -> Path | None:
    """The source tree k3c runs from (an editable install), or None for an installed wheel."""
    top = Path(k3c.__file__).resolve().parent.parent
    return top if (top / "pyproject.toml").is_file() and (top / "manifests").is_dir() else None


def k3c_layer(workdir: Path) -> Tree:
    """k3c (from a wheel of its source tree, or as installed) and its `k3c` command."""
    tree = Tree()
    source = source_tree()
    if source is None:
        tree.add_distribution(metadata.distribution("k3c"))
    else:
        cp = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "--disable-pip-version-check", "-w", str(workdir), str(source)],
                            capture_output=True, text=True)
        if cp.returncode != 0:
            raise AgentImageError(f"building k3c's wheel failed:\n{cp.stdout}{cp.stderr}")
        wheel = next(workdir.glob("k3c-*.whl"))
        unpacked = workdir / "wheel"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        for src in sorted(p for p in unpacked.rglob("*") if p.is_file()):
            tree.entries[f"{SITE}/{src.relative_to(unpacked).as_posix()}"] = HostFile(src)
    tree.entries["/usr/local/bin/k3c"] = File(b"#!/usr/local/bin/python3\nimport sys\n"
                                              b"from k3c.cli.main import entry\nsys.exit(entry())\n", 0o755)
    return tree


def build() -> OCIImage:
    """The agent's image, all in memory (layers are read while the work directory still exists)."""
    with tempfile.TemporaryDirectory(prefix="k3c-agent-image-") as tmp:
        system, packages, k3c_files = system_layer(), packages_layer(), k3c_layer(Path(tmp))
        elves = system.elf_files() + packages.elf_files() + k3c_files.elf_files()
        for lib in sorted(shared_libraries(elves)):
            if lib not in packages.entries and lib not in k3c_files.entries:
                system.add_host(lib)
        config = ImageConfig(
            env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"PYTHONPATH={SITE}",
                 "PYTHONDONTWRITEBYTECODE=1"],
            cmd=["k3c", "agent"],
            labels={"org.opencontainers.image.title": "k3c-agent",
                    "org.opencontainers.image.version": k3c.__version__},
        )
        return build_image([build_layer(t.entries) for t in (system, packages, k3c_files)], config)
