"""Tests against real processes: the API server, kubectl, containerd, `k3c daemon`, a registry."""
