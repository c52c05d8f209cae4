"""Secrets encrypted at rest in the storage log, as kube-apiserver's EncryptionConfiguration does it.

Why: the SQLite log (and its WAL, and every backup or copy of them) would otherwise hold each Secret, and
every older revision of it, in plain base64. The API server reads ``<data dir>/encryption-config.yaml`` in
kube-apiserver's own format (``apiserver.config.k8s.io/v1``, ``EncryptionConfiguration``) and writes one at
first start, 0600: Secrets use ``aesgcm`` with one random 32-byte key named ``key1``, then ``identity``, so
rows stored before encryption existed still read. Of kube's providers, ``aesgcm`` and ``identity`` are
understood; of its resources, core ones (``secrets``, ``configmaps``) and ``plural.group``.

A row is written by the first provider of its resource: ``k8s:enc:aesgcm:v1:<key name>:`` followed by a
12-byte random nonce and the AES-GCM ciphertext with its tag, the storage key being the associated data
(a row copied under another key does not decrypt), as kube's aesgcm provider writes it; ``identity``
writes the JSON as is. A row is read by the provider its prefix names (the key by its name), a row
without the prefix by ``identity`` if listed. Only what goes to SQLite is encrypted: memory, watches and
answers see the objects as always, and revisions are assigned as before.

Rotation, as with kube-apiserver: add a new key as the second key of the aesgcm provider and restart; move
it first and restart (new writes use it, both keys read); rewrite every Secret with a real change, e.g.
``kubectl annotate secrets --all -A k3c.io/rotated=$(date +%s) --overwrite`` (an unchanged write stores
nothing, unlike kube's, which rewrites rows read with an old key); once compaction has dropped the older
revisions (``--retain-revisions`` of history), remove the old key. Turning encryption off is the same with
``identity`` first. Keep the file out of backups of the data directory: it is the key to them.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["CONFIG_FILE", "EncryptionConfigError", "RowEncryption", "load_or_create"]

CONFIG_FILE = "encryption-config.yaml"
_PREFIX = b"k8s:enc:"
_AESGCM = "aesgcm"
_NONCE = 12


class EncryptionConfigError(Exception):
    """The encryption configuration cannot be used, or a stored row cannot be decrypted with it."""


@dataclass(frozen=True)
class _Provider:
    """One entry of a resource's provider list: ``aesgcm`` with its keys by name (first encrypts), or
    ``identity`` (no keys)."""

    kind: str
    keys: tuple[tuple[str, AESGCM], ...] = ()


class RowEncryption:
    """Turns stored rows to and from their form on disk, per storage key prefix (see the module doc)."""

    def __init__(self, providers: dict[str, list[_Provider]]) -> None:
        self._providers = providers  # storage key prefix ("/secrets/") → providers, first one writes

    def _of(self, key: str) -> list[_Provider] | None:
        return next((p for prefix, p in self._providers.items() if key.startswith(prefix)), None)

    def to_storage(self, key: str, raw: bytes) -> bytes:
        providers = self._of(key)
        if not providers or providers[0].kind != _AESGCM:
            return raw
        name, aead = providers[0].keys[0]
        nonce = secrets.token_bytes(_NONCE)
        return b"%s%s:v1:%s:" % (_PREFIX, _AESGCM.encode(), name.encode()) + nonce + \
            aead.encrypt(nonce, raw, key.encode())

    def from_storage(self, key: str, stored: bytes) -> bytes:
        providers = self._of(key) or [_Provider("identity")]
        if not stored.startswith(_PREFIX):
            if any(p.kind == "identity" for p in providers):
                return stored
            raise EncryptionConfigError(f"{key} is stored unencrypted and {CONFIG_FILE} lists no identity provider")
        try:
            kind, version, name, rest = stored[len(_PREFIX):].split(b":", 3)
        except ValueError:
            raise EncryptionConfigError(f"{key}: a malformed encrypted row") from None
        aead = next((a for p in providers if p.kind == kind.decode() for n, a in p.keys if n == name.decode()),
                    None)
        if aead is None or version != b"v1":
            raise EncryptionConfigError(f"{key} is encrypted with {kind.decode()} key {name.decode()!r}, which "
                                        f"{CONFIG_FILE} does not list")
        try:
            return aead.decrypt(rest[:_NONCE], rest[_NONCE:], key.encode())
        except InvalidTag:
            raise EncryptionConfigError(f"{key} does not decrypt with key {name.decode()!r}") from None


def load_or_create(data_dir: Path) -> RowEncryption:
    """The data directory's encryption configuration, written first (0600, one new key) if absent."""
    path = data_dir / CONFIG_FILE
    if not path.exists():
        _create(path)
    try:
        doc = yaml.safe_load(path.read_text())
        return RowEncryption(_parse(doc))
    except (yaml.YAMLError, OSError) as err:
        raise EncryptionConfigError(f"{path}: {err}") from None
    except EncryptionConfigError as err:
        raise EncryptionConfigError(f"{path}: {err}") from None


def _create(path: Path) -> None:
    doc = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration", "resources": [{
        "resources": ["secrets"],
        "providers": [{_AESGCM: {"keys": [{"name": "key1",
                                            "secret": base64.b64encode(secrets.token_bytes(32)).decode()}]}},
                      {"identity": {}}],
    }]}
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, yaml.safe_dump(doc, sort_keys=False).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # (a crash leaves no file, or the whole one: never a config without its key)


def _parse(doc: Any) -> dict[str, list[_Provider]]:
    if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration":
        raise EncryptionConfigError("not an EncryptionConfiguration")
    out: dict[str, list[_Provider]] = {}
    for entry in doc.get("resources") or []:
        providers = [_provider(p) for p in (entry or {}).get("providers") or []]
        if not providers:
            raise EncryptionConfigError("a resources entry without providers")
        for resource in entry.get("resources") or []:
            out[_storage_prefix(str(resource))] = providers
    return out


def _storage_prefix(resource: str) -> str:
    """Where a resource's rows live in storage: ``secrets`` → ``/secrets/``, ``widgets.example.com`` →
    ``/example.com/widgets/`` (see ResourceType.key)."""
    plural, _, group = resource.partition(".")
    if not plural or "*" in resource or "/" in resource:
        raise EncryptionConfigError(f"unsupported resource {resource!r}: name one as plural or plural.group")
    return f"/{group}/{plural}/" if group else f"/{plural}/"


def _provider(doc: Any) -> _Provider:
    if not isinstance(doc, dict) or len(doc) != 1:
        raise EncryptionConfigError("each provider is a mapping with one entry, such as aesgcm or identity")
    (kind, spec), = doc.items()
    if kind == "identity":
        return _Provider("identity")
    if kind != _AESGCM:
        raise EncryptionConfigError(f"unsupported provider {kind!r}: k3c understands aesgcm and identity")
    keys = []
    for key in (spec or {}).get("keys") or []:
        try:
            name, secret = str(key["name"]), base64.b64decode(str(key["secret"]), validate=True)
            if not name or ":" in name:
                raise ValueError(name)
            keys.append((name, AESGCM(secret)))
        except (KeyError, TypeError, ValueError):
            raise EncryptionConfigError("an aesgcm key needs a name (without ':') and a base64 secret of 16, 24 "
                                        "or 32 bytes") from None
    if not keys:
        raise EncryptionConfigError("the aesgcm provider lists no keys")
    return _Provider(_AESGCM, tuple(keys))
