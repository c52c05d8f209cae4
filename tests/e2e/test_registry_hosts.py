"""containerd's ``certs.d/<host>/hosts.toml`` from the ``kube-system/k3c-registries`` ConfigMap.

The operator writes one directory per configured registry host into k3c's containerd ``config_path``
(k3c/reconcilers/registryaccess.py); here it runs in-process against a real API server, with a temporary
``certs.d``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from k3c.api import CONFIG_MAPS
from k3c.distribution import hosts
from k3c.reconcilers.kube import Kube
from k3c.reconcilers.registryaccess import RegistryAccess
from tests.support.harness import APIServerProcess, RawClient


def _sync(apiserver: APIServerProcess, certs_dir: Path) -> None:
    async def run() -> None:
        kube = Kube(str(apiserver.kubeconfig))
        try:
            await RegistryAccess(kube, certs_dir).sync_containerd_hosts()
        finally:
            await kube.close()

    asyncio.run(run())


def test_only_host_port_keys_become_directories(apiserver: APIServerProcess, tmp_path: Path) -> None:
    """Keys that are not ``host[:port]`` (``../../etc``, paths, TOML-breaking text) write nothing anywhere."""
    root = tmp_path / "root"
    certs_dir = root / "containerd" / "certs.d"
    certs_dir.mkdir(parents=True)
    tls = {"tls": {"insecure_skip_verify": True}}
    settings = {
        "insecure": ["../../insecure", "good.example:5000", str(tmp_path / "abs"), "[::1]:5000"],
        "configs": {"../../etc": tls, "..": tls, "a/b": tls, 'x"\n[host."https://evil"]': tls, "": tls,
                    "ok.example": tls, "-bad.example": tls, "host:notaport": tls},
    }
    api = RawClient(apiserver)
    r = api.post(f"{CONFIG_MAPS.path(hosts.CONFIGMAP_NAMESPACE)}", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": hosts.CONFIGMAP_NAME, "namespace": hosts.CONFIGMAP_NAMESPACE},
        "data": {hosts.CONFIGMAP_KEY: yaml.safe_dump(settings)}})
    assert r.status_code == 201, r.text
    try:
        _sync(apiserver, certs_dir)
    finally:
        api.delete(CONFIG_MAPS.path(hosts.CONFIGMAP_NAMESPACE, hosts.CONFIGMAP_NAME))
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [f"root/containerd/certs.d/{h}/hosts.toml" for h in ("[::1]:5000", "good.example:5000",
                                                                          "ok.example")]
