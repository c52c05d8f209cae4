"""The pull/push progress display of the image commands, on a terminal and in a pipe."""

from __future__ import annotations

import io

from k3c.cli.layerprogress import LayerProgress, bar
from k3c.units import human_size


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _layers(state: str, current: int) -> list[dict]:
    return [{"digest": "sha256:" + "a" * 64, "size": 2_000_000, "current": current, "state": state},
            {"digest": "sha256:" + "b" * 64, "size": 1000, "current": 0, "state": "Waiting"}]


def test_terminal_redraws_the_block_in_place_with_bars() -> None:
    out = Terminal()
    p = LayerProgress(stream=out)
    p.update(_layers("Downloading", 500_000))
    p.update(_layers("Downloading", 1_500_000))
    text = out.getvalue()
    assert text.count("\x1b[2A") == 1, "the second update moves up over the two lines drawn first"
    assert "aaaaaaaaaaaa: Downloading [" in text and "1.5MB/2MB" in text
    assert "bbbbbbbbbbbb: Waiting" in text


def test_pipe_gets_one_line_per_state_change() -> None:
    out = io.StringIO()
    p = LayerProgress(stream=out)
    p.update(_layers("Downloading", 1))
    p.update(_layers("Downloading", 2))
    p.update(_layers("Pull complete", 2_000_000))
    assert out.getvalue().splitlines() == ["aaaaaaaaaaaa: Downloading", "bbbbbbbbbbbb: Waiting",
                                           "aaaaaaaaaaaa: Pull complete"]


def test_quiet_draws_nothing_and_units_read_like_docker() -> None:
    out = Terminal()
    LayerProgress(stream=out, quiet=True).update(_layers("Downloading", 5))
    assert out.getvalue() == ""
    assert [human_size(n) for n in (999, 1000, 1_998_000, 123_456_789)] == ["999B", "1kB", "1.998MB", "123.5MB"]
    assert bar(1, 2).startswith("[" + "=" * 24 + ">") and bar(2, 2).startswith("[" + "=" * 50 + "]")
