"""Loading job types and plugins: ``--jobs`` modules, entry points, and the built-in ones.

A module named with ``--jobs`` (or an installed package's entry point in the group
``jobserver.job_types``, named the same way) is imported; every module-level ``JobType`` in
it (``@job_type``) is registered, and if it has a ``setup(plugin)`` function, that is called
with a ``Plugin`` on which it registers what else it owns: routes, storage, bus taps, hooks,
cleanup contexts and retention steps. The core never imports a plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .bus import EventBus
from .config import Settings
from .handlers import Registry
from .jobtypes import JobType, merged_stage_names
from .models import Event, Job
from .procs import runner
from .procs.pool import ProcessPool
from .store import NewJob, Store
from .worker import WorkerPool

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

ENTRY_POINTS = "jobserver.job_types"
# Built-in plugins, on unless their job type is in ``disable_job_types``.
BUILTIN: dict[str, str] = {"pdf-notes": "jobserver.pdf.plugin"}
DEMO = "jobserver.demo"

# What a plugin's running parts are given: the aiohttp application (see ``Server``).
CleanupContext = Callable[["Server"], AsyncIterator[None]]
QueuedHook = Callable[["Server", Job], None]
RetentionStep = Callable[["Server", float], Awaitable[int]]
MultipartJob = Callable[["web.Request"], Awaitable[NewJob | Sequence[NewJob]]]
SubmitCheck = Callable[["Server", NewJob], Awaitable[None] | None]
MoveStep = Callable[[Settings], Awaitable[int]]


class StartupError(Exception):
    """A job-type module or plugin could not be loaded; the message names it."""


class Server:
    """What a plugin's cleanup contexts, hooks and retention steps see of the running server.

    Args:
        app: the server's aiohttp application (for a plugin's own ``web.AppKey``s).
        settings: the server's settings.
        store: the ``Store``: ``write(op, *args)`` runs the plugin's write ops, ``fetch``
            reads its tables.
        bus: published events (``add_tap``).
    """

    def __init__(self, app: web.Application, settings: Settings, store: Store, bus: EventBus):
        self.app = app
        self.settings = settings
        self.store = store
        self.bus = bus
        self.pool: WorkerPool | None = None  # set once the worker pool runs
        # The worker processes (process=True job types, the PDF parser); started before
        # plugins' cleanup contexts when any job type or plugin uses them.
        self.processes: ProcessPool | None = None

    def add_tap(self, tap: Callable[[Event], None]) -> None:
        """Hear every published event (in seq order, after it is durable)."""
        self.bus.add_tap(tap)

    @property
    def free_slots(self) -> int:
        """Jobs the worker pool could start right now (0 while it does not run)."""
        return 0 if self.pool is None else self.pool.free_slots


@dataclass(slots=True)
class Plugin:
    """Where a plugin's ``setup(plugin)`` registers what it owns.

    Args:
        name: the module (or entry point) it was loaded as.
        settings: the server's settings.
    """

    name: str
    settings: Settings
    job_types: list[JobType] = field(default_factory=list)
    route_defs: list[Any] = field(default_factory=list)
    contexts: list[CleanupContext] = field(default_factory=list)
    taps: list[Callable[[Event], None]] = field(default_factory=list)
    queued_hooks: list[QueuedHook] = field(default_factory=list)
    retention_steps: list[tuple[str, RetentionStep]] = field(default_factory=list)
    storage_modules: list[str] = field(default_factory=list)
    multipart_jobs: dict[str, MultipartJob] = field(default_factory=dict)
    submit_checks: dict[str, list[SubmitCheck]] = field(default_factory=dict)
    openapi_paths: dict[str, Any] = field(default_factory=dict)
    openapi_schemas: dict[str, Any] = field(default_factory=dict)
    process_warm_ups: list[str] = field(default_factory=list)
    process_memory_mb: int = 0
    move_steps: list[tuple[str, MoveStep]] = field(default_factory=list)

    def add_job_type(self, job_type: JobType) -> JobType:
        self.job_types.append(job_type)
        return job_type

    def add_routes(self, routes: Iterable[Any]) -> None:
        """aiohttp route definitions (a ``web.RouteTableDef``)."""
        self.route_defs.extend(routes)

    def describe(self, paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> None:
        """OpenAPI path items and component schemas of this plugin's routes, merged into
        ``GET /api/openapi.json`` (a test checks every served route is described)."""
        self.openapi_paths.update(paths)
        self.openapi_schemas.update(schemas or {})

    def add_cleanup_context(self, context: CleanupContext) -> None:
        """An async generator taking the ``Server``: set up before workers start, torn down
        after they stopped (as aiohttp's cleanup contexts)."""
        self.contexts.append(context)

    def add_tap(self, tap: Callable[[Event], None]) -> None:
        """Hear every published event (in seq order, after it is durable)."""
        self.taps.append(tap)

    def on_queued(self, hook: QueuedHook) -> None:
        """Called with each job just created (after its ``job.queued`` event is durable and
        before the submitter hears back); it must not block."""
        self.queued_hooks.append(hook)

    def use_processes(self, warm_up: str | None = None, memory_mb: int = 0) -> None:
        """This plugin runs work of its own in the server's worker processes
        (``server.processes``), so they are started: ``warm_up`` (``module:function``) is
        called in each as it starts, and no call of the plugin's asks for more than
        ``memory_mb`` of address space."""
        if warm_up is not None:
            self.process_warm_ups.append(warm_up)
        self.process_memory_mb = max(self.process_memory_mb, memory_mb, 1)

    def add_retention_step(self, name: str, step: RetentionStep) -> None:
        """Run by the retention pruner after old jobs went, with the cut-off time; returns
        how many things it removed (counted under ``name``)."""
        self.retention_steps.append((name, step))

    def add_move_step(self, name: str, step: MoveStep) -> None:
        """Run by ``server.py migrate-to-postgres`` once the store's rows moved, with the
        settings: it moves what the plugin keeps beside the store (files) and returns how
        many things it moved."""
        self.move_steps.append((name, step))

    def add_storage(self, module: str) -> None:
        """A module of ``tables.Tables`` and ``@tables.write_op`` functions (by import path:
        each store backend imports it where it writes)."""
        self.storage_modules.append(module)

    def check_submit(self, job_type: str, check: SubmitCheck) -> None:
        """``check(server, new)`` runs before a ``job_type`` job submitted as JSON is created,
        with its submitter in ``new.user_id``; it raises a ``JobServerError`` to refuse it
        (for what a payload check cannot know: who may name what). It may be a coroutine
        function (to ask a database)."""
        self.submit_checks.setdefault(job_type, []).append(check)

    def accept_multipart(self, job_type: str, make: MultipartJob) -> None:
        """``POST /api/jobs`` as ``multipart/form-data`` makes a ``job_type`` job with
        ``make(request)``, or several, enqueued as one batch (the first type registered this
        way is the default)."""
        self.multipart_jobs[job_type] = make


@dataclass(slots=True)
class Plugins:
    """Everything the loaded modules registered, merged."""

    loaded: list[Plugin] = field(default_factory=list)
    registry: Registry = field(default_factory=Registry)

    def __iter__(self) -> Any:
        return iter(self.loaded)

    @property
    def storage_modules(self) -> list[str]:
        return [m for p in self.loaded for m in p.storage_modules]

    @property
    def openapi_paths(self) -> dict[str, Any]:
        return {k: v for p in self.loaded for k, v in p.openapi_paths.items()}

    @property
    def openapi_schemas(self) -> dict[str, Any]:
        return {k: v for p in self.loaded for k, v in p.openapi_schemas.items()}

    @property
    def queued_hooks(self) -> list[QueuedHook]:
        return [h for p in self.loaded for h in p.queued_hooks]

    @property
    def retention_steps(self) -> list[tuple[str, RetentionStep]]:
        return [s for p in self.loaded for s in p.retention_steps]

    @property
    def submit_checks(self) -> dict[str, list[SubmitCheck]]:
        merged: dict[str, list[SubmitCheck]] = {}
        for p in self.loaded:
            for job_type, checks in p.submit_checks.items():
                merged.setdefault(job_type, []).extend(checks)
        return merged

    @property
    def move_steps(self) -> list[tuple[str, MoveStep]]:
        return [s for p in self.loaded for s in p.move_steps]

    @property
    def process_warm_ups(self) -> list[str]:
        return [w for p in self.loaded for w in p.process_warm_ups]

    @property
    def process_memory_mb(self) -> int:
        """The most any plugin gives a call in a worker process (0: none uses them)."""
        return max((p.process_memory_mb for p in self.loaded), default=0)

    @property
    def multipart_jobs(self) -> dict[str, MultipartJob]:
        merged: dict[str, MultipartJob] = {}
        for p in self.loaded:
            merged.update(p.multipart_jobs)
        return merged


def module_names(settings: Settings) -> list[str]:
    """What this server loads, in order: built-ins not disabled, demo jobs, ``--jobs``."""
    names = [m for t, m in BUILTIN.items() if t not in settings.disable_job_types]
    if settings.demo_jobs:
        names.append(DEMO)
    names += [n for n in settings.jobs if n not in names]
    return names


def _import(name: str) -> ModuleType | Callable[..., Any]:
    """An entry point of that name in ``jobserver.job_types``, else the module itself."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            loaded: ModuleType | Callable[..., Any] = ep.load()
            return loaded
    return importlib.import_module(name)


def load(settings: Settings, names: Sequence[str] | None = None) -> Plugins:
    """Import every job-type module and plugin; StartupError (naming it) if one fails, two
    declare the same job type, or one stage id gets two display names."""
    plugins = Plugins()
    for name in module_names(settings) if names is None else names:
        try:
            target = _import(name)
        except Exception as exc:
            raise StartupError(f"cannot load job types from {name!r}: {exc!r}") from exc
        plugin = Plugin(name, settings)
        if isinstance(target, ModuleType):
            for value in vars(target).values():
                if isinstance(value, JobType):
                    plugin.add_job_type(value)
            setup = getattr(target, "setup", None)
        else:
            setup = target  # an entry point may name the setup function itself
        if setup is not None:
            try:
                setup(plugin)
            except Exception as exc:
                raise StartupError(f"setting up {name!r} failed: {exc!r}") from exc
        if not plugin.job_types and setup is None:
            raise StartupError(f"{name!r} declares no job type (@job_type) and has no setup()")
        for jt in plugin.job_types:
            if jt.name in settings.disable_job_types:
                continue
            try:
                plugins.registry.add(jt)
            except ValueError as exc:
                raise StartupError(f"loading {name!r}: {exc}") from None
        plugins.loaded.append(plugin)
    try:
        merged_stage_names(plugins.registry.types())
        for jt in plugins.registry.types():
            if jt.options.process:
                runner.check(jt)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return plugins
