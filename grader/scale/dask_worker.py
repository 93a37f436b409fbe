"""A Dask worker that grades: a plugin that holds a warm grading context, and the task.

The client (grader/scale/cluster.py) registers a `GradingPlugin` with the scheduler, which
sets it up on every worker, now and on each worker that joins later. Its setup decides
whether the worker may grade:

- its grader code must be the client's (the gradebook keys every grade by its hash);
- it must be able to make the sandbox (bubblewrap) on its own host, unless the batch
  was started with --no-sandbox: a worker that cannot refuses work, and says why;
- the data, the weights and the lab's module must be on it: at the client's paths when
  the cluster shares a file system, else in the worker's staging folder, where the
  client sends each file once (`receive`). Either way each file is checked by its
  content hash, never trusted by its name.

A worker that may grade offers the batch's resource (one unit), which every grading
task asks for: tasks go only to such workers, one at a time each. It then warms a
`pipeline.Grader` in a thread (TensorFlow, the reference base, the feature cache, a
sandbox zygote) that every task reuses. The task (`grade`) carries the notebook's bytes
and the run's context (whole: the worker puts its own paths in), writes the bytes to a
private temporary file, grades it in the sandbox on this host, renders its page beside
the grading, and returns the result and the page as JSON text; nothing else comes back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from grader import context as context_mod
from grader.context import Context
from grader.faults import GraderError, GraderFault
from grader.scale import memory
from grader.store.storage import write_atomic
from reference.hashing import file_sha256


@dataclasses.dataclass(frozen=True)
class Asset:
    """A file grading needs: where the client has it, its content hash, and its path
    within its group's folder (the data's class folders; default: its base name)."""

    path: str
    sha256: str
    within: str = ""

    @property
    def relative(self) -> str:
        return self.within or os.path.basename(self.path)


@dataclasses.dataclass(frozen=True)
class Assets:
    """What a worker must hold before it grades, as the client has it."""

    data: tuple[Asset, ...]  # the dataset's files (one folder, mounted at /data in the sandbox)
    weights: tuple[Asset, ...]  # the pretrained base's weights file (none: the lab has no base)
    code: str  # the client's grader_code_hash()
    lab: tuple[Asset, ...] = ()  # the assignment's own module (none: it has none)

    def all(self) -> tuple[Asset, ...]:
        return (*self.data, *self.weights, *self.lab)

    def groups(self) -> dict[str, tuple[Asset, ...]]:
        return {"data": self.data, "weights": self.weights, "lab": self.lab}


def assets_of(context: Context) -> Assets:
    """The client's side: hash every file a worker needs."""
    folder = context.dataset.folder
    data = tuple(Asset(path, file_sha256(path), os.path.relpath(path, folder)) for path in context.dataset.files)
    weights = (Asset(context.weights.path, file_sha256(context.weights.path)),) if context.weights is not None else ()
    manifest = context.manifest
    module = os.path.join(manifest.directory, manifest.lab.module) if manifest.lab.module else None
    lab = (Asset(module, file_sha256(module)),) if module else ()
    return Assets(data, weights, context_mod.grader_code_hash(), lab)


@dataclasses.dataclass(frozen=True)
class Notebook:
    """A notebook as it travels to a worker: its bytes, not a path."""

    key: str  # the sha256 of `content`, as the client computed it
    name: str
    file: str  # the submitted file's base name
    content: bytes


def staging_dir() -> str:
    """Where a worker keeps the files the client sent it ($GRADER_STAGING, else the user's cache)."""
    return os.environ.get("GRADER_STAGING") or os.path.join(context_mod.user_cache(), "staged")


def _group_folder(kind: str, assets: tuple[Asset, ...]) -> str:
    """A staged group's folder, named by the content of every file in it."""
    digest = hashlib.sha256("".join(f"{a.relative}:{a.sha256}\n" for a in assets).encode())
    return os.path.join(staging_dir(), f"{kind}-{digest.hexdigest()[:16]}")


def _holds(path: str, asset: Asset) -> bool:
    return os.path.isfile(path) and file_sha256(path) == asset.sha256


def locate(group: tuple[Asset, ...], kind: str) -> tuple[dict[Asset, str], tuple[Asset, ...]]:
    """Where each file of a group is on this worker, and which the client must send.

    A group (the dataset's files, which share one folder; the weights; the lab's module)
    is used at the client's paths only if every file there has the right content (a
    shared file system); otherwise from this worker's staging folder, laid out as the
    client's folder is."""
    if all(_holds(a.path, a) for a in group):
        return {a: a.path for a in group}, ()
    folder = _group_folder(kind, group)
    places = {a: os.path.join(folder, a.relative) for a in group}
    return places, tuple(a for a in group if not _holds(places[a], a))


