"""k3c's API group and version, spelled once for every layer: the CLI and the reconcilers build URLs and
objects with them, the streaming services name the resources they serve subresources of.

The CRDs in ``crds/`` are the source of truth of the API; these are the names they declare.
"""

GROUP = "k3c.io"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
