"""The Docker API server: aiohttp on a unix socket (0600, or 0660 for ``--group``), never on TCP.

Every route answers on its unversioned path and under ``/v1.NN``; a middleware refuses versions outside
the served range and turns every failure into docker's ``{"message": …}`` with docker's status: unknown
endpoints 404, bad input 400, an API server refusal its own 404/409/400. An unexpected fault is logged
and answered 500 with its one-line reason; the server keeps serving either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from k3c import apierrors
from k3c.dockerapi import (
    archives,
    attach,
    build,
    containers,
    events,
    execs,
    images,
    networks,
    nodeops,
    prune,
    pulls,
    rename,
    system,
    versions,
    volumes,
)
from k3c.dockerapi.cluster import Cluster
from k3c.dockerapi.errors import DockerError, error_response

log = logging.getLogger("k3c.dockerapi")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: AF_UNIX's sun_path limit, terminating NUL included
MAX_UNIX_PATH = 107

#: (method, path, handler) of every endpoint; GET routes answer HEAD too
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", system.ping),
    ("GET", "/version", system.version),
    ("GET", "/info", system.info),
    ("POST", "/containers/create", containers.create),
    ("GET", "/containers/json", containers.list_containers),
    ("GET", "/containers/{id}/json", containers.inspect),
    ("POST", "/containers/{id}/start", containers.start),
    ("POST", "/containers/{id}/stop", containers.stop),
    ("POST", "/containers/{id}/kill", nodeops.kill),
    ("POST", "/containers/{id}/restart", containers.restart),
    ("DELETE", "/containers/{id}", containers.remove),
    ("POST", "/containers/{id}/wait", containers.wait),
    ("GET", "/containers/{id}/logs", containers.logs),
    # attach, exec and container resize (14-exec)
    ("POST", "/containers/{id}/attach", attach.attach),
    ("POST", "/containers/{id}/resize", attach.resize),
    ("POST", "/containers/{id}/exec", execs.create),
    ("POST", "/exec/{id}/start", execs.start),
    ("POST", "/exec/{id}/resize", execs.resize),
    ("GET", "/exec/{id}/json", execs.inspect),
    # -- 14-misc: node operations, rename, prune
    ("GET", "/containers/{id}/archive", nodeops.get_archive),
    ("PUT", "/containers/{id}/archive", nodeops.put_archive),
    ("GET", "/containers/{id}/top", nodeops.top),
    ("GET", "/containers/{id}/stats", nodeops.stats),
    ("GET", "/containers/{id}/changes", nodeops.changes),
    ("GET", "/containers/{id}/export", nodeops.export),
    ("POST", "/containers/{id}/pause", nodeops.pause),
    ("POST", "/containers/{id}/unpause", nodeops.unpause),
    ("POST", "/containers/{id}/rename", rename.rename),
    ("POST", "/containers/prune", prune.prune_containers),
    ("POST", "/volumes/prune", prune.prune_volumes),
    ("GET", "/events", events.events),
    # -- end 14-misc
    # networks (issue 15): Network objects
    ("GET", "/networks", networks.list_networks),
    ("POST", "/networks/create", networks.create),
    ("POST", "/networks/prune", networks.prune),
    ("GET", "/networks/{id}", networks.inspect),
    ("DELETE", "/networks/{id}", networks.remove),
    ("POST", "/networks/{id}/connect", networks.connect),
    ("POST", "/networks/{id}/disconnect", networks.disconnect),
    ("GET", "/images/json", images.list_images),
    ("GET", "/images/{name:.+}/json", images.inspect),
    # images: pull, push, tag, remove, history, prune, save, load; build (BuildKit's session refused)
    ("POST", "/images/create", pulls.create),
    ("POST", "/images/prune", images.prune),
    ("POST", "/images/{name:.+}/push", pulls.push),
    ("POST", "/images/{name:.+}/tag", images.tag),
    ("GET", "/images/{name:.+}/history", images.history),
    ("DELETE", "/images/{name:.+}", images.remove),
    ("GET", "/images/get", archives.save_many),
    ("GET", "/images/{name:.+}/get", archives.save_one),
    ("POST", "/images/load", archives.load),
    ("POST", "/build", build.build),
    ("POST", "/session", build.buildkit_session),
    ("POST", "/grpc", build.buildkit_session),
    ("POST", "/volumes/create", volumes.create),
    ("GET", "/volumes", volumes.list_volumes),
    ("GET", "/volumes/{name}", volumes.inspect),
    ("DELETE", "/volumes/{name}", volumes.remove),
]

_API_STATUS = {apierrors.NotFound: 404, apierrors.Conflict: 409, apierrors.BadRequest: 400,
               apierrors.Invalid: 400, apierrors.Forbidden: 403, apierrors.Unauthorized: 401}


def _api_error_status(err: apierrors.APIError) -> int:
    for cls, status in _API_STATUS.items():
        if isinstance(err, cls):
            return status
    return 500


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Version check first, then docker's error shape for whatever the handler raises."""
    try:
        versions.check(request.match_info.get("version"))
        return await handler(request)
    except DockerError as err:
        return error_response(err.status, err.message)
    except apierrors.APIError as err:
        return error_response(_api_error_status(err), err.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        message = "page not found" if err.status == 404 else err.reason
        return error_response(err.status, message)
    except Exception as err:  # a fault of ours: logged, answered in docker's shape, the server keeps serving
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(err).splitlines()[0] if str(err) else type(err).__name__)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """dockerd names itself and its API version on every answer; clients read the version from any."""
    response.headers.setdefault("Server", "Docker/k3c (linux)")
    response.headers.setdefault("API-Version", versions.API_VERSION)


