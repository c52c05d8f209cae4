"""docker's human-readable units, shared by the CLI's tables and the status the operator writes."""

from __future__ import annotations


def human_size(n: float, precision: int = 4) -> str:
    """docker's units.HumanSize (decimal units, 4 significant digits), as `docker images` prints sizes;
    ``precision`` 3 is its HumanSizeWithPrecision as `docker stats` prints I/O."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.{precision}g}{unit}"
        n /= 1000
    return f"{n:.{precision}g}TB"


def bytes_size(n: float) -> str:
    """docker's units.BytesSize (binary units, 4 significant digits), as `docker stats` prints memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}TiB"


def ram_in_bytes(value: str) -> int:
    """docker's units.RAMInBytes (``256m``, ``1g``, ``1.5GiB``, plain bytes; binary units): ``-m``, the
    LocalContainer's memory and tmpfs sizes. ValueError if it is not one."""
    import re

    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)i?b?", value.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"invalid size: {value!r}")
    return int(float(m.group(1)) * 1024 ** " kmgtp".index((m.group(2) or " ").lower()))
