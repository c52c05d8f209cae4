"""``save`` and ``load`` as API subresources of Image objects: archives stream through the API server.

Why subresources: the CLI talks only to the API, yet ``k3c save``/``k3c load`` move whole images; like
the ``log`` subresource of LocalContainers, the bytes stream through the API server (same TLS, same
authentication), which reads and writes containerd's content store directly. The daemon mounts them
(:mod:`k3c.apiserver.subresources`):

    apiserver.handler.mount(ArchiveEndpoints(containerd_address))

URLs (``-`` stands for "no particular object", like docker's collection-level ``/images/get``):

- ``GET /apis/k3c.io/v1alpha1/images/{name}/save?format=docker-archive|oci-archive[&image=REF...]``:
  a tar of the object's image plus every ``image`` reference given (``images/-/save?image=…`` for
  references only). Every image is checked before the first byte is sent: an unknown one is a 404.
- ``POST /apis/k3c.io/v1alpha1/images/-/load`` with the tar (plain or gzip) as body: imports every image
  of a docker-archive or OCI layout; answers ``{"images": [{"name", "digest", "id"}]}``. A broken or
  truncated archive is a 400 and leaves no image behind. The Image objects follow from containerd's
  events (the operator creates them within a second).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from k3c.api import IMAGES
from k3c.apiserver import errors
from k3c.apiserver.subresources import Route, SubresourceHandler, SubresourceRequest

if TYPE_CHECKING:
    from k3c.cri.imagestore import ContainerdImages

log = logging.getLogger(__name__)

ANY = "-"


class ArchiveEndpoints:
    """The two subresource handlers, sharing one containerd client made in the server's event loop."""

    def __init__(self, containerd_address: str, runtime_address: str | None = None) -> None:
        self.address = containerd_address
        #: the node runtime's containerd, which loaded images are shared into (k3c.cri.imageshare)
        self.runtime_address = runtime_address
        self._store: ContainerdImages | None = None

    def routes(self) -> Mapping[Route, SubresourceHandler]:
        """``images/{name}/save`` and ``images/{name}/load`` (see the module doc)."""
        return {Route(IMAGES.group, IMAGES.plural, "save"): self.save,
                Route(IMAGES.group, IMAGES.plural, "load"): self.load}

    def store(self) -> ContainerdImages:
        if self._store is None:
            from k3c.cri.imageshare import SharedImages
            from k3c.cri.imagestore import ContainerdImages

            self._store = SharedImages(self.address, ContainerdImages(self.runtime_address)) \
                if self.runtime_address else ContainerdImages(self.address)
        return self._store

    @staticmethod
    async def _reference_of(req: SubresourceRequest) -> list[str]:
        if not req.name or req.name == ANY:
            return []
        obj = await req.parent()
        ref = (obj.get("spec") or {}).get("reference")
        return [ref] if ref else []

    async def save(self, req: SubresourceRequest) -> web.StreamResponse:
        from k3c.archives.formats import ArchiveError
        from k3c.archives.save import save
        from k3c.oci.reference import InvalidReference

        request = req.http
        if request.method != "GET":
            raise errors.method_not_allowed()
        names = await self._reference_of(req) + request.query.getall("image", [])
        if not names:
            raise errors.bad_request("no image to save: name an Image object or pass ?image=REFERENCE")
        fmt = request.query.get("format", "docker-archive")
        try:
            stream = await save(self.store(), names, fmt)
        except InvalidReference as err:
            raise errors.bad_request(str(err)) from None
        except ArchiveError as err:
            code = 404 if "does not exist" in str(err) else 400
            raise errors.APIError(code, "NotFound" if code == 404 else "BadRequest", str(err)) from None
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in stream:
                await resp.write(chunk)
        except Exception as err:  # headers are out: the only honest signal left is a cut connection
            log.warning("save of %s failed midway: %s", names, err)
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    async def load(self, req: SubresourceRequest) -> web.Response:
        from k3c.archives.formats import ArchiveError
        from k3c.archives.load import load
        from k3c.cri.errors import RuntimeCallError

        request = req.http
        if request.method not in ("POST", "PUT"):
            raise errors.method_not_allowed()
        try:
            loaded = await load(self.store(), request.content.iter_chunked(1 << 20))
        except ArchiveError as err:
            raise errors.bad_request(str(err)) from None
        except RuntimeCallError as err:
            raise errors.internal(f"containerd: {err.details}") from None
        body: dict[str, Any] = {"images": [{"name": i.name, "digest": i.digest, "id": i.id} for i in loaded]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

