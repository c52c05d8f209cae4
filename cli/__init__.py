"""The `k3c` command line (installed as `k3c.cli`): one module per command family."""
