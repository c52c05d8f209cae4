"""docker's signal names → numbers: ``SIGINT``, ``INT``, ``int``, ``2``, ``SIGRTMIN+3``, ``SIGRTMAX-1``.

Why a leaf: the CLI checks ``--stop-signal`` where the user typed it, and the operator sends that signal
when it stops the container; both must read a name the same way.
"""

from __future__ import annotations

import signal

#: The highest signal number Linux has.
MAX_SIGNAL = 64


def signal_number(text: str) -> int:
    """The number of a signal name or number as docker reads it (ValueError if it is none)."""
    name = text.strip().upper()
    if name.isdigit():
        number = int(name)
        if 0 < number <= MAX_SIGNAL:
            return number
        raise ValueError(f"Invalid signal: {text}")
    name = name.removeprefix("SIG")
    for base, sign, origin in (("RTMIN", "+", signal.SIGRTMIN), ("RTMAX", "-", signal.SIGRTMAX)):
        if name == base or (name.startswith(base + sign) and name[len(base) + 1:].isdigit()):
            offset = int(name[len(base) + 1:] or 0)
            number = int(origin) + offset if sign == "+" else int(origin) - offset
            if 0 < number <= MAX_SIGNAL:
                return number
            raise ValueError(f"Invalid signal: {text}")
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        raise ValueError(f"Invalid signal: {text}") from None
