"""A CRD's structural schema: its accessors and the one walk every schema job uses.

A structural schema (a CRD version's `openAPIV3Schema`, as a plain dict) says where each value of an
object lives: `properties` name the fields of an object, `additionalProperties` gives the schema of every
value of a map, `items` that of every item of a list. Pruning, defaulting and the embedded-resource and
list-type checks follow an object through its schema along exactly these three ways; CRD validation
visits every subschema, including those under the `allOf`/`anyOf`/`oneOf`/`not` junctors. `walk` does
both, so that each job only says what it does at one place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Schema", "EMBEDDED", "PRESERVE_UNKNOWN", "INT_OR_STRING", "Via", "Node", "walk",
           "properties", "additional", "items", "field_schema"]

Schema = dict[str, Any]

EMBEDDED = "x-kubernetes-embedded-resource"
PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"


def properties(s: Schema | None) -> dict[str, Any]:
    p = s.get("properties") if isinstance(s, dict) else None
    return p if isinstance(p, dict) else {}


def additional(s: Schema | None) -> tuple[bool, Schema | None]:
    """(present, schema) of additionalProperties as structural schemas see it (`true`: present, no schema)."""
    ap = s.get("additionalProperties") if isinstance(s, dict) else None
    if ap is True:
        return True, None
    return (True, ap) if isinstance(ap, dict) else (False, None)


def items(s: Schema | None) -> Schema | None:
    it = s.get("items") if isinstance(s, dict) else None
    return it if isinstance(it, dict) else None


def field_schema(key: str, s: Schema | None) -> Schema | None:
    """The schema of the value at `key` of an object: its property, else the map's value schema."""
    props = properties(s)
    if key in props:
        return _schema_or_none(props[key])
    return additional(s)[1]


def _schema_or_none(s: Any) -> Schema | None:
    return s if isinstance(s, dict) else None


class Via(enum.Enum):
    """How a node was reached from its parent: the schema keyword followed."""

    PROPERTY = "properties"
    ADDITIONAL = "additionalProperties"
    ITEM = "items"
    ALL_OF = "allOf"
    ANY_OF = "anyOf"
    ONE_OF = "oneOf"
    NOT = "not"


_JUNCTORS = (Via.ALL_OF, Via.ANY_OF, Via.ONE_OF)
_KEYED_IN_SCHEMA_PATH = (Via.PROPERTY, *_JUNCTORS)


class _Only(enum.Enum):
    SCHEMA = "schema"


SCHEMA_ONLY = _Only.SCHEMA
"""The `value` of the nodes of a walk over the schema alone."""


@dataclass(frozen=True, eq=False)
class Node:
    """One place of a walk: its schema (None where the schema says nothing), the value there, and the way
    from the parent (`key` is the property or map key, the list index, or the junctor's index)."""

    schema: Schema | None
    value: Any = SCHEMA_ONLY
    parent: Node | None = None
    key: str | int = ""
    via: Via | None = None

    @property
    def level(self) -> Literal["root", "item", "field"]:
        """Where the schema sits for structural rules: the root, array items or object fields."""
        if self.via is None:
            return "root"
        return "item" if self.via is Via.ITEM else "field"

    @property
    def nested(self) -> bool:
        """True below a junctor (allOf/anyOf/oneOf/not): value validation, not structure."""
        node: Node | None = self
        while node is not None and node.via is not None:
            if node.via in _JUNCTORS or node.via is Via.NOT:
                return True
            node = node.parent
        return False

    def path(self, prefix: str = "", *, map_keys: bool = False) -> str:
        """The value's field path: `spec.ports[0].name`; map keys as `[key]` with `map_keys` (field.Path's
        Key), else dotted like object fields (the pruning's paths)."""
        out = prefix
        for node in self._lineage():
            if node.via is Via.ITEM or (map_keys and node.via is Via.ADDITIONAL):
                out += f"[{node.key}]"
            else:
                out = f"{out}.{node.key}" if out else str(node.key)
        return out

    def schema_path(self, prefix: str) -> str:
        """The subschema's own field path inside the CRD: `....properties[spec].items.allOf[0]`."""
        out = prefix
        for node in self._lineage():
            assert node.via is not None
            out += f".{node.via.value}" + (f"[{node.key}]" if node.via in _KEYED_IN_SCHEMA_PATH else "")
        return out

    def _lineage(self) -> list[Node]:
        """The nodes from the root's child down to this one."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def children(self) -> Iterator[Node]:
        return self._subschemas() if self.value is SCHEMA_ONLY else self._value_children()

    def _value_children(self) -> Iterator[Node]:
        """The values the schema specifies: known properties and map values of an object, list items."""
        x, s = self.value, self.schema
        if isinstance(x, dict):
            props = properties(s)
            has_ap, ap = additional(s)
            for k in list(x):
                if k in props:
                    yield Node(_schema_or_none(props[k]), x[k], self, k, Via.PROPERTY)
                elif has_ap:
                    yield Node(ap, x[k], self, k, Via.ADDITIONAL)
        elif isinstance(x, list):
            it = items(s)
            for i, v in enumerate(x):
                yield Node(it, v, self, i, Via.ITEM)

    def _subschemas(self) -> Iterator[Node]:
        s = self.schema
        for k, sub in properties(s).items():
            if isinstance(sub, dict):
                yield Node(sub, SCHEMA_ONLY, self, k, Via.PROPERTY)
        if (it := items(s)) is not None:
            yield Node(it, SCHEMA_ONLY, self, "", Via.ITEM)
        if (ap := additional(s)[1]) is not None:
            yield Node(ap, SCHEMA_ONLY, self, "", Via.ADDITIONAL)
        for via in _JUNCTORS:
            subs = s.get(via.value) if s is not None else None
            for i, sub in enumerate(subs if isinstance(subs, list) else []):
                if isinstance(sub, dict):
                    yield Node(sub, SCHEMA_ONLY, self, i, via)
        if s is not None and isinstance(s.get("not"), dict):
            yield Node(s["not"], SCHEMA_ONLY, self, "", Via.NOT)


Visit = Callable[[Node], bool]


def walk(schema: Schema | None, visit: Visit, value: Any = SCHEMA_ONLY) -> None:
    """Visit, depth first and parents first, `value` together with its schema, or every subschema of
    `schema` when no value is given.

    `visit` sees a node before its children are listed, so it may change the node's value in place
    (drop unknown keys, fill defaults) and the walk follows the result; it returns False to leave the
    node's subtree alone.
    """
    _walk(Node(schema, value), visit)


def _walk(node: Node, visit: Visit) -> None:
    if visit(node):
        for child in node.children():
            _walk(child, visit)
