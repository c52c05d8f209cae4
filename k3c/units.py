"""docker's human-readable units, shared by the CLI's tables and the status the operator writes."""

from __future__ import annotations


def human_size(n: float) -> str:
    """docker's units.HumanSize (decimal units, 3 significant digits), as `docker images` prints sizes."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}TB"
