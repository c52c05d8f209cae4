"""Authentication: who a request comes from, as kube-apiserver's authenticators decide it.

In kube's order: a client certificate the TLS handshake verified against the client CA (the user is its
CN, the groups its Os: the admin certificate says ``admin`` in ``system:masters``), then a bearer token: the
admin token (the admin), or a ServiceAccount token (:mod:`k3c.apiserver.serviceaccounts`). The unix socket
beside the kubeconfig is the admin's: reaching it took the file's permission. Everyone authenticated is also
in ``system:authenticated``. Nothing else authenticates: anonymous requests get 401, as k3s configures
kube-apiserver (``--anonymous-auth=false``).
"""

from __future__ import annotations

import hmac
import socket
from typing import Any

from aiohttp import web

from k3c.apiserver import certs
from k3c.apiserver.satokens import InvalidToken
from k3c.apiserver.serviceaccounts import TokenAuthenticator
from k3c.apiserver.subresources import ADMIN, User

AUTHENTICATED = "system:authenticated"
#: where the authenticated user is kept on the aiohttp request
_USER_KEY = "k3c.user"


def user_of(request: web.Request) -> User:
    """The user the authentication middleware found (the admin, for a request that went around it: tests)."""
    user = request.get(_USER_KEY)
    return user if isinstance(user, User) else ADMIN


def set_user(request: web.Request, user: User) -> None:
    request[_USER_KEY] = user


def certificate_user(peer: dict[str, Any]) -> User | None:
    """The user of a verified client certificate (``ssl.getpeercert()``'s form): CN, in the groups of its Os."""
    name = ""
    groups: list[str] = []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        return None
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return User(name, tuple(groups))


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer`` header; empty if there is none."""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return presented.strip(" \t")  # (HTTP's own whitespace; anything else is part of the token)


class Authenticator:
    """The server's authenticators, in kube's order."""

    def __init__(self, admin_token: str, tokens: TokenAuthenticator) -> None:
        self.admin_token = admin_token
        self.tokens = tokens

    def authenticate(self, request: web.Request) -> User | None:
        transport = request.transport
        if transport is not None:
            peer = transport.get_extra_info("peercert")
            if peer:
                return certificate_user(peer)
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_UNIX:
                return ADMIN
        token = bearer_token(request.headers.get("Authorization", ""))
        if not token:
            return None
        try:
            return self.authenticate_token(token)[0]
        except InvalidToken:
            return None

    def is_admin_token(self, token: str) -> bool:
        """Whether ``token`` is the admin token: never an empty one, whatever the token file holds."""
        if not token or len(self.admin_token) < certs.TOKEN_BYTES:
            return False
        # (the header arrives as text: bytes that are not UTF-8 are surrogates, which never match a token)
        return hmac.compare_digest(token.encode("utf-8", "surrogatepass"), self.admin_token.encode())

    def authenticate_token(self, token: str, audiences: tuple[str, ...] = ()) -> tuple[User, tuple[str, ...]]:
        """The user of a bearer token and the audiences it was accepted for (a TokenReview's question)."""
        if self.is_admin_token(token):
            return ADMIN, audiences or self.tokens.audiences
        return self.tokens.authenticate(token, audiences)
