"""When an Event was last written, the time `--event-ttl` counts from (tests/e2e/test_api_semantics.py
checks the expiry itself on a real server)."""

from __future__ import annotations

from k3c.apiserver.eventttl import last_written


def test_event_last_written_time() -> None:
    assert last_written({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
                         "lastTimestamp": "2026-01-01T01:00:00Z"}) == 1767229200.0
    assert last_written({"eventTime": "2026-01-01T00:00:00.500000Z", "series": {
        "lastObservedTime": "2026-01-01T00:10:00.000000Z"}}) == 1767226200.0
    assert last_written({"metadata": {}}) is None
