"""Level-based reconcilers, one module per k3c resource."""
