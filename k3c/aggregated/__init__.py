"""``streams.k3c.io``: a node's streams (logs, exec, attach, save/load, build logs and contexts) as an
aggregated API server, the cluster-mode host of the providers :mod:`k3c.apiserver.subresources` defines."""
