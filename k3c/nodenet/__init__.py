"""Container networks on the node: CNI configs, the ``k3c-cni`` dispatcher, bridges, isolation rules, subnets."""
