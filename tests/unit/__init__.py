"""In-process tests of k3c's modules: no API server, containerd, kubectl or any other process."""
