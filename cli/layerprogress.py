"""Per-layer progress of a pull or push as docker draws it, from the layer lists the operator writes to status.

Why not rich: docker's own look is a block of ``<id>: <state> [=====>   ] 1.2MB/3.4MB`` lines redrawn in
place, which takes three ANSI sequences; rich would cost ~50 ms of import for the same. On a terminal the
block is redrawn whenever the status changes; otherwise each layer's line is printed once per new state
(logs and pipes stay readable).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from k3c.units import progress_bar

#: docker's bar (shared with the Docker API's progress messages)
bar = progress_bar


@dataclass
class LayerProgress:
    """Draws ``layers`` lists (digest, size, current, state) as they change; ``finish`` leaves final lines."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    _order: list[str] = field(default_factory=list)
    _shown: dict[str, str] = field(default_factory=dict)
    _drawn: int = 0

    @property
    def tty(self) -> bool:
        return self.stream.isatty()

    def update(self, layers: list[dict[str, Any]]) -> None:
        if self.quiet:
            return
        for layer in layers:
            if layer["digest"] not in self._order:
                self._order.append(layer["digest"])
        by_digest = {layer["digest"]: layer for layer in layers}
        lines = [_line(by_digest[d], self.tty) for d in self._order if d in by_digest]
        if self.tty:
            self._redraw(lines)
        else:
            self._print_changes(by_digest)

    def _redraw(self, lines: list[str]) -> None:
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}A")
        out += [f"\x1b[2K{line}\n" for line in lines]
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(lines)

    def _print_changes(self, by_digest: dict[str, dict[str, Any]]) -> None:
        for digest in self._order:
            layer = by_digest.get(digest)
            if layer is None:
                continue
            state = layer.get("state", "")
            if self._shown.get(digest) != state:
                self._shown[digest] = state
                self.stream.write(_line(layer, False) + "\n")
        self.stream.flush()


def _line(layer: dict[str, Any], with_bar: bool) -> str:
    short = layer["digest"].removeprefix("sha256:")[:12]
    state = layer.get("state", "")
    text = f"{short}: {state}"
    if with_bar and state in ("Downloading", "Pushing"):
        text += " " + bar(int(layer.get("current") or 0), int(layer.get("size") or 0))
    return text
