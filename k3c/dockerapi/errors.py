"""Docker API failures, one class per meaning, answered as docker answers them: a status and ``{"message": …}``.

Clients key on the status (404 makes `docker run` pull, 409 is a name in use) and show the message as is,
so both follow dockerd's words.
"""

from __future__ import annotations

from aiohttp import web

from k3c.dockerapi.replies import reply


class DockerError(Exception):
    """A failure the client caused or must hear about; ``status`` is the HTTP status docker uses for it."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadParameter(DockerError):
    """The request is malformed or asks for something k3c does not honour (400)."""

    status = 400


class Forbidden(DockerError):
    """An operation docker never allows on that object: removing a predefined network (403)."""

    status = 403


class NotFound(DockerError):
    """No such container, image, volume or endpoint (404)."""

    status = 404


class Conflict(DockerError):
    """The request clashes with the current state: a name in use, a running container removed (409)."""

    status = 409


def error_response(status: int, message: str) -> web.Response:
    """docker's error body: a JSON object with one ``message`` field."""
    return reply({"message": message}, status=status)
