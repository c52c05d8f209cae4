"""The filters every request passes before a handler: authentication, impersonation, authorization.

In kube-apiserver's order: who is asking (:mod:`k3c.apiserver.authn`; nobody known is a 401), whom they
act as (:mod:`k3c.apiserver.impersonation`), then whether that user may do what the URL and method say
(:mod:`k3c.apiserver.requestinfo`, decided by :class:`k3c.apiserver.rbac.RBACAuthorizer`; ``system:masters``
always may). A refusal is kube's 403 Status. The user is left on the request for the handlers (admission
webhooks, the subresource providers, the reviews, the aggregator's ``X-Remote-*`` headers).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from k3c.apiserver import errors, impersonation, requestinfo
from k3c.apiserver.authn import Authenticator, set_user
from k3c.apiserver.handlers import status_response
from k3c.apiserver.rbac import RBACAuthorizer, forbidden
from k3c.apiserver.subresources import User


class AccessFilter:
    """The aiohttp middleware running the three filters."""

    def __init__(self, authenticator: Authenticator, authorizer: RBACAuthorizer) -> None:
        self.authenticator = authenticator
        self.authorizer = authorizer

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user = self.authenticator.authenticate(request)
        if user is None:
            return status_response(errors.unauthorized())
        try:
            user = self._admit(request, user)
        except errors.APIError as err:
            return status_response(err)
        set_user(request, user)
        return await handler(request)

    def _admit(self, request: web.Request, user: User) -> User:
        """The user the request acts as, once it may do what it asks; a 4xx APIError otherwise."""
        wanted = impersonation.requested(request.headers)
        if wanted is not None:
            user = impersonation.impersonate(user, wanted, self.authorizer.decide)
        if user.privileged:
            return user
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        info = requestinfo.parse(request.method, request.path, request.query, websocket)
        allowed, reason = self.authorizer.decide(user, info)
        if not allowed:
            raise forbidden(user, info, reason)
        return user
