"""docker's prune filters (``until``, ``label``, ``label!``) and which objects they spare, for the CLI and the API.

`k3c container prune` and the Docker API's ``POST /containers/prune`` must remove exactly the same containers
(and likewise volumes), so the filters' reading and their matching live here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k3c.timefmt import parse_rfc3339_ns, parse_since


class FilterError(ValueError):
    """A filter docker refuses; the message is docker's."""


@dataclass
class PruneFilters:
    """``until`` (a time or a duration before now, in ns), the wanted ``label`` and unwanted ``label!`` values."""

    until_ns: int | None
    labels: list[str]
    not_labels: list[str]

    @classmethod
    def parse(cls, given: dict[str, list[str]], allowed: tuple[str, ...]) -> PruneFilters:
        """Filters grouped by key (``label!=k=v`` is the key ``label!``, as docker's parser has it)."""
        for key in given:
            if key not in allowed:
                raise FilterError(f"invalid filter '{key}'")
        until = None
        for value in given.get("until", []):
            try:
                until = parse_since(value)
            except ValueError:
                raise FilterError(f'failed to parse value as time or duration: "{value}"') from None
        return cls(until, list(given.get("label", [])), list(given.get("label!", [])))

    def keep(self, created: str, labels: dict[str, str]) -> bool:
        """Whether the filters spare an object created at ``created`` (RFC 3339) with ``labels``."""
        if self.until_ns is not None and created and parse_rfc3339_ns(created) > self.until_ns:
            return True
        if self.labels and not all(label_matches(labels, want) for want in self.labels):
            return True
        return any(label_matches(labels, unwanted) for unwanted in self.not_labels)


def label_matches(labels: dict[str, str], want: str) -> bool:
    """docker's ``key`` or ``key=value`` against an object's labels."""
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def object_labels(obj: dict[str, Any]) -> dict[str, str]:
    """A container's labels as docker's prune sees them: the object's own and the spec's (docker's ``-l``)."""
    return {**(obj["metadata"].get("labels") or {}), **((obj.get("spec") or {}).get("labels") or {})}
