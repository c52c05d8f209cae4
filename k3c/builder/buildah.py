"""The buildah engine: ``buildah bud`` in k3c's private storage, the result imported into containerd.

How one build goes, and why:

0. **Nothing changed?** The build's key (:mod:`k3c.builder.cachekey`: Dockerfile, args, base image
   digests, context file contents) names an image an earlier build made: if containerd still holds all
   of it, the tags are pointed at it and buildah does not run at all (records in ``records/``).
1. **Base images.** buildah cannot read containerd, so every FROM / ``COPY --from`` image that containerd
   has (say, one k3c built earlier) is exported blob by blob into a ``dir:`` layout and pulled into
   buildah's storage under its normalized name. ``bases.json`` remembers which containerd manifest each
   name came from, so an unchanged base costs nothing on the next build. Images containerd lacks are left
   to buildah (pulled from their registry if missing, or always with ``pull``).
2. **bud** with ``--layers`` (the layer cache: a rebuild with nothing changed answers every step from
   cache), OCI format (buildah 1.28 never hits its cache with ``--format docker``, so HEALTHCHECK, SHELL
   and ONBUILD are dropped with a warning, as buildah does for OCI), ``--isolation oci`` with runc (crun
   refuses cgroup v1 hybrid; ``chroot`` would run RUN steps in the host's network namespace with no
   seccomp), in the network namespace of the builder's pod sandbox (``--network ns:PATH``, the one the
   native engine's RUN steps join: :mod:`k3c.builder.network`; ``host`` only with the ``network.host``
   entitlement, :mod:`k3c.builder.entitlements`), ``--force-rm``
   (no build container survives a failed step), ``--pull=false`` (buildah's default, ``true``, would
   contact the registry of every base on every build). Private ``--root``/``--runroot`` under k3c's root
   dir, a private registries.conf (docker.io for short names) and signature policy: nothing in /etc counts.
3. **Delivery.** ``buildah push -D`` (no compression: containerd and the runtime need none, and gzip of a
   large layer costs seconds) to a ``dir:`` layout, then blobs streamed into containerd's ``k8s.io``
   namespace (skipping those it has) and the tags pointed at the manifest. The manifest of each image ID
   is remembered (``exports/``), so a cached rebuild only re-points the tags once containerd is seen to
   hold every blob.

Builds on one node run one at a time. buildah gives its build containers no per-build identity, and a
killed ``buildah bud`` (cancel) leaves its container behind: with one build at a time, every container
in the storage after a failed or cancelled build is that build's, and is removed. On start the engine removes containers
left by a crash, temporary files, and the run root if the machine rebooted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from k3c.builder.cachekey import ContextHasher, KeyInputs
from k3c.builder.dockerfile import external_images
from k3c.builder.dockerignore import IgnoreFileError
from k3c.builder.dockerignore import load as load_ignore
from k3c.builder.engine import (
    BuildFailed,
    BuildObserver,
    BuildRequest,
    BuildResult,
    finish_anyway,
    replay_steps,
)
from k3c.builder.entitlements import NETWORK_HOST, require
from k3c.builder.network import BuildNetwork, NetworkUnavailable
from k3c.builder.rootfs import unmount_under
from k3c.builder.transfer import (
    ImageNotFound,
    LayoutImage,
    export_image,
    has_all_blobs,
    import_layout,
    read_layout,
    tag,
)
from k3c.cri.channel import CRI_NAMESPACE
from k3c.cri.imagestore import ContainerdImages
from k3c.oci.layout import Descriptor, sha256_digest
from k3c.oci.reference import InvalidReference, normalize

__all__ = ["BuildahConfig", "BuildahEngine", "StepParser"]

T = TypeVar("T")

STEP_RE = re.compile(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: ")
CACHE_RE = re.compile(r"^--> Using cache ")
ERROR_RE = re.compile(r'^Error: building at STEP "(?P<step>.*?)": (?P<detail>.*)$')
EXIT_RE = re.compile(r"exit status (\d+)\s*$")

REGISTRIES_CONF = 'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n'
POLICY_JSON = '{"default": [{"type": "insecureAcceptAnything"}]}\n'
#: Seconds between SIGTERM and SIGKILL when a build is cancelled.
KILL_GRACE = 2.0


@dataclass
class BuildahConfig:
    """Where the engine keeps its storage and how it runs buildah."""

    root: Path  #: the engine's own directory (``<k3c root>/builder``)
    containerd_address: str
    runroot: Path | None = None  #: default ``<root>/run``
    namespace: str = CRI_NAMESPACE
    binary: str = "buildah"
    runtime: str = "runc"  #: the OCI runtime of RUN steps (crun refuses cgroup v1 hybrid)
    storage_driver: str = "overlay"
    #: "oci": buildah 1.28 never answers from its layer cache with ``--format docker`` (intermediate images
    #: are committed as OCI and rejected as cache candidates of another format)
    image_format: str = "oci"

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.runroot = Path(self.runroot).absolute() if self.runroot else self.root / "run"


class StepParser:
    """Watches buildah's output: forwards lines, spots step starts, cache hits and the failing step."""

    def __init__(self, observer: BuildObserver) -> None:
        self.observer = observer
        self.last_step = ""
        self.steps: list[str] = []
        self.cached = 0
        self.error_step = ""
        self.error_detail = ""
        self.last_error = ""

    def __call__(self, line: str) -> None:
        self.observer.line(line)
        if STEP_RE.match(line):
            self.last_step = line
            self.steps.append(line)
            self.observer.step(line)
        elif CACHE_RE.match(line):
            self.cached += 1
        elif m := ERROR_RE.match(line):
            self.error_step, self.error_detail = m.group("step"), m.group("detail")
        elif line.startswith("Error: "):
            self.last_error = line[len("Error: "):]

    def failure(self, code: int) -> BuildFailed:
        """The exception for a bud that exited with ``code``."""
        step = self.last_step or self.error_step
        if self.error_step:
            m = EXIT_RE.search(self.error_detail)
            if m:
                exit_code = int(m.group(1))
                return BuildFailed(f"{step}: exit code {exit_code}", step, exit_code)
            return BuildFailed(f"{step}: {self.error_detail}", step)
        return BuildFailed(self.last_error or f"buildah exited with code {code}", step)


