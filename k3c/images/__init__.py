"""Image building blocks that need no registry: OCI image layouts made and read in pure Python."""
