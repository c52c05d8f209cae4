"""Docker identity of k3c's objects: a container's ID, and docker names mapped onto object names.

Why one module: docker users address containers by an ID that never changes and by names such as
``proj_web_1`` that Kubernetes cannot use as object names; the CLI, the events stream and the Docker API
must all derive the one from the other the same way, or a container shows two IDs or two names.

- A LocalContainer's ID is ``sha256(metadata.uid)``: known from the create response on, the same across
  restarts and recreations of its CRI container (the CRI container ID is internal and never shown).
- A docker name is kept in the annotation :data:`NAME_ANNOTATION` (absent: the docker name is the object
  name, as for objects written with kubectl); the object's name is :func:`object_name` of it. The same
  rule names Volumes.

A leaf, standard library only (``functools``, ``json``, ``re``, ``random`` and CPython's own SHA-256), so the
CLI may import it at start-up.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from hashlib import sha256
else:  # CPython's built-in SHA-256, as the random module takes its SHA-512: hashlib would load OpenSSL's
    try:  # libcrypto first, ~4 ms of every command's start (_sha256 in 3.11, _sha2 from 3.12)
        from _sha256 import sha256
    except ImportError:
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256

#: The docker name of a container or volume, when it is not the object's name itself. Also in k3c.api.
NAME_ANNOTATION: Final = "k3c.io/name"
#: A Network's or Volume's docker labels as given, JSON. Also in k3c.api.
LABELS_ANNOTATION: Final = "k3c.io/labels"

#: What docker accepts as a container or volume name (its RestrictedNameChars, one character allowed).
_DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
#: A DNS-1123 subdomain: what Kubernetes accepts as the name of k3c's objects.
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HEX = re.compile(r"[0-9a-f]+")
#: The name part of a Kubernetes label key, and a label value (which may also be empty).
_LABEL_PART = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
MAX_OBJECT_NAME: Final = 253
_SUFFIX_HEX: Final = 6
ID_LENGTH: Final = 64


@functools.lru_cache(maxsize=4096)
def container_id(uid: str) -> str:
    """The docker ID of the object with this ``metadata.uid``: 64 lowercase hex, the same for its lifetime
    (remembered: a list computes it for every container, several times)."""
    return sha256(uid.encode()).hexdigest()


def object_id(obj: Mapping[str, Any]) -> str:
    """:func:`container_id` of an object (a LocalContainer as the API returns it)."""
    return container_id(str((obj.get("metadata") or {}).get("uid") or ""))


def network_id(name: str) -> str:
    """A network's docker ID: k3c has one network per node and no object for it, so its ID is derived from
    its docker name, the same on every call."""
    return sha256(f"k3c-network:{name}".encode()).hexdigest()


def valid_docker_name(name: str) -> bool:
    """Whether docker accepts ``name`` for a container or volume (``proj_web_1``, ``Web.1``)."""
    return bool(_DOCKER_NAME.fullmatch(name))


def valid_object_name(name: str) -> bool:
    """Whether Kubernetes accepts ``name`` for an object of k3c's kinds (a DNS-1123 subdomain)."""
    return len(name) <= MAX_OBJECT_NAME and bool(_OBJECT_NAME.fullmatch(name))


def kubernetes_label_ok(key: str, value: str) -> bool:
    """Whether a docker label can also be a Kubernetes label (then selectors and kubectl -l see it)."""
    prefix, _, name = key.rpartition("/")
    if prefix and not valid_object_name(prefix):
        return False
    return (0 < len(name) <= 63 and bool(_LABEL_PART.fullmatch(name)) and len(value) <= 63
            and bool(_LABEL_PART.fullmatch(value)))


def label_metadata(labels: Mapping[str, str]) -> dict[str, Any]:
    """The metadata a Network's or Volume's docker labels become: those that can be Kubernetes labels as the
    object's labels (``kubectl get … -l``), and all of them, verbatim, in :data:`LABELS_ANNOTATION` (docker
    allows any text; Kubernetes labels cannot hold every docker label). {} for no labels."""
    if not labels:
        return {}
    meta: dict[str, Any] = {"annotations": {LABELS_ANNOTATION: json.dumps(dict(labels), sort_keys=True)}}
    valid = {k: v for k, v in labels.items() if kubernetes_label_ok(k, v)}
    if valid:
        meta["labels"] = valid
    return meta


def docker_labels(meta: Mapping[str, Any]) -> dict[str, str]:
    """The docker labels an object was created with (its own labels when no docker client kept them)."""
    kept = (meta.get("annotations") or {}).get(LABELS_ANNOTATION)
    if kept:
        try:
            parsed = json.loads(kept)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return {str(k): str(v) for k, v in parsed.items()}
    return dict(meta.get("labels") or {})


