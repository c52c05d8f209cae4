"""Image builds behind a small engine interface (buildah today, buildkit when present).

- :mod:`.engine`: the interface (:class:`~.engine.Engine`, request/result/failure types);
- :mod:`.buildah`: the buildah engine (private storage, base images from containerd, export into containerd);
- :mod:`.cachekey`: the whole-build key that lets an unchanged rebuild skip the builder;
- :mod:`.context`: dir / git / uploaded-tar build contexts;
- :mod:`.dockerignore`: Docker's .dockerignore semantics; :mod:`.dockerfile`: FROM/ARG parsing;
- :mod:`.transfer`: containerd content store <-> ``dir:`` image layouts;
- :mod:`.logs`: ImageBuild's ``log`` and ``context`` subresources (the daemon calls ``register``).
"""