def refusal(context: Context, assets: Assets) -> str | None:
    """Why this worker must not grade the batch, or None."""
    from grader.sandbox import bwrap

    code = context_mod.grader_code_hash()
    if code != assets.code:
        return f"it runs other grader code than the client (code hash {code}, the client's {assets.code}): install the same version"
    problem = bwrap.bubblewrap_problem()
    if problem is not None and context.sandboxed:
        return f"it cannot run student code in a sandbox: {problem}"
    return None


class GradingPlugin(WorkerPlugin):
    """A worker's grading state for one batch (see the module doc)."""

    def __init__(self, context: Context, assets: Assets, resource: str):
        self.context, self.assets, self.resource = context, assets, resource
        self.refused: str | None = None
        self.places: dict[Asset, str] = {}
        self.missing: tuple[Asset, ...] = ()
        self.warm: concurrent.futures.Future | None = None
        self.offered = False  # the scheduler knows this worker offers the resource
        self.run_context = context  # the client's context of the last task

    async def setup(self, worker) -> None:
        self.worker = worker
        self._threads = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grader-warm")  # made here: it does not pickle
        try:
            await asyncio.to_thread(self._inspect)
            await self.ready_if_complete()
        except Exception as error:  # noqa: BLE001 - told to the client, which names the worker and why
            self.refused = f"its setup failed: {type(error).__name__}: {str(error)[:300]}"

    def _inspect(self) -> None:
        from grader import sandbox
        from grader.sandbox import cgroups

        self.refused = refusal(self.context, self.assets)
        if self.refused is None:
            cgroups.sweep_stale()
            sandbox.sweep_stale_runs()
            self.places, self.missing = {}, ()
            for kind, group in self.assets.groups().items():
                places, missing = locate(group, kind)
                self.places, self.missing = {**self.places, **places}, self.missing + missing

    def status(self) -> dict:
        """What the client needs to know: refused (and why), files missing, or ready."""
        if self.refused is not None:
            return {"refused": self.refused}
        if self.missing:
            return {"missing": [a.sha256 for a in self.missing]}
        return {"ready": True} if self.offered else {"starting": True}

    def store(self, sha256: str, content: bytes) -> None:
        """Keep a file the client sent, once its content is checked against its hash."""
        wanted = [a for a in self.missing if a.sha256 == sha256]
        if not wanted:
            return
        if hashlib.sha256(content).hexdigest() != sha256:
            raise GraderError(f"a staged file arrived damaged (its content does not hash to {sha256[:16]})")
        for asset in wanted:
            write_atomic(self.places[asset], content)
        self.missing = tuple(a for a in self.missing if a.sha256 != sha256)

    async def ready_if_complete(self) -> None:
        """Once nothing is missing: warm up in a thread, and offer to grade."""
        if self.refused is None and not self.missing and self.warm is None:
            self.warm = self._threads.submit(lambda: warm_grader(self.local_context()))  # off the event loop: it copies and imports
            await self.worker.set_resources(**{self.resource: 1})
            self.offered = True

    def local_context(self) -> Context:
        """The client's context, with this worker's paths for the data, weights, lab module and cache."""
        from reference import weights as weights_mod

        context, place = self.context, {a.path: self.places[a] for a in self.assets.all()}.get
        dataset = dataclasses.replace(
            context.dataset,  # the pattern stays the client's: it names the data on the scorecards
            train_files=tuple(map(place, context.dataset.train_files)),
            validation_files=tuple(map(place, context.dataset.validation_files)),
        )
        manifest = context.manifest
        if self.assets.lab:  # the module is looked for in the assignment's folder
            manifest = dataclasses.replace(manifest, directory=os.path.dirname(place(self.assets.lab[0].path)))
        weights, keras_models = None, os.path.join(staging_dir(), "keras-no-base", "models")
        if context.weights is not None:
            weights = dataclasses.replace(context.weights, path=place(context.weights.path))
            keras_home = os.path.join(staging_dir(), f"keras-{self.assets.weights[0].sha256[:16]}")
            keras_models = weights_mod.stage(weights, keras_home, context.lab.base, manifest.image_size)
        os.makedirs(keras_models, exist_ok=True)
        return dataclasses.replace(context, manifest=manifest, dataset=dataset, weights=weights, keras_models=keras_models,
                                   cache_dir=_cache_dir(context.cache_dir))

    def grade(self, notebook: Notebook, context: Context) -> str:
        """The task's body: the result of one notebook and its page, as JSON text."""
        from grader.grading import pipeline
        from grader.scale import executors

        try:
            grader = self.warm.result()
        except BaseException as error:  # noqa: BLE001 - the client stops the batch with this message
            return json.dumps({"failed": executors.start_failure(error)})
        if context != self.run_context:  # the run's context changed (the model budget is known)
            grader.use(self.localized(context, grader.context))
            self.run_context = context
        pages = executors.Renderings()
        with tempfile.TemporaryDirectory(prefix="grader-notebook-") as folder:
            path = os.path.join(folder, notebook.file)
            with open(path, "wb") as handle:
                handle.write(notebook.content)
            work = pipeline.Work(notebook.key, path, notebook.name)
            if hashlib.sha256(notebook.content).hexdigest() != notebook.key:
                result = pipeline.grader_failed(path, notebook.name, grader, _damaged(notebook), time.monotonic())
            else:
                pages.start(work)
                result = pipeline.grade_submission(path, notebook.name, grader)
            page = pages.take(work)
            pages.close()
        return json.dumps({"result": result.to_json(), "notebook": dataclasses.asdict(page) if page else None})

    @staticmethod
    def localized(context: Context, local: Context) -> Context:
        """The client's context with this worker's paths (those of `local`, the context it warmed up with)."""
        return dataclasses.replace(context, manifest=local.manifest, dataset=local.dataset, weights=local.weights,
                                   keras_models=local.keras_models, cache_dir=local.cache_dir)

    async def teardown(self, worker) -> None:
        if self.warm is not None:
            self.warm.add_done_callback(_close)  # at once if it is warm, else once it is
            with contextlib.suppress(OSError):  # a worker that is closing cannot tell the scheduler
                await worker.set_resources(**{self.resource: 0})
        self._threads.shutdown(wait=False)


