"""k3c laid out as it is installed, for the tools that find modules by walking directories.

pyproject installs ``k3c.cli`` and ``k3c.operator`` from the top-level ``cli/`` and ``operator/``
(package-dir), and ``operator/`` deliberately has no ``__init__.py`` (it must never shadow the stdlib
``operator``). Tools that name a module by its place on disk (import-linter's grimp, mypy) see neither
as part of ``k3c``: the view built here is ``k3c`` with every package-dir in its installed place, as
symlinks to the real files plus an ``__init__.py`` for a package-dir that has none. Used by
``scripts/lint-imports`` and ``scripts/mypy``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SKIP = {"__pycache__"}


def package_dirs() -> dict[str, str]:
    """pyproject's package-dirs under ``k3c``: installed name (``cli``) → repo directory (``cli``)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    placed = {}
    for package, directory in setuptools.get("package-dir", {}).items():
        parent, _, name = package.rpartition(".")
        if parent != "k3c":
            sys.exit(f"{sys.argv[0]}: cannot place package-dir {package!r} (only k3c.X is handled)")
        placed[name] = directory
    return placed


def link_tree(source: Path, dest: Path) -> None:
    """``dest`` as a directory of symlinks to ``source``'s entries, with an ``__init__.py`` if it lacks one."""
    dest.mkdir()
    for entry in source.iterdir():
        if entry.name not in SKIP:
            (dest / entry.name).symlink_to(entry)
    if not (dest / "__init__.py").exists():
        (dest / "__init__.py").touch()


def build_view(root: Path) -> None:
    """``root/k3c``: the k3c package with every package-dir of pyproject.toml in its installed place."""
    link_tree(REPO / "k3c", root / "k3c")
    for name, directory in package_dirs().items():
        link_tree(REPO / directory, root / "k3c" / name)
