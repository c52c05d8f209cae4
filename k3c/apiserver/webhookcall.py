"""Calling one webhook: an AdmissionReview POSTed over HTTPS, verified against its caBundle, within its timeout.

As kube-apiserver does: the URL gets ``?timeout=Ns``; a ``clientConfig.service`` is resolved through the
:mod:`~k3c.apiserver.services` seam and its certificate checked for ``NAME.NAMESPACE.svc``; without a
caBundle the host's trusted roots apply. Connections are kept alive per CA bundle (one session, one TLS
context per bundle), so a busy webhook costs a round trip, not a handshake, per request. Every failure is a
:class:`CallError` worded like kube-apiserver's (``failed to call webhook: Post "URL": …``); the caller
applies the webhook's failurePolicy.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any

import aiohttp
import orjson

from k3c.apiserver.services import ServiceResolver, ServiceUnavailable
from k3c.apiserver.webhookconfig import Webhook

#: The largest answer read from a webhook (kube-apiserver reads at most a few MiB too).
MAX_RESPONSE = 3 * 1024 * 1024


class CallError(Exception):
    """The webhook could not be asked, or did not answer a review."""


class WebhookClients:
    """One kept-alive HTTPS session for every webhook call of the server."""

    def __init__(self, services: ServiceResolver) -> None:
        self.services = services
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[bytes, ssl.SSLContext] = {}

    def _tls(self, bundle: bytes | None) -> ssl.SSLContext:
        key = hashlib.sha256(bundle or b"").digest()
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cadata=bundle.decode()) if bundle else ssl.create_default_context()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._contexts[key] = ctx
        return ctx

    def _target(self, hook: Webhook) -> tuple[str, str | None]:
        """(URL to POST to, TLS server name when it is not the URL's host)."""
        suffix = f"?timeout={hook.timeout}s"
        if hook.url is not None:
            return hook.url + suffix, None
        assert hook.service is not None
        svc = hook.service
        try:
            host, port = self.services.resolve(svc.namespace, svc.name, svc.port)
        except ServiceUnavailable as err:
            raise CallError(str(err)) from None
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}{svc.path or '/'}{suffix}", f"{svc.name}.{svc.namespace}.svc"

    async def call(self, hook: Webhook, body: dict[str, Any]) -> Any:
        """POST ``body``; the decoded JSON answer, or CallError."""
        try:
            ctx = self._tls(hook.ca_bundle)
        except (ssl.SSLError, ValueError) as err:
            raise CallError(f"invalid caBundle: {err}") from None
        url, server_name = self._target(hook)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(hook.timeout):
                async with self._session.post(url, data=orjson.dumps(body), ssl=ctx, server_hostname=server_name,
                                              headers={"Content-Type": "application/json",
                                                       "Accept": "application/json"}) as resp:
                    raw = await resp.content.read(MAX_RESPONSE + 1)
                    status = resp.status
        except TimeoutError:
            raise CallError(f'failed to call webhook: Post "{url}": context deadline exceeded') from None
        except aiohttp.ClientConnectorCertificateError as err:
            why = getattr(err.certificate_error, "verify_message", "") or str(err.certificate_error)
            raise CallError(f'failed to call webhook: Post "{url}": tls: failed to verify certificate: '
                            f"x509: {why}") from None
        except aiohttp.ClientConnectorError as err:
            raise CallError(f'failed to call webhook: Post "{url}": dial tcp {err.host}:{err.port}: connect: '
                            f"{(err.strerror or str(err)).lower()}") from None
        except (aiohttp.ClientError, OSError) as err:
            raise CallError(f'failed to call webhook: Post "{url}": {err}') from None
        if len(raw) > MAX_RESPONSE:
            raise CallError(f"the webhook's response is larger than {MAX_RESPONSE} bytes")
        if status != 200:
            raise CallError(f"received unexpected HTTP status {status} from the webhook")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise CallError(f"the webhook's response is not JSON: {err}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
