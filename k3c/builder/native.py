"""The native engine: Dockerfile steps executed directly on containerd snapshots, like BuildKit's
containerd worker.

How one build goes, and why it is fast:

0. **Nothing changed?** As in the buildah engine, the whole-build key (:mod:`k3c.builder.cachekey`) names
   the manifest an identical earlier build made; if containerd still holds it, the tags are re-pointed.
1. **Plan.** The Dockerfile is parsed into stages (:mod:`k3c.builder.instructions`); only the target and
   the stages it needs are built. Base images are read from containerd (never a registry) and unpacked
   into snapshots if CRI has not done so (:mod:`k3c.builder.bases`). Anything the engine does not do
   raises ``Unsupported`` here, before any work, and the build goes to the fallback engine (buildah).
2. **Steps.** ``ENV``, ``LABEL`` … only change the config. ``RUN``/``COPY``/``ADD`` each get a writable
   snapshot on top of the previous one, mounted on the host; ``COPY`` writes into it, ``RUN`` runs runc on
   it (:mod:`k3c.builder.sandbox`). Then containerd's differ writes the changes as an uncompressed layer
   blob straight into the content store and the snapshot is committed under the new chain ID: the
   image is unpacked the moment it exists, and no layer is copied between stores or sent over gRPC.
   (A push sends such layers gzipped, as docker does: :mod:`k3c.distribution.compress`.)
3. **Layer cache.** Each layer step has a key (the previous key, the instruction, and what it reads: the
   environment of a RUN, the content of the files a COPY takes); a key seen before whose snapshot and
   blob containerd still holds is reused without running the step (:mod:`k3c.builder.layercache`). Cache
   snapshots and blobs are held by one containerd lease, so the garbage collector keeps them until it is
   dropped.
4. **Image.** Config and manifest are written to the content store and every tag pointed at them.

Failure or cancel at any point removes the step's snapshot, unmounts, kills runc, and tags nothing.
Builds on a node run one at a time.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import posixpath
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from k3c.builder import bases, layercache, rootfs, runmounts, sandbox
from k3c.builder.cachekey import ContextHasher, KeyInputs, feed
from k3c.builder.confinement import DEFAULT_PIDS_LIMIT, Confinement, apparmor_profile, seccomp_of
from k3c.builder.dockerfile import substitute
from k3c.builder.dockerignore import IgnoreFileError, IgnoreMatcher, walk
from k3c.builder.dockerignore import load as load_ignore
from k3c.builder.engine import (
    BuildFailed,
    BuildObserver,
    BuildRequest,
    BuildResult,
    Engine,
    finish_anyway,
    replay_steps,
)
from k3c.builder.entitlements import NETWORK_HOST, require
from k3c.builder.imageconfig import DEFAULT_PATH, ImageState, apply_metadata
from k3c.builder.instructions import LAYERS, Instruction, Stage, Unsupported, find_stage, parse, stages_needed
from k3c.builder.layercache import LEASE, LayerCache
from k3c.builder.network import BuildNetwork, NetworkUnavailable, SandboxInfo
from k3c.builder.transfer import has_all_blobs, tag
from k3c.builder.words import expand
from k3c.cri.channel import CRI_NAMESPACE
from k3c.cri.imagestore import ContainerdImages, gc_labels
from k3c.cri.snapshots import LayerBlob, Mount, Snapshots, chain_id, stack_chain_id
from k3c.oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, host_architecture, sha256_digest
from k3c.oci.reference import normalize

__all__ = ["NativeConfig", "NativeEngine"]

#: Prefix of every snapshot key a build makes before committing (found and removed after a crash).
ACTIVE_PREFIX = "k3c-build-"
ENGINE_KEY = "native/1"


@dataclass
class NativeConfig:
    """Where the engine keeps its state and which containerd it builds in."""

    root: Path  #: the engine's own directory (``<k3c root>/builder/native``)
    containerd_address: str
    namespace: str = CRI_NAMESPACE
    snapshotter: str = "overlayfs"
    runc: str = "runc"
    #: RUN steps' pids cgroup limit (0: none)
    pids_limit: int = DEFAULT_PIDS_LIMIT

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()


@dataclass
class Run:
    """One build in progress: its scratch directory, its snapshots not yet committed, its counters."""

    request: BuildRequest
    observer: BuildObserver
    work: Path
    kept: set[str] | None = None
    kept_sorted: list[str] = field(default_factory=list)  #: the same, sorted (for prefix scans)
    active: set[str] = field(default_factory=set)
    steps: list[str] = field(default_factory=list)
    cached: int = 0
    counter: int = 0
    manifest: bytes = b""  #: the built image's manifest, once written
    chain: str = ""  #: its top snapshot

    def next_id(self) -> str:
        self.counter += 1
        return f"{ACTIVE_PREFIX}{uuid.uuid4().hex[:12]}-{self.counter}"


class NativeEngine:
    """:class:`k3c.builder.engine.Engine` on containerd snapshots and runc; see the module docstring."""

    name = "native"

    def __init__(self, config: NativeConfig, fallback: Engine | None = None, *,
                 channel: grpc.aio.Channel | None = None, network: BuildNetwork | None = None) -> None:
        """``channel``: an open gRPC channel to containerd to use (the operator's); None: dial our own.
        ``network``: the builder's sandbox (shared with the fallback); None: one of our own."""
        self.config = config
        self.fallback = fallback
        self.channel = channel
        self._lock = asyncio.Lock()
        self._store: ContainerdImages | None = None
        self._snaps: Snapshots | None = None
        self._hasher = ContextHasher()
        self.cache = LayerCache(config.root)
        self.network = network or BuildNetwork(config.containerd_address, str(config.root), channel=channel)

    # ---- paths and clients ----

    @property
    def work_dir(self) -> Path:
        return self.config.root / "work"

    @property
    def runc_root(self) -> Path:
        return self.config.root / "runc"

    @property
    def store(self) -> ContainerdImages:
        if self._store is None:
            self._store = ContainerdImages(self.config.containerd_address, self.config.namespace,
                                           channel=self.channel)
        return self._store

    @property
    def snaps(self) -> Snapshots:
        if self._snaps is None:
            self._snaps = Snapshots(self.store, self.config.snapshotter)
        return self._snaps

    # ---- life cycle ----

    async def start(self) -> None:
        """Create directories; remove what a crashed build left (mounts, runc containers, snapshots)."""
        for d in (self.config.root, self.work_dir, self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        self.cache.create_dirs()
        async with self._lock:
            await asyncio.to_thread(rootfs.unmount_under, self.work_dir)
            await sandbox.delete_all(self.runc_root, self.config.runc)
            for stale in self.work_dir.iterdir():
                shutil.rmtree(stale, ignore_errors=True)
            await self.store.ensure_lease(LEASE)
            for key in await self.snaps.keys(ACTIVE_PREFIX):
                await self.snaps.remove(key)
            await self.network.start()
        if self.fallback is not None:
            await self.fallback.start()

    async def close(self) -> None:
        await self.network.close()
        if self.fallback is not None:
            await self.fallback.close()
        if self._store is not None:
            await self._store.close()
            self._store = self._snaps = None

    # ---- building ----

    async def build(self, request: BuildRequest, observer: BuildObserver) -> BuildResult:
        if self._lock.locked():
            observer.line("waiting for another build on this node to finish")
        async with self._lock:
            try:
                matcher = await asyncio.to_thread(load_ignore, request.context_dir)  # (untrusted: off the loop)
                text = await asyncio.to_thread(request.dockerfile.read_text, errors="replace")
                stages, global_args = parse(text, request.build_args, request.target)
                chosen = stages_needed(stages, request.target)
                if "host" in _networks(request, chosen):  # (before the caches: they must not bypass it)
                    require(NETWORK_HOST, request.allow)
                refs = await bases.resolve(self.store, stages, chosen, global_args, request.pull)
            except Unsupported as why:
                return await self._fallback(request, observer, why)
            except IgnoreFileError as err:
                raise BuildFailed(str(err)) from None
            except ValueError as err:
                raise BuildFailed(f"Dockerfile: {err}") from None
            key = await self._build_key(request, text, refs)
            if key is not None:
                reused = await self._reuse(key, request, observer)
                if reused is not None:
                    return reused
            try:
                images = {name: await bases.load(self.store, self.snaps, name, LEASE) for name in refs}
            except Unsupported as why:
                return await self._fallback(request, observer, why)
            await self.store.ensure_lease(LEASE)  # (again: a prune may have dropped it)
            run = Run(request, observer, Path(tempfile.mkdtemp(prefix="build-", dir=self.work_dir)))
            try:
                result = await self._build(run, stages, chosen, images, global_args, matcher)
                if key is not None:
                    self.cache.save_build(key, run.manifest, run.chain, run.steps)
                return result
            finally:
                await finish_anyway(self._cleanup(run))

    async def _fallback(self, request: BuildRequest, observer: BuildObserver, why: Unsupported) -> BuildResult:
        """The whole build to the fallback engine (nothing was built here yet)."""
        if self.fallback is None:
            raise BuildFailed(f"the native builder does not support {why}, and no fallback builder is installed")
        observer.line(f"native builder: {why} is not supported; building with {self.fallback.name}")
        return await self.fallback.build(request, observer)

    async def _build(self, run: Run, stages: list[Stage], chosen: list[Stage], images: dict[str, bases.BaseImage],
                     global_args: dict[str, str], matcher: IgnoreMatcher) -> BuildResult:
        req = run.request
        run.kept = set(await asyncio.to_thread(lambda: list(walk(req.context_dir, matcher))))
        run.kept_sorted = sorted(run.kept)
        built: dict[int, ImageState] = {}
        for stage in chosen:
            built[stage.index] = await self._stage(run, stage, stages, built, images, global_args)
        final = built[chosen[-1].index]
        return await self._commit_image(run, final)

    async def _stage(self, run: Run, stage: Stage, stages: list[Stage], built: dict[int, ImageState],
                     images: dict[str, bases.BaseImage], global_args: dict[str, str]) -> ImageState:
        total = len(stage.instructions) + 1
        prefix = f"[{stage.index + 1}/{len(stages)}] " if len(stages) > 1 else ""
        self._step(run, f"{prefix}STEP 1/{total}: {stage.text}")
        parent = find_stage(stages, stage.base, stage.index)
        if parent is not None:
            state = built[parent.index].fork()
        elif stage.base.lower() == "scratch":
            state = ImageState(config={"Env": [f"PATH={DEFAULT_PATH}"]}, key=_h("scratch"))
        else:
            base = images[normalize(substitute(stage.base, global_args))]
            state = ImageState(config=copy.deepcopy(base.config.get("config") or {}), layers=list(base.layers),
                               history=copy.deepcopy(base.config.get("history") or []),
                               key=_h("image", base.manifest_digest))
        state.args = {}
        last_cached = False
        for n, ins in enumerate(stage.instructions, start=2):
            label = f"{prefix}STEP {n}/{total}: {ins.text}"
            self._step(run, label)
            try:
                if ins.keyword in LAYERS:
                    last_cached = await self._layer_step(run, ins, state, stages, stage, built, images, global_args)
                else:
                    created_by = apply_metadata(ins, state, run.request.build_args, global_args)
                    state.record(created_by, empty=True)
                    if last_cached:
                        run.cached += 1
                        run.observer.line("--> Using cache")
            except BuildFailed as err:
                raise BuildFailed(err.message if err.step else f"{label}: {err.message}", err.step or label,
                                  err.exit_code) from None
            except (ValueError, OSError, rootfs.CopyError) as err:
                raise BuildFailed(f"{label}: {err}", label) from None
        return state

    def _step(self, run: Run, line: str) -> None:
        run.steps.append(line)
        run.observer.line(line)
        run.observer.step(line)

    # ---- layer steps ----

    async def _layer_step(self, run: Run, ins: Instruction, state: ImageState, stages: list[Stage], stage: Stage,
                          built: dict[int, ImageState], images: dict[str, bases.BaseImage],
                          global_args: dict[str, str]) -> bool:
        """Run (or answer from cache) one RUN/COPY/ADD; True when it came from the cache."""
        run_mounts = runmounts.mounts_of(ins, state.workdir) if ins.keyword == "RUN" else []
        chains: dict[str, str] = {}  # the snapshot chain of each stage or image read ``from=``
        for ref in [ins.flag("from")] + [m.opt("from") for m in run_mounts]:
            if ref and ref not in chains:
                dep = find_stage(stages, ref, stage.index)
                chains[ref] = built[dep.index].chain if dep is not None else stack_chain_id(
                    images[normalize(substitute(ref, global_args))].layers)
        source_chain = chains.get(ins.flag("from")) if ins.flags.get("from") else None
        key = await asyncio.to_thread(self._step_key, run, ins, state, source_chain, run_mounts, chains)
        if not run.request.no_cache:
            hit = await self.cache.layer(key, self.store, self.snaps)
            if hit is not None:
                run.observer.line(f"--> Using cache {hit.digest}")
                run.cached += 1
                state.layers.append(hit)
                state.key = key
                state.record(_created_by(ins, state), empty=False)
                return True
        blob = await self._execute(run, ins, state, source_chain, run_mounts, chains)
        state.layers.append(blob)
        state.key = key
        state.record(_created_by(ins, state), empty=False)
        self.cache.save_layer(key, blob, state.chain)
        return False

    def _step_key(self, run: Run, ins: Instruction, state: ImageState, source_chain: str | None,
                  run_mounts: list[runmounts.RunMount], chains: dict[str, str]) -> str:
        h = hashlib.sha256()
        for part in (state.key, ins.keyword, json.dumps(ins.args), json.dumps(ins.flags, sort_keys=True),
                     state.workdir, state.config.get("User") or "", ins.raw if ins.heredocs else ""):
            feed(h, part)
        if ins.keyword in ("COPY", "ADD"):  # the owner and mode as expanded, not as written
            feed(h, json.dumps(_ownership_flags(ins, state.env())))
        if ins.keyword == "RUN":
            if run.request.network != "default" and not ins.flag("network"):
                feed(h, "network:" + run.request.network)  # what the step saw; default keeps older keys
            feed(h, json.dumps(sorted(self._run_env(state))))
            feed(h, json.dumps(state.shell))
            for m in run_mounts:  # what a bind mount shows is an input of the step, as a COPY's files are
                if m.type == "bind":
                    feed(h, chains[m.opt("from")] if m.opt("from") else self._hasher.sources_digest(
                        run.request.context_dir, run.kept_sorted, [m.source]))
        else:
            env = state.env()
            srcs = [substitute(a, env) for a in ins.args]
            feed(h, json.dumps(srcs))
            if source_chain is not None:
                feed(h, "from:" + source_chain)
            elif ins.heredocs:
                feed(h, json.dumps(sorted(state.env().items())))  # unquoted heredocs expand variables
            else:
                feed(h, self._hasher.sources_digest(run.request.context_dir, run.kept_sorted, srcs[:-1]))
        return h.hexdigest()

    async def _execute(self, run: Run, ins: Instruction, state: ImageState, source_chain: str | None,
                       run_mounts: list[runmounts.RunMount], chains: dict[str, str]) -> LayerBlob:
        parent = state.chain
        key = run.next_id()
        run.active.add(key)
        mounts = await self.snaps.prepare(key, parent, LEASE)
        root = run.work / key
        root.mkdir()
        await asyncio.to_thread(rootfs.mount, mounts, root, setuid=ins.keyword == "RUN")
        try:
            if ins.keyword == "RUN":
                await self._run_step(run, ins, state, root, run_mounts, chains)
            else:
                await self._copy_step(run, ins, state, root, source_chain)
        finally:
            await finish_anyway(asyncio.to_thread(rootfs.unmount, root))
        lower: list[Mount] = []
        view = ""
        if parent:
            view = run.next_id()
            run.active.add(view)
            lower = await self.snaps.view(view, parent, LEASE)
        try:
            blob = await self.snaps.diff(lower, mounts, LEASE)
        finally:
            if view:
                await finish_anyway(self.snaps.remove(view))
                run.active.discard(view)
        chain = chain_id(parent, blob.diff_id)
        await self.snaps.commit(chain, key, LEASE)
        run.active.discard(key)
        return blob

    def _run_env(self, state: ImageState) -> list[str]:
        env = state.env()
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOSTNAME", sandbox.HOSTNAME)
        return [f"{k}={v}" for k, v in env.items()]

    @property
    def cache_mounts_dir(self) -> Path:
        return self.config.root / "cachemounts"

    async def _run_step(self, run: Run, ins: Instruction, state: ImageState, root: Path,
                        run_mounts: list[runmounts.RunMount], chains: dict[str, str]) -> None:
        args = list(ins.args) if ins.exec_form else [*state.shell, ins.raw]
        maker = runmounts.RunMounts(run.work, self.snaps, LEASE, self.cache_mounts_dir, run.request.context_dir,
                                    run.kept, run.request.secrets, run.next_id, run.active)
        try:
            prepared = await maker.prepare(run_mounts, chains)
            await self._run_in(run, ins, state, root, args, prepared)
        finally:
            await finish_anyway(maker.release())

    async def _run_in(self, run: Run, ins: Instruction, state: ImageState, root: Path, args: list[str],
                      prepared: runmounts.Prepared) -> None:
        cwd = state.workdir
        owner = await asyncio.to_thread(rootfs.user_ids, root, state.config.get("User") or "", supplementary=True)
        network = ins.flag("network") or run.request.network
        if network not in ("default", "host", "none"):
            raise ValueError(f"RUN --network={network}: only default, host and none are supported")
        if network == "host":
            require(NETWORK_HOST, run.request.allow)
        info = await self._sandbox()
        confinement = Confinement(seccomp_of(info.runtime_spec), await asyncio.to_thread(apparmor_profile),
                                  self.config.pids_limit)
        spec = sandbox.RunSpec(container_id=run.next_id(), rootfs=root, bundle=run.work / f"bundle-{run.counter}",
                               args=args, env=self._run_env(state), cwd=cwd, owner=owner,
                               network=network, netns=info.netns if network == "default" else None,
                               secrets=prepared.secrets, binds=prepared.binds, tmpfs=prepared.tmpfs,
                               confinement=confinement)
        # a missing WORKDIR is created owned by the USER, as BuildKit does
        await asyncio.to_thread(rootfs.ensure_dir, root, cwd, owner if owner.uid else None)
        created = await asyncio.to_thread(rootfs.mountpoints_missing, root, spec.bind_targets())
        try:
            code = await sandbox.run(spec, self.runc_root, run.observer.line, self.config.runc)
        finally:
            await finish_anyway(asyncio.to_thread(rootfs.remove_created, root, created))
        if code != 0:
            raise BuildFailed(f"exit code {code}", exit_code=code)

    async def _sandbox(self) -> SandboxInfo:
        """The builder's pod sandbox. Every RUN takes the confinement containers get from its spec, and a
        default-network RUN its network namespace: without it no RUN runs (never unconfined, never in the
        host's network namespace for want of another)."""
        try:
            return await self.network.sandbox()
        except NetworkUnavailable as err:
            raise BuildFailed(f"cannot make the build sandbox, which RUN steps need for their network and "
                              f"confinement: {err}") from None

    async def _copy_step(self, run: Run, ins: Instruction, state: ImageState, root: Path,
                         source_chain: str | None) -> None:
        env = state.env()
        words = [substitute(a, env) for a in ins.args]
        if len(words) < 2:
            raise ValueError(f"{ins.keyword} requires at least two arguments")
        dest = words[-1]
        if not dest.startswith("/"):
            dest = posixpath.join(state.workdir, dest) + ("/" if dest.endswith("/") or dest in (".", "./") else "")
        owner = None
        chown, mode = _ownership_flags(ins, env)
        if chown:
            owner = await asyncio.to_thread(rootfs.chown_owner, root, chown)
        if ins.heredocs:  # COPY <<NAME: each heredoc is a file called NAME
            docs = run.work / f"heredocs-{run.next_id()}"
            docs.mkdir()
            for doc in ins.heredocs:
                (docs / doc.name).write_text(doc.body if doc.quoted else expand(doc.body, env, quotes=False))
                (docs / doc.name).chmod(0o644)
            spec = rootfs.CopySpec(docs, [d.name for d in ins.heredocs], dest, owner, mode, None)
            await asyncio.to_thread(rootfs.copy_into, root, spec)
            return
        if source_chain is None:
            spec = rootfs.CopySpec(run.request.context_dir, words[:-1], dest, owner, mode, run.kept,
                                   extract=ins.keyword == "ADD")
            await asyncio.to_thread(rootfs.copy_into, root, spec)
            return
        view = run.next_id()
        run.active.add(view)
        src_root = run.work / view
        src_root.mkdir()
        try:
            mounts = await self.snaps.view(view, source_chain, LEASE)
            await asyncio.to_thread(rootfs.mount, mounts, src_root, True)
            try:
                spec = rootfs.CopySpec(src_root, words[:-1], dest, owner, mode, None)
                await asyncio.to_thread(rootfs.copy_into, root, spec)
            finally:
                await finish_anyway(asyncio.to_thread(rootfs.unmount, src_root))
        finally:
            await finish_anyway(self.snaps.remove(view))
            run.active.discard(view)

    # ---- the image ----

    async def _commit_image(self, run: Run, state: ImageState) -> BuildResult:
        req = run.request
        config = state.document(host_architecture(), req.labels)
        raw_config = json.dumps(config, separators=(",", ":")).encode()
        config_desc = Descriptor(MEDIA_CONFIG, sha256_digest(raw_config), len(raw_config))
        chain = state.chain
        labels = {f"containerd.io/gc.ref.snapshot.{self.config.snapshotter}": chain} if chain else {}
        await self.store.write(config_desc.digest, raw_config, labels, lease=LEASE)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                    "config": {"mediaType": MEDIA_CONFIG, "digest": config_desc.digest, "size": config_desc.size},
                    "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in state.layers]}
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        desc = Descriptor(MEDIA_MANIFEST, sha256_digest(raw), len(raw))
        await self.store.write(desc.digest, raw, gc_labels(MEDIA_MANIFEST, raw), lease=LEASE)
        run.manifest, run.chain = raw, chain
        await finish_anyway(tag(self.store, desc, req.tags or [config_desc.digest], req.image_labels, LEASE))
        size = config_desc.size + sum(b.size for b in state.layers)
        run.observer.line(f"writing image {config_desc.digest}")
        return BuildResult(config_desc.digest, desc.digest, size, list(req.tags), cached_steps=run.cached)

    # ---- whole-build cache ----

    async def _build_key(self, req: BuildRequest, text: str, base_digests: dict[str, str]) -> str | None:
        if req.no_cache:
            return None
        inputs = KeyInputs(
            engine=ENGINE_KEY, dockerfile=text.encode(), build_args=req.build_args, target=req.target,
            labels=req.labels, secrets={sid: await asyncio.to_thread(p.read_bytes) for sid, p in req.secrets.items()},
            bases=base_digests, network=req.network)
        return await asyncio.to_thread(self._hasher.key, req.context_dir, req.dockerfile, inputs)

    async def _reuse(self, key: str, req: BuildRequest, observer: BuildObserver) -> BuildResult | None:
        record = self.cache.build(key)
        if not record.get("manifest"):
            return None
        raw = record["manifest"].encode()
        desc = Descriptor(MEDIA_MANIFEST, sha256_digest(raw), len(raw))
        doc = json.loads(raw)
        image_id = doc["config"]["digest"]
        names = req.tags or [image_id]
        current = {n: await self.store.get(n) for n in names}
        # a name that already points at the manifest keeps it and all it references from the GC
        held = any(r is not None and r.target.digest == desc.digest for r in current.values())
        if not held and not await has_all_blobs(self.store, desc, raw):
            return None
        chain = record.get("chain", "")
        if chain and not await self.snaps.exists(chain):  # ("": an image of no layer, FROM scratch alone)
            return None
        stale = [n for n, r in current.items() if r is None or r.target.digest != desc.digest
                 or any(r.labels.get(k) != v for k, v in req.image_labels.items())]
        if stale:
            await finish_anyway(tag(self.store, desc, stale, req.image_labels, LEASE))
        cached = replay_steps(observer, record.get("steps") or [])
        size = int(doc["config"]["size"]) + sum(int(x["size"]) for x in doc.get("layers", []))
        return BuildResult(image_id, desc.digest, size, list(req.tags), cached_steps=cached)

    async def _cleanup(self, run: Run) -> None:
        await asyncio.to_thread(rootfs.unmount_under, run.work)
        for key in sorted(run.active):
            await self.snaps.remove_patiently(key)
        await asyncio.to_thread(shutil.rmtree, run.work, True)

    # ---- the cache as a whole ----

    async def usage(self) -> tuple[int, int]:
        layers = await asyncio.to_thread(self.cache.layers)
        size = sum(layers.values()) + await asyncio.to_thread(layercache.dir_size, self.cache_mounts_dir)
        if self.fallback is not None:
            size += (await self.fallback.usage())[1]
        return len(layers), size

    async def prune(self) -> int:
        async with self._lock:  # never under a running build
            layers = await asyncio.to_thread(self.cache.layers)
            freed = await asyncio.to_thread(layercache.dir_size, self.cache_mounts_dir)
            await layercache.prune(self.store, self.config.root)
            await self.store.ensure_lease(LEASE)
            for digest, size in layers.items():  # what images still use stays, and is not counted
                if await self.store.info(digest) is None:
                    freed += size
        if self.fallback is not None:
            freed += await self.fallback.prune()
        return freed


def _h(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        feed(h, p)
    return h.hexdigest()


def _networks(request: BuildRequest, stages: list[Stage]) -> set[str]:
    """The networks the RUN steps of ``stages`` ask for (the build's own for those that name none)."""
    return {ins.flag("network") or request.network for stage in stages for ins in stage.instructions
            if ins.keyword == "RUN"}


def _ownership_flags(ins: Instruction, env: dict[str, str]) -> tuple[str, int | None]:
    """COPY/ADD ``--chown`` and ``--chmod`` with their variables expanded (the mode parsed as octal)."""
    chown = substitute(ins.flag("chown"), env) if ins.flags.get("chown") else ""
    if not ins.flags.get("chmod"):
        return chown, None
    text = substitute(ins.flag("chmod"), env)
    try:
        return chown, int(text, 8)
    except ValueError:
        raise ValueError(f"invalid --chmod={text}: expected an octal mode such as 0755") from None


def _created_by(ins: Instruction, state: ImageState) -> str:
    if ins.keyword == "RUN":
        args = ins.args if ins.exec_form else [*state.shell, ins.raw]
        return "RUN " + " ".join(args) + " # k3c"
    return f"{ins.text} # k3c"
