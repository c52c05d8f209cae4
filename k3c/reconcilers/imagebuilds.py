"""ImageBuild reconciler: run each build once per generation on this node, and report it in status.

Level-based, per object (by uid), serialized by a :class:`~k3c.reconcilers.workqueue.WorkQueue`:

- not this node's (``spec.nodeName`` or ``status.node`` names another) → nothing;
- being deleted → cancel the build if it runs (the engine kills its RUN processes and removes its
  build containers; nothing was tagged yet, so no half-made image stays), write ``Canceled``, drop the
  finalizer;
- gone (DELETED) → cancel a build that still runs, remove its log and upload;
- a build of this generation runs → nothing; of an older generation → cancel it and start anew;
- the current generation already Succeeded/Failed → nothing;
- otherwise claim it (``status.node``, with the resourceVersion as precondition so one node wins) and
  start the build as a task of its own; a build that runs longer than a moment gets the finalizer, held
  only while it runs (a build answered from cache is over before, and spares two writes).

So an operator that restarts finds builds whose status still says Running with no task behind them and
simply builds them again (the layer cache makes that cheap). The build task writes the step lines to the
log file that the API server's ``log`` subresource streams (:mod:`k3c.builder.logs`), keeps
``status.steps`` current (at most every :data:`STATUS_INTERVAL` s), and ends with Succeeded (image ID,
digest, size, tags) or Failed (the failing step and its exit code).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from k3c.api import (
    BUILD_SECRET_LABEL,
    IMAGE_BUILD_FINALIZER,
    IMAGE_BUILD_LABEL,
    IMAGE_BUILDS,
    SECRETS,
)
from k3c.apierrors import APIError, Conflict, NotFound
from k3c.builder.context import ContextError, prepare_context
from k3c.builder.engine import BuildFailed, BuildRequest, BuildResult, Engine, finish_anyway
from k3c.builder.gitcontext import redact
from k3c.builder.instructions import check_platform
from k3c.builder.paths import BuildPaths
from k3c.cri.imageshare import share
from k3c.cri.imagestore import ContainerdImages
from k3c.oci.reference import InvalidReference, normalize
from k3c.reconcilers.cache import ObjectCache
from k3c.reconcilers.kube import Kube, Ref, ref_of
from k3c.reconcilers.operatorconfig import OperatorConfig
from k3c.reconcilers.statuses import Condition, ConditionStatus, ImageBuildStatus
from k3c.reconcilers.workqueue import WorkQueue
from k3c.timefmt import now_rfc3339, parse_rfc3339_ns

log = logging.getLogger(__name__)

#: Minimum seconds between status writes while a build runs.
STATUS_INTERVAL = 0.5
#: A build still running after this many seconds gets the finalizer (see ImageBuildReconciler._protect_later).
PROTECT_AFTER = 0.05
MAX_STEPS_KEPT = 200
#: seconds between a build's final status and its Event (see ``_record_event``)
EVENT_DELAY = 0.2
TERMINAL = ("Succeeded", "Failed", "Canceled")
#: The Succeeded condition's status for a build's outcome (any other reason: "Unknown").
_SUCCEEDED: dict[str, ConditionStatus] = {"Succeeded": "True", "Failed": "False", "Canceled": "False"}


def condition(obj: dict[str, Any], reason: str, message: str = "") -> Condition:
    """The Succeeded condition for ``reason``; the transition time moves only when status/reason change."""
    value = _SUCCEEDED.get(reason, "Unknown")
    # as stored: its transition time is kept as it is (even if someone dropped it)
    old: Any = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Succeeded"),
                    {})
    same = old.get("status") == value and old.get("reason") == reason
    return {"type": "Succeeded", "status": value, "reason": reason, "message": message,
            "lastTransitionTime": old.get("lastTransitionTime") if same else now_rfc3339()}


def phase_of(obj: dict[str, Any]) -> str:
    return (obj.get("status") or {}).get("phase") or ""


# ------------------------------------------------------------------------------------------ the log


class BuildLog:
    """The build's output file (line-buffered: the API server's follower sees each line at once)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] | None = open(path, "w", buffering=1, encoding="utf-8", errors="replace")

    def line(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Progress:
    """The engine's observer: lines to the log, steps to the status (throttled)."""

    def __init__(self, build_log: BuildLog, on_step: Any) -> None:
        self.log = build_log
        self.steps: list[str] = []
        self._on_step = on_step

    def line(self, text: str) -> None:
        self.log.line(text)

    def step(self, text: str) -> None:
        self.steps.append(text[:300])
        self._on_step()


@dataclass
class Running:
    """A build task of this operator, for one generation of one object."""

    generation: int
    task: asyncio.Task[None]
    namespace: str
    name: str


# ------------------------------------------------------------------------------------------ reconciler


class ImageBuildReconciler:
    """See the module docstring. ``observe`` is fed by kopf; everything else runs on the work queue."""

    def __init__(self, config: OperatorConfig, engine: Engine, kube: Kube, store: ContainerdImages) -> None:
        self.config = config
        self.engine = engine
        self.kube = kube
        self.store = store  #: containerd's images, for pushes and sharing with the node runtime
        self.paths = BuildPaths(config.root_dir)
        self.cache = ObjectCache()
        self.queue = WorkQueue(self.reconcile, "imagebuild")
        self.running: dict[str, Running] = {}
        self._deleted: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._side_tasks: set[asyncio.Task[None]] = set()  #: Events being recorded
        #: called when a build is over (the BuildCache's size is measured again)
        self.on_build_done: Callable[[], None] | None = None

    @property
    def node(self) -> str:
        return self.config.node_name

    # ---- life cycle ----

    async def start(self) -> None:
        for d in (self.paths.logs, self.paths.uploads, self.paths.work):
            d.mkdir(parents=True, exist_ok=True)
        for stale in self.paths.work.iterdir():
            shutil.rmtree(stale, ignore_errors=True)
        await self.engine.start()
        await self._sweep_logs()

    async def stop(self) -> None:
        """Stop building (builds stay Running in status, so the next start builds them again)."""
        self._stopping = True
        await self.queue.drain(timeout=5.0)
        for run in list(self.running.values()):
            run.task.cancel()
        if self.running:
            await asyncio.wait([r.task for r in self.running.values()], timeout=30)
        if self._side_tasks:  # the last Events still go out
            await asyncio.wait(list(self._side_tasks), timeout=5)
        await self.engine.close()

    async def _sweep_logs(self) -> None:
        """Remove logs of ImageBuilds that were deleted while no operator ran."""
        try:
            uids = {o["metadata"]["uid"] for o in await self.kube.list_objects(IMAGE_BUILDS)}
        except APIError as err:
            log.warning("cannot list imagebuilds to sweep old logs: %s", err.message)
            return
        for path in self.paths.logs.glob("*.log"):
            if path.stem not in uids:
                path.unlink(missing_ok=True)

    # ---- events ----

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> None:
        """A watch event: cache the object (DELETED drops it) and schedule its reconcile."""
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid or self._stopping:
            return
        if event_type == "DELETED":
            self.cache.pop(uid)
            self._deleted[uid] = obj
        elif not self.cache.put(obj):
            return
        self.queue.schedule(uid)

    # ---- reconcile ----

    async def reconcile(self, uid: str) -> float | None:
        obj = self.cache.get(uid)
        run = self.running.get(uid)
        if obj is None:
            gone = self._deleted.pop(uid, None)
            if run is not None:
                await self._cancel(run)
            if gone is not None:
                self._forget_files(uid, gone)
            return None
        if not self._mine(obj):
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return await self._finalize(obj, run)
        generation = obj["metadata"].get("generation", 1)
        if run is not None and run.generation == generation:
            return None
        if run is not None:
            await self._cancel(run)  # the spec changed: this generation needs a new build
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation and phase_of(obj) in TERMINAL:
            return await self._expire(obj)
        claimed = await self._claim(obj)
        if claimed is not None:
            self._start(claimed)
        return None

    async def _expire(self, obj: dict[str, Any]) -> float | None:
        """``spec.ttlSecondsAfterFinished``, as for Jobs: delete a finished build once it has passed, so the
        builds `k3c build` makes do not pile up; until then, look again when it will have."""
        ttl = (obj.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = (obj.get("status") or {}).get("completionTime")
        if ttl is None or not finished:
            return None
        try:
            ended = parse_rfc3339_ns(finished) / 1e9
        except ValueError:
            return None
        left: float = ended + ttl - time.time()
        if left > 0:
            return left
        await self.kube.delete(ref_of(IMAGE_BUILDS, obj), obj["metadata"]["uid"])
        return None

    def _mine(self, obj: dict[str, Any]) -> bool:
        wanted = (obj.get("spec") or {}).get("nodeName") or ""
        claimed = (obj.get("status") or {}).get("node") or ""
        return (not wanted or wanted == self.node) and (not claimed or claimed == self.node)

    async def _claim(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Make the object ours (status.node); None if another node won."""
        ref = ref_of(IMAGE_BUILDS, obj)
        try:
            if not (obj.get("status") or {}).get("node"):
                # with the builder free, the claim is the Running status itself (one write less per build)
                claim: ImageBuildStatus = self._running_status(obj) if not self.running else {
                    "node": self.node, "phase": "Pending", "message": "waiting for the builder",
                    "conditions": [condition(obj, "Pending", "waiting for the builder")]}
                obj = await self.kube.patch_status(ref, claim, resource_version=obj["metadata"]["resourceVersion"])
                self.cache.put(obj)
        except (NotFound, Conflict):
            await self._refresh(ref, obj["metadata"]["uid"])
            return None
        return obj if self._mine(obj) else None

    async def _refresh(self, ref: Ref, uid: str) -> None:
        fresh = await self.kube.get(ref)
        if fresh is not None and fresh["metadata"]["uid"] == uid:
            self.cache.put(fresh)
            self.queue.schedule(uid)

    def _start(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        uid = meta["uid"]
        task = asyncio.get_running_loop().create_task(self._build(obj), name=f"imagebuild:{meta['name']}")
        self.running[uid] = Running(meta.get("generation", 1), task, meta.get("namespace", ""), meta["name"])
        task.add_done_callback(lambda _t: self._build_done(uid, task))

    def _build_done(self, uid: str, task: asyncio.Task[None]) -> None:
        run = self.running.get(uid)
        if run is not None and run.task is task:
            del self.running[uid]
        if not self._stopping:
            self.queue.schedule(uid)

    async def _cancel(self, run: Running) -> None:
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task

    async def _finalize(self, obj: dict[str, Any], run: Running | None) -> float | None:
        if IMAGE_BUILD_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return None
        if run is not None:
            await self._cancel(run)
            obj = self.cache.get(obj["metadata"]["uid"]) or obj
        if phase_of(obj) not in TERMINAL:
            obj = await self._write_status(obj, {
                "phase": "Canceled", "message": "canceled: the ImageBuild was deleted",
                "completionTime": now_rfc3339(), "conditions": [condition(obj, "Canceled", "deleted while building")],
            })
        await self._delete_ephemeral_secrets(obj)
        await self._drop_finalizer(obj)
        return None

    async def _protect_later(self, obj: dict[str, Any]) -> None:
        """Add the finalizer once the build has run for :data:`PROTECT_AFTER` seconds.

        Why later: a build answered from cache is over before then, and skipping the finalizer's add and
        removal spares it two writes. A longer build gets it, so deleting the object waits for the cancel
        and its cleanup (and a deletion before then still cancels it, through the DELETED event).
        """
        await asyncio.sleep(PROTECT_AFTER)
        try:
            await finish_anyway(self._add_finalizer(obj))
        except APIError as err:
            log.warning("cannot add the finalizer to %s: %s", obj["metadata"]["name"], err)

    async def _add_finalizer(self, obj: dict[str, Any]) -> None:
        await self._set_finalizer(obj, True)

    async def _drop_finalizer(self, obj: dict[str, Any]) -> None:
        await self._set_finalizer(obj, False)

    async def _set_finalizer(self, obj: dict[str, Any], present: bool) -> None:
        """Add or remove our finalizer, the resourceVersion as precondition, re-reading on a conflict."""
        ref = ref_of(IMAGE_BUILDS, obj)
        for _ in range(5):
            meta = obj["metadata"]
            fins = meta.get("finalizers") or []
            if (IMAGE_BUILD_FINALIZER in fins) == present:
                return
            wanted = ([*fins, IMAGE_BUILD_FINALIZER] if present
                      else [f for f in fins if f != IMAGE_BUILD_FINALIZER])
            try:
                fresh = await self.kube.merge_patch(ref, {"metadata": {
                    "finalizers": wanted or None, "resourceVersion": meta["resourceVersion"]}})
                self.cache.put(fresh)
                return
            except NotFound:
                return
            except Conflict:
                latest = await self.kube.get(ref)
                if latest is None or latest["metadata"]["uid"] != meta["uid"]:
                    return
                if present and latest["metadata"].get("deletionTimestamp"):
                    return  # being deleted already: no new finalizer
                obj = latest

    async def _write_status(self, obj: dict[str, Any], status: ImageBuildStatus) -> dict[str, Any]:
        fresh = await self.kube.patch_status_if_present(ref_of(IMAGE_BUILDS, obj), status)
        if fresh is None:
            return obj
        self.cache.put(fresh)
        return fresh

    def _forget_files(self, uid: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.paths.log_file(uid).unlink(missing_ok=True)
        shutil.rmtree(self.paths.upload_dir(meta.get("namespace", ""), meta.get("name", "")), ignore_errors=True)

    # ---- the build task ----

    async def _build(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        generation = meta.get("generation", 1)
        build_log = BuildLog(self.paths.log_file(meta["uid"]))
        reporter = StepReporter(self, obj)
        progress = Progress(build_log, reporter.changed)
        reporter.progress = progress
        guard = asyncio.get_running_loop().create_task(self._protect_later(obj))
        try:
            status = obj.get("status") or {}
            fresh = (status.get("phase") == "Running" and status.get("observedGeneration") == generation
                     and not status.get("steps") and status.get("startTime"))
            if not fresh:  # unless the claim just wrote it
                await self._write_status(obj, self._running_status(obj))
            result, pushed = await self._run(obj, progress)
            final = self._success(obj, result, pushed, progress)
        except asyncio.CancelledError:
            build_log.line("build canceled")
            build_log.close()
            await _stop(guard)
            await reporter.close()
            raise
        except (BuildFailed, ContextError, InvalidReference, APIError, OSError) as err:
            final = self._failure(obj, err, progress)
        except Exception as err:  # a bug must still end the build, not leave it Running forever
            log.exception("build %s/%s failed unexpectedly", meta.get("namespace"), meta["name"])
            final = self._failure(obj, err, progress)
        await _stop(guard)  # (an add in flight completes first, so the final status sees it)
        await reporter.close()
        build_log.line(final["message"])
        build_log.close()
        await self._finish(obj, final)

    def _running_status(self, obj: dict[str, Any]) -> ImageBuildStatus:
        return {
            "phase": "Running", "message": "", "observedGeneration": obj["metadata"].get("generation", 1),
            "startTime": now_rfc3339(), "completionTime": None, "steps": [], "stepsDone": 0, "failedStep": None,
            "exitCode": None, "imageID": None, "shortID": None, "imageDigest": None, "imageSize": None,
            "tags": None, "tagSummary": None, "pushed": None, "node": self.node,
            "conditions": [condition(obj, "Running", "building")],
        }

    async def _finish(self, obj: dict[str, Any], final: ImageBuildStatus) -> None:
        """Terminal status, then the upload and one-off secrets go, and the finalizer."""
        meta = obj["metadata"]
        fresh = await self._write_status(obj, final)
        self._background(self._record_event(fresh, final))
        shutil.rmtree(self.paths.upload_dir(meta.get("namespace", ""), meta["name"]), ignore_errors=True)
        await self._delete_ephemeral_secrets(obj)
        await self._drop_finalizer(fresh)
        if self.on_build_done is not None:
            self.on_build_done()

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _record_event(self, obj: dict[str, Any], final: ImageBuildStatus) -> None:
        """The outcome as a core Event too (`kubectl describe imagebuild`, `kubectl get events`). It is
        written a moment after the status, in the background, so that the client that waited for the status
        (and reads the object once more) does not share the API server with it."""
        await asyncio.sleep(EVENT_DELAY)
        failed = final.get("phase") != "Succeeded"
        try:
            await self.kube.event(obj, "BuildFailed" if failed else "Built", final.get("message", ""),
                                  warning=failed, component="k3c-builder", host=self.node)
        except Exception as err:  # only a record: the status already says it all
            log.warning("could not record an Event for build %s: %s", obj["metadata"]["name"], err)

    async def _run(self, obj: dict[str, Any], progress: Progress) -> tuple[BuildResult, list[str]]:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ns, name = meta.get("namespace", "default"), meta["name"]
        if spec.get("platform"):
            try:
                check_platform(spec["platform"])
            except ValueError as err:
                raise BuildFailed(str(err)) from None
        ctx = await prepare_context(spec, self.paths.work, self.paths.uploads, ns, name, progress.line,
                                    allow_local_git=self.config.local_git_contexts)
        secrets_dir = Path(tempfile.mkdtemp(prefix="secrets-", dir=self.paths.work))
        try:
            request = BuildRequest(
                context_dir=ctx.dir, dockerfile=ctx.dockerfile,
                tags=[normalize(t) for t in spec.get("tags") or []],
                build_args=dict(spec.get("buildArgs") or {}), target=spec.get("target") or "",
                labels=dict(spec.get("labels") or {}), no_cache=bool(spec.get("noCache")),
                pull=bool(spec.get("pull")), network=spec.get("network") or "default",
                allow=list(spec.get("allow") or []),
                secrets=await self._secrets(obj, secrets_dir),
                image_labels={IMAGE_BUILD_LABEL: f"{ns}/{name}"},
            )
            result = await self.engine.build(request, progress)
            await share(self.store, result.tags)  # a Pod of this node may use it when the build returns
        finally:
            ctx.cleanup()
            shutil.rmtree(secrets_dir, ignore_errors=True)
        pushed = await self._push(result.tags, progress) if spec.get("push") and result.tags else []
        return result, pushed

    async def _push(self, tags: list[str], progress: Progress) -> list[str]:
        """Push each tag from containerd, as an ImagePush (``k3c push``) does: same client, same credentials
        (k3c's registry Secret) and host settings, whichever engine built the image."""
        from k3c.cri.errors import RuntimeCallError
        from k3c.distribution.errors import RegistryError
        from k3c.distribution.push import push_image
        from k3c.oci.reference import parse
        from k3c.reconcilers.registryaccess import RegistryAccess

        access = RegistryAccess(self.kube)
        for name in tags:
            ref = parse(name)
            progress.line(f"pushing {name}")
            client = await access.client(ref.domain)
            try:
                result = await push_image(self.store, client, name, ref)
            except (RegistryError, RuntimeCallError) as err:
                raise BuildFailed(f"push of {name} failed: {err}") from None
            finally:
                await client.close()
            progress.line(f"pushed {name}: digest: {result.digest} size: {result.size}")
        return list(tags)

    async def _secrets(self, obj: dict[str, Any], dest: Path) -> dict[str, Path]:
        """Each ``spec.secrets`` entry's value, in a 0600 file of its own."""
        ns = obj["metadata"].get("namespace", "default")
        out: dict[str, Path] = {}
        for i, entry in enumerate((obj.get("spec") or {}).get("secrets") or []):
            sid, secret_name = entry["id"], entry["secretName"]
            secret = await self.kube.get(Ref(SECRETS, ns, secret_name))
            if secret is None:
                raise BuildFailed(f"secret {secret_name!r} (for build secret {sid!r}) not found")
            key = entry.get("key") or sid
            data = (secret.get("data") or {}).get(key)
            if data is None:
                raise BuildFailed(f"secret {secret_name!r} has no key {key!r} (for build secret {sid!r})")
            path = dest / f"secret-{i}"
            path.touch(mode=0o600)
            path.write_bytes(base64.b64decode(data))
            out[sid] = path
        return out

    async def _delete_ephemeral_secrets(self, obj: dict[str, Any]) -> None:
        ns, name = obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]
        for entry in (obj.get("spec") or {}).get("secrets") or []:
            ref = Ref(SECRETS, ns, entry.get("secretName", ""))
            with contextlib.suppress(APIError):
                secret = await self.kube.get(ref)
                if secret and (secret["metadata"].get("labels") or {}).get(BUILD_SECRET_LABEL) == name:
                    await self.kube.delete(ref, secret["metadata"].get("uid"))

    # ---- status documents ----

    def _success(self, obj: dict[str, Any], result: BuildResult, pushed: list[str],
                 progress: Progress) -> ImageBuildStatus:
        tags = result.tags
        summary = ", ".join(tags[:3]) + (f" +{len(tags) - 3}" if len(tags) > 3 else "")
        message = f"built {result.image_id}" + (f" ({result.cached_steps} steps from cache)"
                                                 if result.cached_steps else "")
        return {
            "phase": "Succeeded", "message": message, "completionTime": now_rfc3339(),
            "steps": progress.steps[-MAX_STEPS_KEPT:], "stepsDone": len(progress.steps),
            "imageID": result.image_id, "shortID": result.image_id.split(":", 1)[-1][:12],
            "imageDigest": result.digest, "imageSize": result.size, "tags": tags, "tagSummary": summary or None,
            "pushed": pushed or None, "conditions": [condition(obj, "Succeeded", message)],
        }

    def _failure(self, obj: dict[str, Any], err: Exception, progress: Progress) -> ImageBuildStatus:
        step = getattr(err, "step", "") or None
        code = getattr(err, "exit_code", None)
        # (redact: a message that quotes a URL with credentials must not publish them in status and Event)
        message = redact(f"build failed: {getattr(err, 'message', None) or err}")
        done = len(progress.steps) - (1 if step and code is not None else 0)
        return {
            "phase": "Failed", "message": message, "completionTime": now_rfc3339(),
            "steps": progress.steps[-MAX_STEPS_KEPT:], "stepsDone": max(done, 0),
            "failedStep": step, "exitCode": code, "conditions": [condition(obj, "Failed", message)],
        }


class StepReporter:
    """Writes ``status.steps`` while a build runs, at most every :data:`STATUS_INTERVAL` seconds."""

    def __init__(self, reconciler: ImageBuildReconciler, obj: dict[str, Any]) -> None:
        self.reconciler = reconciler
        self.obj = obj
        self.progress: Progress | None = None
        self._task: asyncio.Task[None] | None = None
        # the first write waits one interval too: a build answered from cache ends before it is due,
        # and its final status carries the steps anyway
        self._last = time.monotonic()

    def changed(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        assert self.progress is not None
        written = -1
        while len(self.progress.steps) != written:  # steps that came while writing go out next
            await asyncio.sleep(max(0.0, self._last + STATUS_INTERVAL - time.monotonic()))
            self._last = time.monotonic()
            steps = list(self.progress.steps)
            written = len(steps)
            with contextlib.suppress(APIError, OSError):
                await self.reconciler._write_status(self.obj, {  # the reconciler's own helper
                    "steps": steps[-MAX_STEPS_KEPT:], "stepsDone": max(len(steps) - 1, 0),
                    "message": steps[-1] if steps else "",
                })

    async def close(self) -> None:
        """Stop writing: a step update must never land after (and over) the final status."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a helper task and wait until it is over."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
