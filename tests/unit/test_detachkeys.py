"""docker's detach keys: the ``--detach-keys`` format and spotting the sequence across reads."""

from __future__ import annotations

import pytest

from k3c.streams.detachkeys import DEFAULT, DetachKeys, parse


@pytest.mark.parametrize(("spec", "keys"), [
    ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-@,a", b"\x00a"), ("ctrl-\\,ctrl-_,DEL", b"\x1c\x1f\x7f"), ("x", b"x"),
])
def test_parse_takes_dockers_format(spec, keys):
    assert parse(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-7", "ctrl-pp", "alt-x", ""])
def test_parse_refuses_unknown_keys(spec):
    with pytest.raises(ValueError, match="Unknown character"):
        parse(spec)


def test_the_sequence_is_spotted_across_reads_and_a_false_start_is_passed_on():
    spotter = DetachKeys(DEFAULT)
    assert spotter.feed(b"ab\x10") == (b"ab", False)  # held back: it may start the sequence
    assert spotter.feed(b"c") == (b"\x10c", False)  # it did not
    assert spotter.feed(b"\x10") == (b"", False)
    assert spotter.feed(b"\x11rest") == (b"", True)
