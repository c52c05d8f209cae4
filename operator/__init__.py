"""kopf wiring for the k3c operator (installed as `k3c.operator`); the logic lives in k3c.reconcilers."""
