"""The embedded Kubernetes API server: SQLite-backed storage behind kube-apiserver's HTTP API."""
