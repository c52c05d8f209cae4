"""Per-registry connection settings: which hosts may speak plain HTTP, and which CA their TLS is checked with.

Why a ConfigMap (``kube-system/k3c-registries``, key ``registries.yaml``): the CLI (``k3c login`` checks
the credentials), the operator (pulls and pushes) and containerd's CRI (pulls) must all agree, and the API
is the one place all of them read. The shape is a small subset of k3s's ``registries.yaml``::

    insecure: ["10.0.0.5:5000"]          # plain HTTP (or TLS without verification) allowed
    configs:
      "reg.example.com:5443":
        tls:
          ca_file: /etc/k3c/reg-ca.pem   # a CA file on the node ...
          ca: |                          # ... or the PEM itself
            -----BEGIN CERTIFICATE-----
          insecure_skip_verify: false

Loopback registries (``localhost``, ``127.0.0.0/8``, ``::1``) may always use plain HTTP, as with docker and
containerd; every other host needs TLS verified against the system CAs or the CA named here. The same rule
decides where credentials may travel in the clear: a registry's Bearer challenge names a token realm,
which gets the basic credentials only over HTTPS or on a loopback or insecure host
(:meth:`HostSettings.may_send_credentials`). :func:`hosts_toml` renders the same settings for containerd's ``config_path`` so CRI pulls obey them too.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k3c.oci.reference import is_registry_host

__all__ = [
    "CONFIGMAP_KEY",
    "CONFIGMAP_NAME",
    "CONFIGMAP_NAMESPACE",
    "HostSettings",
    "RegistriesConfig",
    "hosts_toml",
    "registry_config_path",
    "is_loopback",
]

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "k3c-registries"
CONFIGMAP_KEY = "registries.yaml"

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """``localhost[:port]``, ``127.x.y.z[:port]`` or ``[::1][:port]``: always allowed over plain HTTP."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HostSettings:
    """How to reach one registry host."""

    host: str
    insecure: bool = False
    ca_pem: str = ""
    skip_verify: bool = False
    #: every host marked insecure in the configuration (a token realm may be on another one)
    insecure_hosts: frozenset[str] = frozenset()

    @property
    def plain_http_allowed(self) -> bool:
        return self.insecure or is_loopback(self.host)

    def schemes(self) -> list[str]:
        """Schemes to try, in order: HTTPS first (as docker and containerd do), HTTP only when allowed and
        no CA was named (naming a CA says the registry speaks TLS)."""
        return ["https", "http"] if self.plain_http_allowed and not self.ca_pem else ["https"]

    def may_send_credentials(self, url: str) -> bool:
        """Whether credentials may go to ``url`` (a token realm): over HTTPS; over plain HTTP only to a
        loopback host, to one marked insecure (``host[:port]`` or the bare host), or to this registry's own
        host when it is insecure."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            return True
        if parts.scheme != "http":
            return False
        netloc, name = parts.netloc.rpartition("@")[2], parts.hostname or ""
        own = urllib.parse.urlsplit(f"//{self.host}").hostname
        return (is_loopback(netloc) or netloc in self.insecure_hosts or bool({name, f"[{name}]"} & self.insecure_hosts)
                or (self.insecure and name == own))

    def ssl_context(self) -> ssl.SSLContext:
        """System CAs plus the named CA; no verification only for insecure hosts or when asked.

        Cached per (CA, verification) because loading the system CAs costs ~40 ms, once per push otherwise.
        """
        return _ssl_context(self.ca_pem, self.skip_verify or (self.plain_http_allowed and not self.ca_pem))


@functools.lru_cache(maxsize=32)
def _ssl_context(ca_pem: str, no_verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    if no_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(slots=True)
class RegistriesConfig:
    """The parsed ``registries.yaml``: insecure hosts and per-host TLS settings."""

    insecure: set[str] = field(default_factory=set)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str | None) -> RegistriesConfig:
        """Parse YAML (or JSON) text; empty text means defaults. Raises ValueError on a malformed file."""
        if not text or not text.strip():
            return cls()
        try:
            import yaml

            doc = yaml.safe_load(text) or {}
        except ImportError:  # pragma: no cover - pyyaml is a dependency; JSON is valid YAML anyway
            doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("registries.yaml: expected a mapping at the top")
        insecure = doc.get("insecure") or []
        configs = doc.get("configs") or {}
        if not isinstance(insecure, list) or not isinstance(configs, dict):
            raise ValueError("registries.yaml: `insecure` must be a list and `configs` a mapping")
        return cls({str(h) for h in insecure if _host_or_warn(h)},
                   {str(k): dict(v or {}) for k, v in configs.items() if _host_or_warn(k)})

    @classmethod
    def from_configmap(cls, cm: dict[str, Any] | None) -> RegistriesConfig:
        return cls.from_text(((cm or {}).get("data") or {}).get(CONFIGMAP_KEY))

    def for_host(self, host: str) -> HostSettings:
        tls = (self.configs.get(host) or {}).get("tls") or {}
        ca = str(tls.get("ca") or "")
        if not ca and tls.get("ca_file"):
            ca = Path(str(tls["ca_file"])).read_text()
        return HostSettings(host, insecure=host in self.insecure, ca_pem=ca,
                            skip_verify=bool(tls.get("insecure_skip_verify")), insecure_hosts=frozenset(self.insecure))

    def hosts(self) -> set[str]:
        return set(self.insecure) | set(self.configs)


def _host_or_warn(host: Any) -> bool:
    """Whether a host named in registries.yaml is a ``host[:port]``; anything else (``../../etc``, a path,
    text that would break hosts.toml) is ignored with a warning, never turned into a directory name."""
    if isinstance(host, str) and is_registry_host(host):
        return True
    log.warning("registries.yaml: ignoring %r: not a registry host[:port]", host)
    return False


def hosts_toml(settings: HostSettings, ca_path: str | None) -> str:
    """containerd's ``certs.d/<host>/hosts.toml`` for one host (``ca_path``: where the CA PEM was written)."""
    h = settings.host
    lines = [f'server = "https://{h}"', "", f'[host."https://{h}"]', '  capabilities = ["pull", "resolve", "push"]']
    if ca_path:
        lines.append(f'  ca = "{ca_path}"')
    if settings.skip_verify or (settings.insecure and not ca_path):
        lines.append("  skip_verify = true")
    if settings.insecure:  # containerd tries the hosts in order: TLS first, then plain HTTP, like docker
        lines += ["", f'[host."http://{h}"]', '  capabilities = ["pull", "resolve", "push"]']
    return "\n".join(lines) + "\n"


def registry_config_path(root_dir: Path) -> Path:
    """The registry ``config_path`` of a containerd k3c configured with root ``root_dir`` (the operator
    writes ``hosts.toml`` files there, see :mod:`k3c.reconcilers.registryaccess`)."""
    return root_dir / "certs.d"
