"""Images as tar archives: docker-archive and OCI-layout save/load against containerd's store, the ``save``
and ``load`` subresources that stream them through the API server, and an archive's layers applied into a
directory (``k3c build --output``)."""
