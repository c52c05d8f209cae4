"""k3c: classic Docker for a Kubernetes world."""

__version__ = "0.1.0"
