"""Clients for containerd: the CRI runtime/image services and containerd's own services."""