def make_app(cluster: Cluster, host: system.Host) -> web.Application:
    app = web.Application(middlewares=[docker_errors], client_max_size=0)
    app["cluster"] = cluster
    app["host"] = host
    app["list_rows"] = containers.ListRows()  # (containers.list_containers)
    attach.setup(app)
    execs.setup(app)
    for method, path, handler in ROUTES:
        for prefix in ("", versions.VERSION_PREFIX):
            app.router.add_route(method, prefix + path, handler)
            if method == "GET":
                app.router.add_route("HEAD", prefix + path, handler)
    app.on_response_prepare.append(_server_header)
    app.on_cleanup.append(lambda app: cluster.close())
    return app


@dataclass
class DockerSocketConfig:
    """Where the socket goes, who may use it, and which API server and namespace stand behind it."""

    socket_path: Path
    kubeconfig: Path
    node_name: str
    root_dir: Path
    group: int | None = None
    #: the container network (docker's ``bridge`` network): its subnet and bridge device
    subnet: str = ""
    bridge: str = ""
    namespace: str | None = None
    #: asked for by name (``--docker-socket``): a path a unix socket cannot have fails the start; the default
    #: one is skipped with a warning instead, as the API server's own socket is
    explicit: bool = False


class DockerAPIServer:
    """The Docker API on its socket, started by `k3c daemon` once the API server and operator are up."""

    name = "docker"

    def __init__(self, config: DockerSocketConfig) -> None:
        self.config = config
        self._runner: web.AppRunner | None = None
        self.serving = False

    @property
    def address(self) -> str:
        """What ``DOCKER_HOST`` is set to for this socket."""
        return f"unix://{self.config.socket_path}"

    async def start(self, store_revision: Callable[[], int] | None = None) -> bool:
        """Serve on the socket; False when the default path cannot be a unix socket (see ``explicit``).
        ``store_revision``: see :class:`k3c.dockerapi.cluster.Cluster`."""
        cfg = self.config
        path = cfg.socket_path
        if len(str(path.parent / ".docker-sock-XXXXXXXX" / "docker.sock").encode()) > MAX_UNIX_PATH:
            if cfg.explicit:
                raise OSError(f"the path {path} is too long for a unix socket")
            log.warning("not serving the Docker API on %s: the path is too long for a unix socket", path)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of an earlier run
        host = system.Host(cfg.node_name, cfg.root_dir, cfg.subnet, cfg.bridge)
        app = make_app(Cluster(cfg.kubeconfig, cfg.namespace, store_revision), host)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # Bound in a private directory, given its mode there, then renamed into place: nobody can connect
        # before the mode is right, without touching the process-wide umask.
        private = Path(tempfile.mkdtemp(prefix=".docker-sock-", dir=path.parent))
        try:
            await web.UnixSite(self._runner, str(private / "docker.sock"), backlog=1024).start()
            if cfg.group is not None:
                os.chown(private / "docker.sock", -1, cfg.group)
            os.chmod(private / "docker.sock", 0o660 if cfg.group is not None else 0o600)
            os.replace(private / "docker.sock", path)
            self.serving = True
        finally:
            shutil.rmtree(private, ignore_errors=True)
        log.info("Docker API listening on unix://%s", path)
        return True

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.serving:
            self.serving = False
            with contextlib.suppress(FileNotFoundError):
                self.config.socket_path.unlink()
