"""The Docker Engine API on a unix socket: docker's clients served from k3c's objects, through the API server.

Like the CLI, this layer only creates, patches, watches and deletes objects and uses the stream
subresources: every docker call becomes the objects `k3c` writes, so there is no second source of truth.
`k3c daemon` serves it on ``<state-dir>/docker.sock`` (see :mod:`k3c.dockerapi.server`).
"""
