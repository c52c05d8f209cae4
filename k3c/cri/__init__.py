"""Clients for containerd: the CRI runtime/image services and containerd's own services.

- :mod:`k3c.cri.channel` dials containerd's unix socket and tags calls with a containerd namespace.
- :mod:`k3c.cri.runtime` wraps the CRI RuntimeService and ImageService (:class:`~k3c.cri.runtime.CRIClient`).
- :mod:`k3c.cri.events` streams decoded containerd events (task exits etc.) so nothing has to poll.
- :mod:`k3c.cri.imagestore` reads and writes containerd's content store and image names (import/export).
- :mod:`k3c.cri.errors` maps gRPC status codes to the few exceptions callers branch on.
"""
