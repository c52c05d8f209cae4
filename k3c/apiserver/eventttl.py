"""Events expire, as kube-apiserver's ``--event-ttl`` (one hour by default) makes them.

The operator records an Event for every container start, exit, pull and build, so without an end they
would fill the store for ever. kube-apiserver gives each Event an etcd lease; here a sweep deletes the
Events last written more than the TTL ago, with a normal delete, so watchers see DELETED as they would
when a lease runs out. "Last written" is the newest of the times the Event itself carries (``lastTimestamp``,
``eventTime``, ``series.lastObservedTime``), else its creation.
"""

from __future__ import annotations

import logging
from typing import Any

from k3c.apiserver.resourcetypes import ResourceTypes
from k3c.apiserver.storage import KeyNotFound, RevisionConflict, Store
from k3c.timefmt import parse_rfc3339_ns

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600.0


def last_written(event: dict[str, Any]) -> float | None:
    """When the Event was last recorded (epoch seconds); None if it names no time at all."""
    meta = event.get("metadata") or {}
    stamps = [event.get("lastTimestamp"), event.get("eventTime"),
              (event.get("series") or {}).get("lastObservedTime"), meta.get("creationTimestamp")]
    times = []
    for s in stamps:
        if isinstance(s, str) and s:
            try:
                times.append(parse_rfc3339_ns(s) / 1e9)
            except ValueError:
                continue
    return max(times) if times else None


async def expire_events(store: Store, registry: ResourceTypes, ttl: float, now: float) -> int:
    """Delete every Event last written before ``now - ttl``; returns how many went. An Event written again
    meanwhile (its revision moved on) is left for the next sweep to judge."""
    rtype = registry.lookup("", "v1", "events")
    if rtype is None:
        return 0
    removed = 0
    for key, entry in list(store.list_current(rtype.prefix())):
        written = last_written(entry.obj)
        if written is None or written > now - ttl:
            continue
        try:
            await store.delete(key, expect=entry.revision)
        except (KeyNotFound, RevisionConflict):
            continue
        removed += 1
    if removed:
        log.info("expired %d events older than %gs", removed, ttl)
    return removed