def object_name(docker_name: str) -> str:
    """The object name a docker name maps to; a valid object name maps to itself (``web`` → ``web``).

    Anything else is lowercased, each character outside ``[a-z0-9.-]`` becomes ``-``, each dot-separated
    part loses the non-alphanumerics at its ends (empty parts go), and the first six hex digits of the
    docker name's sha256 are appended, so two docker names never share an object name (``Web`` and ``web``
    differ, as ``a_b`` and ``a-b`` do). Truncated to 253 characters, keeping that suffix.
    """
    if valid_object_name(docker_name):
        return docker_name
    body = re.sub(r"[^a-z0-9.-]", "-", docker_name.lower())
    body = _tidy(body)
    suffix = sha256(docker_name.encode()).hexdigest()[:_SUFFIX_HEX]
    body = _tidy(body[:MAX_OBJECT_NAME - len(suffix) - 1])
    return f"{body}-{suffix}" if body else suffix


def _tidy(text: str) -> str:
    """Every dot-separated part trimmed to start and end alphanumeric; empty parts dropped."""
    parts = (part.strip("-") for part in text.split("."))
    return ".".join(part for part in parts if part)


def docker_name(obj: Mapping[str, Any]) -> str:
    """The name docker users see and type: the annotation, else the object's own name."""
    meta = obj.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(NAME_ANNOTATION) or meta.get("name") or "")


def rename_refusal(obj: Mapping[str, Any], new: str) -> str | None:
    """docker's words for a rename it refuses (an invalid name, the current one), else None."""
    if not valid_docker_name(new):
        return f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    if docker_name(obj) == new:
        return "Renaming a container with the same name as its current name"
    return None


def rename_patch(obj: Mapping[str, Any], new: str) -> dict[str, Any]:
    """The merge patch giving a container the docker name ``new``: only the annotation changes (an object's
    name cannot), none when ``new`` is the object's own name; the resourceVersion makes a concurrent
    rename fail instead of both winning."""
    meta = obj.get("metadata") or {}
    value = None if new == meta.get("name") else new
    return {"metadata": {"annotations": {NAME_ANNOTATION: value}, "resourceVersion": meta.get("resourceVersion")}}


def lookup(objects: Iterable[Mapping[str, Any]], ref: str) -> list[Mapping[str, Any]]:
    """The objects ``ref`` designates, in docker's order of resolution (first kind that matches wins):
    the full ID, the docker name, the object name, then every object whose ID starts with ``ref``.

    More than one result means an ambiguous ID prefix (docker's "multiple IDs found with provided prefix");
    none, no such object.
    """
    objs = list(objects)
    for key in (object_id, docker_name, _meta_name):
        found = [o for o in objs if key(o) == ref]
        if found:
            return found[:1]
    if not is_hex(ref):
        return []
    return [o for o in objs if object_id(o).startswith(ref)]


def is_hex(ref: str) -> bool:
    """Whether ``ref`` could be an ID or an ID prefix (lowercase hex digits only)."""
    return _HEX.fullmatch(ref) is not None


def _meta_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


ADJECTIVES = (
    "admiring adoring agitated amazing angry awesome blissful bold boring brave busy charming clever cool "
    "compassionate competent confident crazy dazzling determined dreamy eager ecstatic elastic elated elegant "
    "epic fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious happy hardcore "
    "heuristic hopeful hungry infallible inspiring intelligent jolly jovial keen kind laughing loving lucid "
    "magical modest musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful "
    "pensive practical priceless quirky quizzical relaxed reverent romantic sad serene sharp silly sleepy "
    "stoic strange stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant "
    "vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()

SURNAMES = (
    "agnesi albattani allen archimedes ardinghelli aryabhata babbage banach bardeen bartik bell benz bhabha "
    "blackwell bohr booth borg bose brahmagupta brattain brown cannon carson cerf chandrasekhar clarke "
    "cohen curie darwin davinci dijkstra driscoll dubinsky easley edison einstein elgamal elion engelbart "
    "euclid euler faraday fermat fermi feynman franklin galileo gauss goldberg goldstine goodall hamilton "
    "hawking heisenberg hermann hodgkin hofstadter hopper hypatia jackson jang jennings johnson joliot kalam "
    "kapitsa keller kepler khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt "
    "lovelace lumiere mahavira margulis matsumoto maxwell mayer mccarthy mcclintock meitner mendel "
    "merkle minsky mirzakhani montalcini morse murdock napier nash neumann newton nightingale nobel noether "
    "northcutt noyce pascal pasteur payne perlman pike poincare ptolemy raman ramanujan ride ritchie "
    "roentgen rosalind saha sammet shamir shannon shaw shirley shockley sinoussi snyder spence stonebraker "
    "sutherland swanson tesla thompson torvalds turing varahamihira villani volhard wescoff wiles williams "
    "wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def generate_name(retry: int = 0) -> str:
    """adjective-surname like docker's namesgenerator, with '-' (not docker's '_') so the object name is the
    docker name itself (k3c.dockerid maps a name with '_' to one with a hash suffix)."""
    import random

    name = f"{random.choice(ADJECTIVES)}-{random.choice(SURNAMES)}"
    if name == "boring-wozniak":  # Steve Wozniak is not boring (docker's own rule)
        return generate_name(retry)
    return f"{name}{random.randint(0, 9)}" if retry else name