def warm_grader(context: Context):
    """What each worker holds for its tasks (in a thread: it imports TensorFlow)."""
    from grader.config import labs
    from grader.grading import pipeline
    from reference.training import quiet_tensorflow

    quiet_tensorflow()
    labs.load(context.manifest)  # the lab's own checks register themselves
    context_mod.check_assets(context)
    return pipeline.Grader(context, ahead=True)


def _close(warm: concurrent.futures.Future) -> None:
    if warm.exception() is None:
        warm.result().close()  # stops the sandbox zygote


def _cache_dir(wanted: str | None) -> str | None:
    """The client's cache folder when this worker can write there (shared or its own at the
    same path), else the worker's default: entries are keyed by content, so either is right."""
    if wanted is None:
        return None
    try:
        os.makedirs(wanted, exist_ok=True)
    except OSError:
        return context_mod.default_cache_dir()
    return wanted if os.access(wanted, os.W_OK) else context_mod.default_cache_dir()


def _damaged(notebook: Notebook) -> GraderFault:
    return GraderFault(f"the notebook's bytes arrived damaged (they do not hash to {notebook.key[:16]})")


# --- what the client calls on a worker (Client.run and Client.submit) --------------


def status(name: str, dask_worker) -> dict:
    plugin = dask_worker.plugins.get(name)
    return plugin.status() if plugin is not None else {"starting": True}


async def receive(name: str, sha256: str, content: bytes, dask_worker) -> dict:
    plugin = dask_worker.plugins[name]
    await asyncio.to_thread(plugin.store, sha256, content)
    await plugin.ready_if_complete()
    return plugin.status()


def schedule_waiting(address: str, dask_scheduler) -> int:
    """Run on the scheduler once the worker at `address` offers the resource: send it the
    tasks no worker could take. Dask looks again at such tasks when a worker joins, not
    when a worker's resources change, and a worker offers the resource only after its
    setup, after it joined: tasks put back while every worker was restarting (each killed
    by a notebook) would otherwise wait for ever."""
    worker = dask_scheduler.workers.get(address)
    if worker is None:
        return 0
    waiting = dask_scheduler.bulk_schedule_unrunnable_after_adding_worker(worker)
    dask_scheduler.transitions(waiting, stimulus_id=f"grader-offers-{address}-{time.time()}")
    return len(waiting)


def peak_bytes() -> int:
    """What this worker's own process needed at its peak (its sandboxes are not counted)."""
    return memory.peak()


def grade(notebook: Notebook, context: Context, name: str) -> str:
    """The grading task: runs on a worker that offers the batch's resource."""
    return get_worker().plugins[name].grade(notebook, context)
