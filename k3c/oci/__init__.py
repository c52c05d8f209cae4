"""Image building blocks that need no registry and no containerd: image references (``reference``) and OCI
image layouts made and read in pure Python (``layout``)."""
