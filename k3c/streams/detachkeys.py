"""docker's detach keys: the typed sequence (Ctrl-P Ctrl-Q unless told) that leaves a terminal attach.

Shared by the CLI's stream client and the Docker API's attach, which both spot it in what the user types
and hold back a partial match until it is decided, as docker's escape proxy does.
"""

from __future__ import annotations

#: docker's default detach keys: Ctrl-P Ctrl-Q.
DEFAULT = b"\x10\x11"
#: the names ``--detach-keys`` takes for control characters, in code order from 0 (``ctrl-@``)
_CONTROL_NAMES = ("ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
                  "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_")


def parse(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` (docker's format: comma-separated single characters, ``ctrl-X`` or ``DEL``) as
    bytes; ValueError names what is not a key."""
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out += key.encode()
        elif key in _CONTROL_NAMES:
            out.append(_CONTROL_NAMES.index(key))
        elif key == "DEL":
            out.append(127)
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class DetachKeys:
    """Spots the detach sequence in typed input, holding back a prefix until it is decided."""

    def __init__(self, keys: bytes = DEFAULT) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send, whether the sequence completed)."""
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    return bytes(out), True
                continue
            out += self.keys[: self.matched]
            self.matched = 1 if byte == self.keys[0] else 0
            if not self.matched:
                out.append(byte)
        return bytes(out), False
