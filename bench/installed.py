"""The `k3c` command as `pip install` leaves it, for the benchmarks to time what users run.

The development venv's editable install loads a path finder at every interpreter start (~8 ms) that an
installed k3c does not have, and a checkout may lack compiled bytecode.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str]) -> None:
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… failed ({cp.returncode}): {cp.stderr[-2000:]}")


def installed_cli(base: Path) -> Path:
    """A wheel of this checkout installed into a fresh venv under ``base``, bytecode compiled; its
    dependencies come from the development venv through a plain path entry (whose own .pth files, the
    editable finder among them, are not processed). Returns the ``k3c`` script, as pip would write it."""
    wheels = base / "wheel"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
          str(REPO)])
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = next((venv / "lib").glob("python3*/site-packages"))
    wheel = next(wheels.glob("k3c-*.whl"))
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)])
    (site / "k3c-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(site / "k3c")])
    script = venv / "bin" / "k3c"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom k3c.cli.main import entry\nsys.exit(entry())\n")
    script.chmod(0o755)
    return script
