"""Image references, normalized exactly as docker does (``busybox`` → ``docker.io/library/busybox:latest``).

Why our own parser: the CLI, the operator and the API server's save/load must agree on one spelling of a
name, or the same image shows up twice (``busybox`` and ``docker.io/library/busybox:latest``) and lookups
miss. The grammar and the normalization rules are distribution/reference's (``ParseNormalizedNamed`` +
``TagNameOnly``), and a reference with both tag and digest keeps only the digest, as containerd's
``ParseDockerRef`` does (so k3c's names equal the names CRI gives pulled images).

Image *objects* cannot be named by a reference (``/``, ``:`` and ``@`` are not allowed in a DNS subdomain),
so :func:`object_name` derives a readable, deterministic name from it; the reference itself lives in the
object's spec. Only the standard library is imported: the CLI uses this module on every command.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DOMAIN",
    "InvalidReference",
    "Reference",
    "is_image_id",
    "is_registry_host",
    "normalize",
    "object_name",
    "parse",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_ID_RE = re.compile(r"^(?:sha256:)?[a-f0-9]{64}$")


class InvalidReference(ValueError):
    """The string is not an image reference; the message is docker's wording."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized reference: ``domain/path`` plus a tag or a digest (never both, never neither)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``: the full repository name, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """``busybox`` for ``docker.io/library/busybox``: the repository as docker prints it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX):]:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    @property
    def object(self) -> str:
        """What to ask the registry for under ``/manifests/``: the digest if any, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    def familiar(self) -> str:
        """``busybox:latest`` for ``docker.io/library/busybox:latest`` (docker's FamiliarString)."""
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        return self.familiar_repository + suffix

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, "", digest)

    @property
    def registry_host(self) -> str:
        """The host serving the distribution API (docker.io's is registry-1.docker.io)."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain


def is_registry_host(text: str) -> bool:
    """Whether ``text`` is a registry host as a reference names it: ``host[:port]`` or ``[ipv6][:port]``
    (distribution's domain rule: so never a path, ``..``, spaces or quotes)."""
    return _DOMAIN_RE.fullmatch(text) is not None


def _split_domain(name: str) -> tuple[str, str]:
    """distribution's splitDockerDomain: the first component is a domain only if it looks like one."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(text: str) -> Reference:
    """Parse and normalize a reference like docker (``ParseNormalizedNamed`` then default tag ``latest``).

    Raises :class:`InvalidReference` with docker's message for anything else.
    """
    s = text.strip()
    if not s:
        raise InvalidReference("invalid reference format")
    if _HEX64_RE.match(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    name, _, digest = s.partition("@")
    tag = ""
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReference("invalid reference format")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidReference("invalid reference format")
    if digest.startswith("sha256:") and not _HEX64_RE.match(digest[7:]):
        raise InvalidReference("invalid checksum digest length")
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    if not _DOMAIN_RE.match(domain) or not _PATH_RE.match(path):
        raise InvalidReference("invalid reference format")
    if len(f"{domain}/{path}") > NAME_TOTAL_MAX:
        raise InvalidReference(f"invalid reference format: repository name must not be more than "
                               f"{NAME_TOTAL_MAX} characters")
    if digest:
        return Reference(domain, path, "", digest)
    return Reference(domain, path, tag or "latest", "")


def normalize(text: str) -> str:
    """The canonical string of a reference (``busybox`` → ``docker.io/library/busybox:latest``)."""
    return str(parse(text))


def is_image_id(text: str) -> bool:
    """``sha256:<64 hex>`` or bare 64 hex: an image ID (config digest), not a name."""
    return bool(_ID_RE.match(text.strip()))


_SLUG_BAD = re.compile(r"[^a-z0-9.-]+")


def object_name(ref: Reference | str, node: str = "") -> str:
    """The Image object name for a reference: readable, a valid DNS subdomain, one per reference.

    ``docker.io/library/busybox:latest`` → ``busybox.latest-<10 hex>``: the familiar name with ``/``, ``:``
    and ``@`` turned into dots, then a hash of the full normalized reference, which keeps two references
    that read alike (``a/b:c`` and ``a.b:c``) apart. Digests contribute their first 12 hex digits.

    With ``node``, the name of that node's object for the reference (cluster mode, where every node's
    store is shown apart): ``<node>.busybox.latest-<10 hex>``, the node first so that a node's images sort
    together, and the hash taken over the node too.
    """
    r = ref if isinstance(ref, Reference) else parse(ref)
    canonical = str(r)
    readable = r.familiar_repository.replace("/", ".")
    readable += "." + (r.digest.replace(":", ".")[:19] if r.digest else r.tag)
    slug = _slug(readable, 200)
    if not node:
        return f"{slug}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"
    prefix = _slug(node, 63)
    digest = hashlib.sha256(f"{node}\n{canonical}".encode()).hexdigest()[:10]
    room = NAME_OBJECT_MAX - len(prefix) - 12  # the dot after the node, the dash and the hash
    return f"{prefix}.{slug[:room].rstrip('.-')}-{digest}"


#: The longest object name (a DNS subdomain).
NAME_OBJECT_MAX = 253


def _slug(text: str, limit: int) -> str:
    """``text`` as dot-separated DNS labels of ``[a-z0-9-]``, at most ``limit`` characters."""
    labels = [_SLUG_BAD.sub("-", part.lower()).strip("-") for part in text.split(".")]
    return ".".join(part for part in labels if part)[:limit].rstrip(".-")
