"""Image building blocks that need no registry and no containerd: image references (``reference``), OCI
image layouts made and read in pure Python (``ocilayout``), layers applied into a directory (``unpack``)."""
