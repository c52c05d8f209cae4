"""ServiceAccount tokens as JWTs: the server's signing key, and the two token forms kube-apiserver issues.

*Bound* tokens are what the TokenRequest subresource returns (``kubectl create token``, a Pod's projected
token): issuer ``https://kubernetes.default.svc.cluster.local``, audiences, an expiry, and under the
``kubernetes.io`` claim the ServiceAccount (name and uid) and the object the token is bound to, if any.
*Legacy* tokens are what kube's token controller writes into a ``kubernetes.io/service-account-token``
Secret: issuer ``kubernetes/serviceaccount``, no expiry, the ServiceAccount and the Secret named in flat
``kubernetes.io/serviceaccount/...`` claims. Both are RS256-signed with one RSA key the server makes once and
keeps 0600 in its data directory (kube-apiserver's ``--service-account-signing-key-file``); the header's
``kid`` is derived from the public key as kube derives it.

This module only signs and checks signatures and times; whether the objects a token names still exist is
:mod:`k3c.apiserver.serviceaccounts`'.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
#: kube-apiserver's ``--api-audiences`` default: the issuer
API_AUDIENCES = (ISSUER,)
#: the clock skew tolerated on ``exp``/``nbf``, as kube's validator allows
LEEWAY = 60
KEY_FILE = "service-account.key"
_LEGACY = "kubernetes.io/serviceaccount/"


class InvalidToken(Exception):
    """Not a token of this server, or no longer valid; the message is what a TokenReview's error says."""


@dataclass(frozen=True)
class BoundRef:
    """The object a bound token lives and dies with (a Pod or a Secret)."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Claims:
    """What a valid token says; ``secret`` for a legacy token is the Secret holding it."""

    namespace: str
    name: str
    uid: str
    legacy: bool
    audiences: tuple[str, ...] = ()
    bound: BoundRef | None = None
    secret: str = ""
    jti: str = ""

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


class Signer:
    """The server's ServiceAccount token key."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.public = key.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Signer:
        path = data_dir / "tls" / KEY_FILE
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), None)
        except FileNotFoundError:
            loaded = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA private key")
        return cls(loaded)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def bound(self, namespace: str, name: str, uid: str, audiences: list[str], expiration_seconds: int,
              ref: BoundRef | None = None, now: float | None = None) -> tuple[str, int]:
        """A TokenRequest's token and its expiry (Unix seconds)."""
        issued = int(now if now is not None else time.time())
        expires = issued + expiration_seconds
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if ref is not None:
            private[ref.kind.lower()] = {"name": ref.name, "uid": ref.uid}
        claims = {"aud": audiences, "exp": expires, "iat": issued, "nbf": issued, "iss": ISSUER,
                  "jti": str(uuid.uuid4()), "kubernetes.io": private, "sub": f"system:serviceaccount:{namespace}:{name}"}
        return self._sign(claims), expires

    def legacy(self, namespace: str, name: str, uid: str, secret: str) -> str:
        """The token kube's token controller puts into a ServiceAccount token Secret."""
        return self._sign({
            "iss": LEGACY_ISSUER, f"{_LEGACY}namespace": namespace, f"{_LEGACY}secret.name": secret,
            f"{_LEGACY}service-account.name": name, f"{_LEGACY}service-account.uid": uid,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        })

    def verify(self, token: str, audiences: tuple[str, ...]) -> Claims:
        """The claims of a token this key signed, if its times are right and (a bound token) it is meant for
        one of ``audiences``; InvalidToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise InvalidToken("invalid bearer token")
            doc = jwt.decode(token, self.public, algorithms=["RS256"], leeway=LEEWAY,
                             options={"verify_aud": False, "verify_iss": False})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("invalid bearer token, service account token has expired") from None
        except (jwt.PyJWTError, ValueError):  # (UnicodeError too: header bytes that are not UTF-8)
            raise InvalidToken("invalid bearer token") from None
        if doc.get("iss") == LEGACY_ISSUER:
            return _legacy_claims(doc)
        if doc.get("iss") != ISSUER:
            raise InvalidToken("invalid bearer token")
        return _bound_claims(doc, audiences)


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidToken("invalid bearer token")
    return value


def _legacy_claims(doc: dict[str, Any]) -> Claims:
    return Claims(_text(doc, f"{_LEGACY}namespace"), _text(doc, f"{_LEGACY}service-account.name"),
                  _text(doc, f"{_LEGACY}service-account.uid"), legacy=True, secret=_text(doc, f"{_LEGACY}secret.name"))


def _bound_claims(doc: dict[str, Any], audiences: tuple[str, ...]) -> Claims:
    aud = doc.get("aud")
    token_audiences = tuple(a for a in (aud if isinstance(aud, list) else [aud]) if isinstance(a, str))
    if "exp" not in doc:
        raise InvalidToken("invalid bearer token")
    matched = tuple(a for a in audiences if a in token_audiences)
    if not matched:
        raise InvalidToken("invalid bearer token, token audiences "
                           f"{_go_strings(token_audiences)} is invalid for the target audiences "
                           f"{_go_strings(audiences)}")
    private = doc.get("kubernetes.io")
    if not isinstance(private, dict) or not isinstance(private.get("serviceaccount"), dict):
        raise InvalidToken("invalid bearer token")
    sa = private["serviceaccount"]
    bound = None
    for kind in ("Pod", "Secret", "Node"):
        ref = private.get(kind.lower())
        if isinstance(ref, dict):
            bound = BoundRef(kind, _text(ref, "name"), _text(ref, "uid"))
    return Claims(_text(private, "namespace"), _text(sa, "name"), _text(sa, "uid"), legacy=False,
                  audiences=matched, bound=bound, jti=str(doc.get("jti") or ""))


def _go_strings(values: tuple[str, ...]) -> str:
    """A []string as Go's %q prints it: ["a" "b"]."""
    return "[" + " ".join(f'"{v}"' for v in values) + "]"
