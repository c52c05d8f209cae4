"""The operator process's configuration: one record, made from ``python -m k3c.operator``'s flags.

Every controller of the process (containers and volumes, images, builds) reads the same record, so a
path such as containerd's registry ``config_path`` is derived in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from k3c.builder.confinement import DEFAULT_PIDS_LIMIT
from k3c.distribution.hosts import registry_config_path

#: The controllers one operator process can run (``--controllers``); all of them by default.
CONTROLLERS = ("containers", "images", "builds")
#: Build engines (``--build-engine``): the native one (buildah as its fallback), or buildah for everything.
BUILD_ENGINES = ("native", "buildah")


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str
    containerd_address: str
    node_name: str
    root_dir: Path
    #: which of :data:`CONTROLLERS` run in this process
    controllers: tuple[str, ...] = CONTROLLERS
    #: warm generic sandboxes kept ready (containers)
    pool_size: int = 1
    #: k3c's own containerd's root/state dirs: needed to scrub generic sandboxes for reuse (else no reuse),
    #: and the root holds containerd's registry config_path.
    containerd_root: Path | None = None
    containerd_state: Path | None = None
    #: the static init of ``spec.init`` (docker --init) on this node; None: such containers fail to start
    init_binary: Path | None = None
    #: one of :data:`BUILD_ENGINES`
    build_engine: str = "native"
    #: RUN steps' pids limit in the native engine (0: none)
    build_pids_limit: int = DEFAULT_PIDS_LIMIT
    #: whether a git build context may be a ``file://`` URL or a path on the node (it reads the node's files,
    #: as ``context.dir`` does); ``k3c daemon``'s embedded mode allows it, a shared cluster's operator not
    #: unless told (the node policy is to decide this per request)
    local_git_contexts: bool = False
    #: where the admission webhooks listen (port 0: one the kernel picks), and whether this process
    #: registers them as the ValidatingWebhookConfiguration ``k3c.io`` (not when another process does)
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 0
    register_webhooks: bool = True
    #: a node joining a shared API server registers its own configuration, ``k3c.io.<node>``, judges only
    #: objects placed on it (or not placed yet), and removes the configuration when it stops
    webhooks_per_node: bool = False
    #: this node's own policy (k3c.reconcilers.nodepolicy): permissive or restricted, the governed fields it
    #: allows (KIND.FIELD), the node directories host paths may name, the namespace of registry credentials
    node_policy: str = "permissive"
    node_policy_allow: tuple[str, ...] = ()
    node_policy_host_paths: tuple[str, ...] = ()
    credentials_namespace: str = "kube-system"
    #: cluster mode's Image objects: one per (node, image), named and labelled with the node, so that nodes
    #: holding the same image never share an object (k3c.reconcilers.imageobjects); embedded mode names
    #: them by reference alone
    images_per_node: bool = False
    #: the node's Kubernetes runtime (a kubelet's containerd), which every image k3c names here is copied
    #: into at once, and removed from with it (k3c.cri.imageshare); None: no such runtime
    runtime_address: str | None = None
    #: the resolvers of this node's DNS-enabled networks (k3c.netdns), run with the containers controller,
    #: each on its network's gateway at ``dns_port`` (53; tests use others); off: containers of user networks
    #: resolve through the host's resolvers alone
    dns: bool = True
    dns_port: int = 53

    def runs(self, controller: str) -> bool:
        return controller in self.controllers

    @property
    def webhook_cert_dir(self) -> Path:
        """The webhook server's CA and serving certificate (keys 0600)."""
        return Path(self.root_dir) / "webhook"

    @property
    def certs_dir(self) -> Path | None:
        """containerd's registry ``config_path`` (a hosts.toml per registry host), when the containerd is
        k3c's own (``containerd_root`` given); else None: a foreign containerd's config is not ours to write."""
        return registry_config_path(self.containerd_root) if self.containerd_root else None
