"""Who is calling a node's stream server: the API server's front proxy, or another node's agent.

Nothing reaches an aggregated API server but through the main API server, which has authenticated the
user already and vouches for them: it connects with its front-proxy client certificate (signed by the
``requestheader-client-ca-file`` of ``kube-system/extension-apiserver-authentication``, its common name one
of ``requestheader-allowed-names`` when that list is not empty) and names the user in headers
(``X-Remote-User``, ``X-Remote-Group``, ``X-Remote-Extra-<key>``; the ConfigMap says which). Those headers
are believed only on such a connection: a caller without that certificate is refused (401), whatever its
headers say, so a direct call to a node's port gets nowhere.

The other caller is a peer: an agent forwarding a request for a container on this node (see
:mod:`k3c.aggregated.peers`). It cannot present the front proxy's certificate, so agents authenticate one
another by the streams' own certificate (the serving certificate ``k3c install`` makes, signed by the CA
the APIService trusts, with the client-auth usage too): whoever holds it is an agent, as virt-handler trusts
virt-api's certificate in KubeVirt. A peer names the original user in the same ``X-Remote-*`` headers;
they are believed from a peer only, and a peer never forwards again.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from multidict import CIMultiDictProxy

from k3c.apiserver import errors
from k3c.apiserver.subresources import User

#: The ConfigMap kube-apiserver publishes for extension API servers, and its namespace.
AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")

#: The headers a peer agent names the user in (the front proxy's are configurable, these are k3c's own).
PEER_USER, PEER_UID, PEER_GROUP, PEER_EXTRA = "X-Remote-User", "X-Remote-Uid", "X-Remote-Group", "X-Remote-Extra-"


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The front proxy's side of ``extension-apiserver-authentication`` (kube's requestheader options)."""

    ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = (PEER_USER,)
    uid_headers: tuple[str, ...] = (PEER_UID,)
    group_headers: tuple[str, ...] = (PEER_GROUP,)
    extra_prefixes: tuple[str, ...] = (PEER_EXTRA,)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig | None:
        """From the ConfigMap's data (its lists are JSON arrays); None without a requestheader CA."""
        ca = data.get("requestheader-client-ca-file") or ""
        if not ca.strip():
            return None

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            try:
                value = json.loads(data[key]) if data.get(key) else None
            except ValueError:
                value = None
            return tuple(str(v) for v in value) if isinstance(value, list) and value else default

        return cls(ca, names("requestheader-allowed-names", ()),
                   names("requestheader-username-headers", (PEER_USER,)),
                   names("requestheader-uid-headers", (PEER_UID,)),
                   names("requestheader-group-headers", (PEER_GROUP,)),
                   names("requestheader-extra-headers-prefix", (PEER_EXTRA,)))


#: Who a vouched-for request without a user header is.
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the user it is made for, and whether a peer agent forwarded it."""

    user: User
    via_peer: bool = False


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (an empty list for none)."""
    return x509.load_pem_x509_certificates(pem.encode()) if "BEGIN CERTIFICATE" in pem else []


class Authenticator:
    """Authenticates by the TLS client certificate, then believes the headers that certificate may set."""

    def __init__(self, agents_ca_pem: str) -> None:
        self.front_proxy: RequestHeaderConfig | None = None
        self._front_proxy_cas: list[x509.Certificate] = []
        self._agent_cas = load_certificates(agents_ca_pem)

    def set_front_proxy(self, config: RequestHeaderConfig | None) -> None:
        """The (new) front-proxy configuration: a changed ConfigMap takes effect for the next request."""
        self.front_proxy = config
        self._front_proxy_cas = load_certificates(config.ca_pem) if config else []

    def authenticate(self, request: web.Request) -> Caller:
        """The caller of ``request``; a 401 Status unless its certificate is the front proxy's or an agent's."""
        cert = _peer_certificate(request)
        if cert is None:
            raise errors.unauthorized()
        fp = self.front_proxy
        if fp is not None and _issued_by(cert, self._front_proxy_cas):
            if fp.allowed_names and _common_name(cert) not in fp.allowed_names:
                raise errors.unauthorized()
            return Caller(_from_headers(request.headers, fp.username_headers, fp.uid_headers, fp.group_headers,
                                        fp.extra_prefixes))
        if _issued_by(cert, self._agent_cas):
            return Caller(_from_headers(request.headers, (PEER_USER,), (PEER_UID,), (PEER_GROUP,), (PEER_EXTRA,)),
                          via_peer=True)
        raise errors.unauthorized()


def _from_headers(headers: CIMultiDictProxy[str], users: tuple[str, ...], uids: tuple[str, ...],
                  groups: tuple[str, ...], extras: tuple[str, ...]) -> User:
    """The user the headers name, as kube's requestheader authenticator reads them."""
    name = next((headers[h] for h in users if headers.get(h)), "")
    if not name:  # (an availability check names nobody) discovery only: a SubjectAccessReview refuses the rest
        return ANONYMOUS
    uid = next((headers[h] for h in uids if headers.get(h)), "")
    found = [g for h in groups for g in headers.getall(h, []) if g]
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        for prefix in extras:
            if key.lower().startswith(prefix.lower()) and len(key) > len(prefix):
                extra.setdefault(urllib.parse.unquote(key[len(prefix):]).lower(), []).append(value)
    return User(name, tuple(dict.fromkeys(found)), uid, tuple((k, tuple(v)) for k, v in extra.items()))


def _peer_certificate(request: web.Request) -> x509.Certificate | None:
    transport = request.transport
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    der = tls.getpeercert(binary_form=True) if isinstance(tls, ssl.SSLObject | ssl.SSLSocket) else None
    return x509.load_der_x509_certificate(der) if der else None


def _issued_by(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    """Whether one of ``cas`` signed ``cert`` (TLS verified the chain already; this tells which CA it was)."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
