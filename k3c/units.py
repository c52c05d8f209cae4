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


#: the width of docker's progress bars, between the brackets
BAR_WIDTH = 50


def progress_bar(current: int, total: int) -> str:
    """``[=====>      ]  1.2MB/3.4MB`` like docker's progress bars ('' without a total)."""
    if total <= 0:
        return ""
    filled = min(BAR_WIDTH, int(BAR_WIDTH * current / total))
    arrow = "=" * max(0, filled - 1) + (">" if filled < BAR_WIDTH else "=")
    return f"[{arrow.ljust(BAR_WIDTH)}]  {human_size(current)}/{human_size(total)}"


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


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration, so ages read exactly as in `docker ps`."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"
