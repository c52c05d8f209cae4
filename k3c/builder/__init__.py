"""Image builds behind a small engine interface: k3c's own native engine, with buildah as its fallback.

- :mod:`.engine`: the interface (:class:`~.engine.Engine`, request/result/failure types);
- :mod:`.native`: the native engine (containerd snapshots, runc for RUN, the differ for layers), with
  :mod:`.instructions`, :mod:`.words`, :mod:`.bases`, :mod:`.imageconfig`, :mod:`.rootfs`, :mod:`.sandbox`,
  :mod:`.runmounts`, :mod:`.network` and :mod:`.layercache`;
- :mod:`.buildah`: the fallback for what the native engine does not do, with :mod:`.transfer` (containerd
  content store <-> buildah's storage);
- shared by both: :mod:`.context` (dir / git / uploaded-tar contexts), :mod:`.dockerignore`,
  :mod:`.dockerfile` (instruction splitting, ARGs, the images a build starts from), :mod:`.cachekey` (the
  whole-build key), :mod:`.paths` (where logs and uploads live);
- :mod:`.logs`: ImageBuild's ``log`` and ``context`` subresource provider (the API server mounts it).
- :mod:`.agentimage`: the node agent's image, assembled from this host (no Dockerfile, no base image).
"""