class BuildahEngine:
    """:class:`k3c.builder.engine.Engine` on buildah; see the module docstring."""

    name = "buildah"

    def __init__(self, config: BuildahConfig, *, channel: grpc.aio.Channel | None = None,
                 network: BuildNetwork | None = None) -> None:
        """``channel``: an open gRPC channel to containerd to use (the operator's); None: dial our own.
        ``network``: the builder's sandbox, shared with the native engine when this is its fallback."""
        self.config = config
        self.channel = channel
        self.network = network or BuildNetwork(config.containerd_address, str(config.root), channel=channel)
        self._lock = asyncio.Lock()
        self._store: ContainerdImages | None = None
        self._hasher = ContextHasher()

    # ---- paths ----

    @property
    def storage(self) -> Path:
        return self.config.root / "storage"

    @property
    def runroot(self) -> Path:
        assert self.config.runroot is not None
        return self.config.runroot

    @property
    def tmp_dir(self) -> Path:
        return self.config.root / "tmp"

    @property
    def exports_dir(self) -> Path:
        return self.config.root / "exports"

    @property
    def records_dir(self) -> Path:
        return self.config.root / "records"

    @property
    def bases_file(self) -> Path:
        return self.config.root / "bases.json"

    def global_args(self) -> list[str]:
        """buildah's global flags: always our own storage."""
        return [self.config.binary, "--root", str(self.storage), "--runroot", str(self.runroot),
                "--storage-driver", self.config.storage_driver]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(self.config.root / "registries.conf"),
                "TMPDIR": str(self.tmp_dir), "LC_ALL": "C"}

    # ---- life cycle ----

    async def start(self) -> None:
        """Create the directories and config files; remove what a crashed build left (none runs now)."""
        await asyncio.to_thread(self._prepare_dirs)
        async with self._lock:
            for cid in await self.container_ids():
                await self._buildah(["rm", cid], check=False)
            await self.network.start()

    def _prepare_dirs(self) -> None:
        for d in (self.config.root, self.storage, self.tmp_dir, self.exports_dir, self.records_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.config.root / "registries.conf").write_text(REGISTRIES_CONF)
        (self.config.root / "policy.json").write_text(POLICY_JSON)
        for stale in self.tmp_dir.iterdir():
            shutil.rmtree(stale, ignore_errors=True)
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        marker = self.runroot / "k3c-boot-id"
        if self.runroot.exists() and (not marker.exists() or marker.read_text().strip() != boot_id):
            shutil.rmtree(self.runroot, ignore_errors=True)  # stale mount counts from before a reboot
        self.runroot.mkdir(parents=True, exist_ok=True)
        marker.write_text(boot_id + "\n")

    async def close(self) -> None:
        """Close the containerd connection, remove the build sandbox and unmount buildah's storage (after
        the last build)."""
        await self.network.close()
        if self._store is not None:
            await self._store.close()
            self._store = None
        async with self._lock:
            await asyncio.to_thread(unmount_under, self.config.root)

    def _containerd(self) -> ContainerdImages:
        if self._store is None:
            self._store = ContainerdImages(self.config.containerd_address, self.config.namespace,
                                           channel=self.channel)
        return self._store

    # ---- building ----

    async def build(self, request: BuildRequest, observer: BuildObserver) -> BuildResult:
        """Build, import into containerd and tag (one build at a time; see the module docstring)."""
        if self._lock.locked():
            observer.line("waiting for another build on this node to finish")
        async with self._lock:
            try:  # buildah applies the file itself; k3c's limits on it hold for both engines
                await asyncio.to_thread(load_ignore, request.context_dir)
            except IgnoreFileError as err:
                raise BuildFailed(str(err)) from None
            if request.network == "host":  # (buildah 1.28 takes no RUN --network: only the build's own)
                require(NETWORK_HOST, request.allow)
            refs = await self._base_refs(request)
            key = await self._build_key(request, refs)
            if key is not None:
                reused = await self._reuse(key, request, observer)
                if reused is not None:
                    return reused
            work = Path(tempfile.mkdtemp(prefix="bud-", dir=self.tmp_dir))
            done = False
            try:
                await self._sync_bases(refs, request.pull, observer, work)
                parser = StepParser(observer)
                image_id = await self._bud(request, work, parser, await self._netns(request))
                result = await self._deliver(image_id, request, work, observer)
                result.cached_steps = parser.cached
                if request.network != "default":  # see bud_args: kept out of buildah's layer cache
                    await self._buildah(["rmi", image_id], check=False)
                if key is not None:
                    self._save_record(key, image_id, parser.steps)
                done = True
                return result
            finally:
                await finish_anyway(self._cleanup(work, done))

    # ---- whole-build cache ----

    async def _build_key(self, req: BuildRequest, refs: dict[str, str | None]) -> str | None:
        """The key of :mod:`k3c.builder.cachekey`, or None when the build must run."""
        if req.no_cache or req.pull or any(d is None for d in refs.values()):
            return None
        cfg = self.config
        inputs = KeyInputs(
            engine=f"buildah/{cfg.image_format}/oci/{cfg.storage_driver}",
            dockerfile=await asyncio.to_thread(req.dockerfile.read_bytes), build_args=req.build_args,
            target=req.target, labels=req.labels,
            secrets={sid: await asyncio.to_thread(path.read_bytes) for sid, path in req.secrets.items()},
            bases={name: digest or "" for name, digest in refs.items()}, network=req.network,
        )
        return await asyncio.to_thread(self._hasher.key, req.context_dir, req.dockerfile, inputs)

    async def _reuse(self, key: str, req: BuildRequest, observer: BuildObserver) -> BuildResult | None:
        """The image an identical earlier build made, tagged again, if containerd still holds all of it."""
        try:
            record = json.loads((self.records_dir / f"{key}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        image_id = record.get("image_id", "")
        remembered = self._export_record(image_id)
        if remembered is None:
            return None
        manifest, raw = remembered
        if not await has_all_blobs(self._containerd(), manifest, raw):
            return None
        await finish_anyway(tag(self._containerd(), manifest, req.tags or [image_id], req.image_labels))
        cached = replay_steps(observer, record.get("steps") or [])
        result = self._result(image_id, manifest, raw, req)
        result.cached_steps = cached
        return result

    def _save_record(self, key: str, image_id: str, steps: list[str]) -> None:
        tmp = self.records_dir / f".{key}.tmp"
        tmp.write_text(json.dumps({"image_id": image_id, "steps": steps}))
        os.replace(tmp, self.records_dir / f"{key}.json")

    async def _cleanup(self, work: Path, succeeded: bool) -> None:
        """Remove the build's temporary files and, unless it succeeded, its build containers.

        A successful ``bud`` removed its own containers (``--rm``); a failed one did too (``--force-rm``)
        unless it was killed. Builds run one at a time and :meth:`start` removed any container a crash
        left, so every container present now is this build's.
        """
        if not succeeded:
            for cid in await self.container_ids():
                await self._buildah(["rm", cid], check=False)
        await asyncio.to_thread(shutil.rmtree, work, True)

    async def _netns(self, req: BuildRequest) -> str:
        """The build sandbox's network namespace for a default-network build ("" for host or none).
        Without a sandbox the build fails: RUN steps never fall back to the host's network namespace."""
        if req.network != "default":
            return ""
        try:
            return (await self.network.sandbox()).netns
        except NetworkUnavailable as err:
            raise BuildFailed(f"cannot make the build sandbox, which RUN steps need for their network: {err}") \
                from None

    async def _bud(self, req: BuildRequest, work: Path, parser: StepParser, netns: str) -> str:
        iidfile = work / "iid"
        code = await self._run([*self.global_args(), *self.bud_args(req, iidfile, netns)], parser)
        if code != 0:
            raise parser.failure(code)
        return iidfile.read_text().strip()

    def bud_args(self, req: BuildRequest, iidfile: Path, netns: str) -> list[str]:
        """``bud`` and its flags for one request (without the global storage flags); ``netns``: the build
        sandbox's network namespace, for the default network."""
        cfg = self.config
        # buildah's layer cache does not tell networks apart: a build on another network neither uses it nor
        # adds to it (its image is removed from buildah's storage once in containerd).
        layers = "--layers" if req.network == "default" else "--layers=false"
        network = f"ns:{netns}" if req.network == "default" else req.network
        args = ["bud", "--isolation", "oci", "--runtime", cfg.runtime, f"--network={network}", layers,
                "--force-rm", "--format", cfg.image_format,
                "--pull=false", "--identity-label=false", "--signature-policy", str(cfg.root / "policy.json"),
                "--iidfile", str(iidfile), "-f", str(req.dockerfile)]
        for key, value in sorted(req.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(req.labels.items()):
            args += ["--label", f"{key}={value}"]
        for sid, path in sorted(req.secrets.items()):
            args += ["--secret", f"id={sid},src={path}"]
        if req.target:
            args += ["--target", req.target]
        if req.no_cache or req.network != "default":
            args.append("--no-cache")
        args.append(str(req.context_dir))
        return args

    # ---- base images ----

    async def _base_refs(self, req: BuildRequest) -> dict[str, str | None]:
        """Normalized base images of the Dockerfile -> their containerd target digest (None: not there)."""
        text = await asyncio.to_thread(req.dockerfile.read_text, errors="replace")
        store = self._containerd()
        refs: dict[str, str | None] = {}
        for ref in external_images(text, req.build_args):
            try:
                name = normalize(ref)
            except InvalidReference:
                refs[ref] = None  # a variable we could not resolve, or a typo: buildah reports it
                continue
            record = await store.get(name)
            refs[name] = record.target.digest if record is not None else None
        return refs

    async def _sync_bases(self, refs: dict[str, str | None], pull: bool, observer: BuildObserver,
                          work: Path) -> None:
        bases = self._read_bases()
        for name, digest in refs.items():
            await self._sync_base(name, digest, pull, bases, observer, work)

    async def _sync_base(self, name: str, digest: str | None, pull: bool, bases: dict[str, Any],
                         observer: BuildObserver, work: Path) -> None:
        store = self._containerd()
        if digest is None:
            if pull:
                observer.line(f"pulling {name}")
                await self._buildah(["pull", "-q", "--policy", "always", "--signature-policy",
                                     str(self.config.root / "policy.json"), name], observer=observer)
            return
        known = bases.get(name) or {}
        if known.get("digest") == digest and self._has_image(known.get("id", "")):
            return
        observer.line(f"loading {name} from containerd")
        dest = work / f"base-{len(list(work.glob('base-*')))}"
        try:
            await export_image(store, name, dest)
        except ImageNotFound as err:
            raise BuildFailed(f"cannot load base image {name} from containerd: {err}") from None
        out = await self._buildah(["pull", "-q", "--signature-policy", str(self.config.root / "policy.json"),
                                   f"dir:{dest}"])
        image_id = out.strip().splitlines()[-1]
        await self._buildah(["tag", image_id, name])
        bases[name] = {"digest": digest, "id": image_id}
        self._write_bases(bases)
        await asyncio.to_thread(shutil.rmtree, dest, True)

    def _has_image(self, image_id: str) -> bool:
        return bool(image_id) and (self.storage / f"{self.config.storage_driver}-images" / image_id).is_dir()

    def _read_bases(self) -> dict[str, Any]:
        try:
            bases: dict[str, Any] = json.loads(self.bases_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return bases

    def _write_bases(self, bases: dict[str, Any]) -> None:
        tmp = self.bases_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(bases, indent=1, sort_keys=True))
        os.replace(tmp, self.bases_file)

    # ---- delivery ----

    async def _deliver(self, image_id: str, req: BuildRequest, work: Path, observer: BuildObserver) -> BuildResult:
        store = self._containerd()
        names = req.tags or [image_id]  # untagged: named by its ID, as CRI names images it pulled
        remembered = self._export_record(image_id)
        if remembered is not None:
            manifest, raw = remembered
            await finish_anyway(tag(store, manifest, names, req.image_labels))
            if await has_all_blobs(store, manifest, raw):
                return self._result(image_id, manifest, raw, req)
        observer.line("exporting the image to containerd")
        dest = work / "out"
        await self._buildah(["push", "-q", "-D", "--signature-policy", str(self.config.root / "policy.json"),
                             image_id, f"dir:{dest}"])
        layout = await asyncio.to_thread(read_layout, dest)
        await finish_anyway(import_layout(store, layout, names, req.image_labels))
        self._save_export(layout)
        raw = (dest / "manifest.json").read_bytes()
        return self._result(image_id, layout.manifest, raw, req)

    def _result(self, image_id: str, manifest: Descriptor, raw: bytes, req: BuildRequest) -> BuildResult:
        doc = json.loads(raw)
        size = int(doc["config"]["size"]) + sum(int(layer["size"]) for layer in doc.get("layers", []))
        config_digest = doc["config"]["digest"]
        if config_digest != image_id:
            raise BuildFailed(f"exported image config {config_digest} differs from the built image {image_id}")
        return BuildResult(image_id=config_digest, digest=manifest.digest, size=size, tags=list(req.tags))

    def _export_record(self, image_id: str) -> tuple[Descriptor, bytes] | None:
        path = self.exports_dir / (image_id.split(":", 1)[-1] + ".json")
        try:
            raw = path.read_bytes()
            return read_layout_bytes(raw), raw
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def _save_export(self, layout: LayoutImage) -> None:
        path = self.exports_dir / (layout.image_id.split(":", 1)[-1] + ".json")
        shutil.copyfile(layout.path / "manifest.json", path)

    # ---- the cache as a whole ----

    async def usage(self) -> tuple[int, int]:
        from k3c.builder.layercache import dir_size

        records = len(list(self.records_dir.glob("*.json")))
        return records, await asyncio.to_thread(dir_size, self.storage)

    async def prune(self) -> int:
        """Every image and layer in buildah's storage, and the records pointing into it."""
        from k3c.builder.layercache import dir_size

        async with self._lock:
            before = await asyncio.to_thread(dir_size, self.storage)
            await self._buildah(["rmi", "--all", "--force"], check=False)
            for d in (self.records_dir, self.exports_dir):
                for f in d.glob("*.json"):
                    f.unlink()
            self.bases_file.unlink(missing_ok=True)
            return max(before - await asyncio.to_thread(dir_size, self.storage), 0)

    # ---- buildah processes ----

    async def container_ids(self) -> list[str]:
        """IDs of every buildah (build) container in our storage."""
        out = await self._buildah(["containers", "-q", "--notruncate"])
        return [line.strip() for line in out.splitlines() if line.strip()]

    async def _buildah(self, args: list[str], *, check: bool = True, observer: BuildObserver | None = None) -> str:
        lines: list[str] = []

        def sink(line: str) -> None:
            lines.append(line)
            if observer is not None:
                observer.line(line)

        code = await self._run([*self.global_args(), *args], sink)
        if check and code != 0:
            tail = next((ln for ln in reversed(lines) if ln.strip()), "")
            raise BuildFailed(f"buildah {args[0]} failed: {tail.removeprefix('Error: ') or f'exit code {code}'}")
        return "\n".join(lines)

    async def _run(self, argv: list[str], on_line: Callable[[str], None]) -> int:
        """Run a process in its own process group, lines of stdout+stderr to ``on_line``.

        Cancelling kills the whole group (buildah and the RUN commands it started), SIGTERM then SIGKILL.
        """
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=self.env(), start_new_session=True, limit=1 << 20,
        )
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                on_line(raw.decode(errors="replace").rstrip("\r\n"))
            return await proc.wait()
        except BaseException:
            await finish_anyway(kill_group(proc))
            raise


# ---------------------------------------------------------------------------------------------- helpers


def read_layout_bytes(raw: bytes) -> Descriptor:
    """The manifest descriptor of remembered ``manifest.json`` bytes."""

    doc = json.loads(raw)
    return Descriptor(doc["mediaType"], sha256_digest(raw), len(raw))


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after :data:`KILL_GRACE`, and reap ``proc``."""
    if proc.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            break
        except TimeoutError:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived buildah itself
