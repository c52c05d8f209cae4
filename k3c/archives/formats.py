"""The image archive formats k3c saves and loads, and the error both directions raise.

- ``docker-archive``: what ``docker save`` (up to docker 24) and ``skopeo copy … docker-archive:`` write:
  ``manifest.json`` (``[{Config, RepoTags, Layers}]``), the config as ``<id>.json`` and each layer as an
  *uncompressed* tar. Saving inflates gzip layers on the fly (a first pass measures the size the tar
  header must announce); loading wraps the layers in a Docker schema 2 manifest, so the image ID (config
  digest) survives a round trip while the manifest digest, as with docker, does not.
- ``oci-archive``: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) with blobs
  byte for byte, so digests survive, plus a docker-style ``manifest.json`` (as docker 25 writes) so that
  older ``docker load`` accepts it too. Names travel in the ``io.containerd.image.name`` annotation.

Saving writes either (:mod:`k3c.archives.save`); loading tells them apart by their members
(:mod:`k3c.archives.load`).
"""

from __future__ import annotations

__all__ = ["FORMATS", "ArchiveError"]

FORMATS = ("docker-archive", "oci-archive")


class ArchiveError(ValueError):
    """The archive is not a docker-archive / OCI layout, or is inconsistent; or an image cannot be saved."""
