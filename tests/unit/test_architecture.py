"""ARCHITECTURE.md stays true: every module is listed with its job, and its picture of the layers is the one
import-linter enforces (pyproject.toml)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "ARCHITECTURE.md").read_text()
PACKAGE_DIRS = ("k3c", "cli", "operator")


def _modules() -> list[str]:
    out = []
    for top in PACKAGE_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if "_pb2" in rel or "/proto/" in rel or "__pycache__" in rel:
                continue
            out.append(rel)
    return out


def _listed() -> dict[str, str]:
    """``| `path` | job |`` rows of the "Where things live" section."""
    section = DOC[DOC.index("## Where things live"):DOC.index("## One API request")]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([^`]+\.py)` \| (.+) \|$", section, re.M)}


def test_every_module_is_listed_with_a_job() -> None:
    listed = _listed()
    missing = [m for m in _modules() if m not in listed]
    assert not missing, f"ARCHITECTURE.md's 'Where things live' lacks: {missing}"
    stale = [m for m in listed if not (REPO / m).exists()]
    assert not stale, f"ARCHITECTURE.md lists modules that no longer exist: {stale}"
    assert all(len(job) > 10 for job in listed.values())


def test_the_layer_picture_is_the_enforced_one() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    picture = DOC[DOC.index("## Layers"):DOC.index("## Where things live")]
    block = picture[picture.index("```") + 3:]
    block = block[:block.index("```")]
    # a layer's line starts at column 1 ("name | name   what they are"); lines indented further describe it
    shown = [re.split(r"\s{3,}", line.strip())[0].replace("|", " ").split()
             for line in block.splitlines() if line.startswith(" ") and not line.startswith("  ")]
    enforced = [re.split(r"\s*[|:]\s*", layer.strip()) for layer in layers]
    assert [sorted(r) for r in shown] == [sorted(e) for e in enforced]
