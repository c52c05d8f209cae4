"""What the image reconcilers need to reach a registry: credentials, host settings, a client, CRI's view.

Read from the API at every pull or push, not cached: ``k3c login`` must take effect for the very next
pull, and these are two small GETs next to a transfer of megabytes. The same settings are written as
containerd ``hosts.toml`` files (in the ``config_path`` of k3c's containerd) so that CRI's own pulls use
the CA and plain-HTTP rules the user chose.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k3c.api import CONFIG_MAPS, SECRETS, Resource
from k3c.apierrors import Forbidden
from k3c.cri.runtime import pb
from k3c.distribution import auth, hosts
from k3c.distribution.client import RegistryClient
from k3c.oci.reference import is_registry_host
from k3c.reconcilers.kube import Kube, Ref

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SecretRef:
    namespace: str = auth.SECRET_NAMESPACE
    name: str = auth.SECRET_NAME

    @classmethod
    def of(cls, spec: dict[str, Any]) -> SecretRef:
        """From an object's ``spec.authSecret`` (each part defaults to k3c's own Secret)."""
        ref = spec.get("authSecret") or {}
        return cls(ref.get("namespace") or auth.SECRET_NAMESPACE, ref.get("name") or auth.SECRET_NAME)


class RegistryAccess:
    """Credentials and settings for registry hosts, from the API; containerd's hosts.toml kept in step."""

    def __init__(self, kube: Kube, certs_dir: Path | None = None) -> None:
        self.kube = kube
        #: containerd's ``config_path`` (``<root>/containerd/certs.d`` for k3c's own containerd), if any.
        self.certs_dir = certs_dir

    async def _get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(Ref(resource, namespace, name))
        except Forbidden:
            return None

    async def credentials(self, host: str, secret: SecretRef = SecretRef()) -> auth.Credentials | None:
        doc = await self._get(SECRETS, secret.namespace, secret.name)
        return auth.DockerConfig.from_secret(doc).lookup(host)

    async def config(self) -> hosts.RegistriesConfig:
        cm = await self._get(CONFIG_MAPS, hosts.CONFIGMAP_NAMESPACE, hosts.CONFIGMAP_NAME)
        try:
            return hosts.RegistriesConfig.from_configmap(cm)
        except (ValueError, OSError) as err:
            log.warning("ignoring %s/%s: %s", hosts.CONFIGMAP_NAMESPACE, hosts.CONFIGMAP_NAME, err)
            return hosts.RegistriesConfig()

    async def client(self, host: str, secret: SecretRef = SecretRef()) -> RegistryClient:
        """A client for ``host`` with its credentials and settings (close it when done)."""
        config, creds = await asyncio.gather(self.config(), self.credentials(host, secret))
        return RegistryClient(host, credentials=creds, settings=config.for_host(host))

    async def cri_auth(self, host: str, secret: SecretRef = SecretRef()) -> pb.AuthConfig | None:
        """The credentials for CRI's PullImage (containerd answers the registry's challenges itself)."""
        creds = await self.credentials(host, secret)
        if creds is None:
            return None
        # No server_address: containerd would match it as a URL against the host it contacts, and the
        # credentials are this host's anyway.
        return pb.AuthConfig(username=creds.username, password=creds.password, identity_token=creds.identity_token)

    async def sync_containerd_hosts(self) -> None:
        """Write ``certs.d/<host>/hosts.toml`` (and ``ca.crt``) for every configured host."""
        if self.certs_dir is None:
            return
        cfg = await self.config()
        for host in sorted(cfg.hosts()):
            directory = self.certs_dir / host
            if not is_registry_host(host) or directory.parent != self.certs_dir:  # (from_text dropped them)
                continue
            try:
                settings = cfg.for_host(host)
            except OSError as err:
                log.warning("registry %s: cannot read its CA: %s", host, err)
                continue
            _write_host(directory, settings)


def _write_host(directory: Path, settings: hosts.HostSettings) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = None
    if settings.ca_pem:
        ca_path = directory / "ca.crt"
        _write_if_changed(ca_path, settings.ca_pem)
    _write_if_changed(directory / "hosts.toml", hosts.hosts_toml(settings, str(ca_path) if ca_path else None))


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
