"""Declaring a job type: its name, handler, options and stages (the public ``@job_type``).

A module that declares job types is loaded with ``--jobs`` (see ``plugins.py``): each
module-level ``JobType`` it holds is registered, so declaring one is all it takes::

    from jobserver import JobContext, Stage, job_type

    RESIZING = Stage("resizing", "Resizing the image")

    @job_type("images.thumbnail", stages=[RESIZING], timeout=30, max_attempts=3)
    async def thumbnail(ctx: JobContext) -> dict[str, object]:
        await ctx.progress(RESIZING, 50, "Half way")
        return {"title": "Thumbnail ready"}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import InvalidPayload, JobError
from .models import COMMON_HANDLER_STAGES, SERVER_STAGES, STAGE_DISPLAY_NAMES

STAGE_ID = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$")
MAX_LABEL = 200

PayloadCheck = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Stage:
    """A working stage of a job type, shown to people by its display name.

    Stage ids are global: every job type that declares ``Stage("resizing", ...)`` must give
    it the same display name, or the server refuses to start.

    Args:
        id: the stage as events carry it: lowercase letters, digits, ``_ . -``.
        name: the display name (``GET /api/meta`` serves it to the page and the clients).
    """

    id: str
    name: str

    def __post_init__(self) -> None:
        if not STAGE_ID.match(self.id):
            raise ValueError(
                f"stage id {self.id!r} must be 1-64 of a-z, 0-9, '_', '.', '-' (a letter first)"
            )
        if self.id in SERVER_STAGES:
            raise ValueError(f"stage {self.id!r} is the server's; a job type cannot declare it")
        if not self.name or len(self.name) > 100:
            raise ValueError(f"stage {self.id!r} needs a display name of 1-100 characters")


class Handler(Protocol):
    """A job type's work: returns the job's result (a JSON-able mapping) or raises JobError.

    An ``async def`` taking a ``JobContext``; with ``process=True`` a plain ``def`` taking a
    ``ProcessContext``, run in a child process.
    """

    def __call__(self, ctx: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """How a job type runs.

    Args:
        timeout: seconds one attempt may take (None: no limit).
        max_attempts: default attempts for a new job of this type.
        backoff_base: seconds before the first retry; doubles each attempt, with jitter.
        backoff_max: longest wait between attempts.
        check_payload: validates (and may normalise) a payload at enqueue time; raises
            InvalidPayload.
        concurrency: most jobs of this type running at once in one server (None: no
            limit of its own, only the server's).
        process: run the (plain, blocking) handler in a child process of the shared pool,
            killed at its timeout and capped in memory.
        memory_mb: address-space cap of that child for this type (None: the pool's).
    """

    timeout: float | None = 300.0
    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    check_payload: PayloadCheck | None = None
    concurrency: int | None = None
    process: bool = False
    memory_mb: int | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive (or None for no limit)")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts must be from 1 to 100")
        if self.backoff_base < 0 or self.backoff_max < self.backoff_base:
            raise ValueError("backoff must be >= 0 and backoff_max at least backoff")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1 (or None)")
        if self.process and self.timeout is None:
            raise ValueError("a process=True job type needs a timeout: it is how it is stopped")
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError("memory_mb must be at least 64")


@dataclass(frozen=True, slots=True)
class JobType:
    """A registered kind of work.

    Args:
        name: the type clients submit (``POST /api/jobs {"type": ...}``).
        handler: the work (see ``Handler``).
        options: how it runs.
        display_name: how people see the type (defaults to its name).
        stages: its own working stages, in the order they usually come.
        label: makes a job's label from its payload when the submitter gave none.
        module: where it was declared, for messages about it.
    """

    name: str
    handler: Handler
    options: HandlerOptions = field(default_factory=HandlerOptions)
    display_name: str = ""
    stages: tuple[Stage, ...] = ()
    label: Callable[[dict[str, Any]], str] | None = None
    module: str = ""

    def __post_init__(self) -> None:
        if not TYPE_NAME.match(self.name):
            raise ValueError(
                f"job type name {self.name!r} must be 1-100 of letters, digits, '_ . : -'"
            )
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError(f"job type {self.name!r} declares a stage twice")

    def __call__(self, ctx: Any) -> Any:
        """Call the handler, so a decorated function can still be called directly."""
        return self.handler(ctx)

    def stage_ids(self) -> dict[str, str]:
        """Every stage this type's handler may report, by id (the common ones too)."""
        allowed = {str(s): str(s) for s in COMMON_HANDLER_STAGES}
        allowed.update({s.id: s.id for s in self.stages})
        return allowed

    def stage_names(self) -> dict[str, str]:
        return {s.id: s.name for s in self.stages}

    def label_for(self, payload: dict[str, Any]) -> str:
        if self.label is None:
            return ""
        try:
            return str(self.label(payload))[:MAX_LABEL]
        except InvalidPayload:
            raise
        except Exception as exc:  # e.g. the docs' `lambda p: p["url"]` on a payload without one
            raise InvalidPayload(  # the submitter's 400, not a 500 with no clue
                f"cannot make a label for a {self.name} job from this payload "
                f"({type(exc).__name__}: {exc})"[:300]
            ) from None


def payload_check(payload: Any) -> PayloadCheck | None:
    """A pydantic model (anything with ``model_validate``) or a plain function, as a check.

    A model's validation errors become InvalidPayload; the payload stored is the model's
    JSON form, so a handler can rebuild it with ``Model.model_validate(ctx.payload)``.
    """
    if payload is None:
        return None
    validate = getattr(payload, "model_validate", None)
    if validate is None:
        if not callable(payload):
            raise TypeError("payload must be a pydantic model or a function")
        check: PayloadCheck = payload
        return check

    def check_model(data: dict[str, Any]) -> dict[str, Any]:
        try:
            model = validate(data)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidPayload(f"the payload is not valid: {_first_line(exc)}") from None
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped

    return check_model


def _first_line(exc: Exception) -> str:
    text = str(exc).replace("\n", "; ")
    return text[:300]


def job_type(
    name: str,
    *,
    display_name: str = "",
    stages: Sequence[Stage] = (),
    timeout: float | None = 300.0,
    max_attempts: int = 3,
    backoff: float = 1.0,
    backoff_max: float = 300.0,
    concurrency: int | None = None,
    payload: Any = None,
    label: Callable[[dict[str, Any]], str] | None = None,
    process: bool = False,
    memory_mb: int | None = None,
) -> Callable[[Handler], JobType]:
    """Declare the decorated function as the job type ``name``.

    Args:
        name: what clients submit as ``type``.
        display_name: how people see the type.
        stages: the type's own stages (``Stage``), reported with ``ctx.progress``.
        timeout: seconds one attempt may take (None: no limit; required with ``process``).
        max_attempts: default attempts of a job (a submitter may ask for fewer or more).
        backoff: seconds before the first retry, doubling per attempt with jitter ...
        backoff_max: ... up to this.
        concurrency: most jobs of this type running at once in one server.
        payload: a pydantic model or a function that checks (and may normalise) a payload
            when it is submitted; raise ``InvalidPayload`` to refuse it.
        label: makes a job's label (a short title for lists) from its payload.
        process: the handler is a plain function run in a child process (CPU-bound work);
            it is killed at its timeout and capped at ``memory_mb``.
        memory_mb: address-space cap of that child (None: the pool's setting).
    """
    options = HandlerOptions(
        timeout=timeout,
        max_attempts=max_attempts,
        backoff_base=backoff,
        backoff_max=backoff_max,
        check_payload=payload_check(payload),
        concurrency=concurrency,
        process=process,
        memory_mb=memory_mb,
    )

    def declare(handler: Handler) -> JobType:
        return JobType(
            name=name,
            handler=handler,
            options=options,
            display_name=display_name,
            stages=tuple(stages),
            label=label,
            module=getattr(handler, "__module__", ""),
        )

    return declare


def merged_stage_names(types: Sequence[JobType]) -> dict[str, str]:
    """Every stage's display name, the server's and each type's; a stage id given two
    display names is an error naming both declarations."""
    names: dict[str, str] = {str(s): n for s, n in STAGE_DISPLAY_NAMES.items()}
    origin: dict[str, str] = dict.fromkeys(names, "jobserver")
    for jt in types:
        for stage in jt.stages:
            known = names.get(stage.id)
            if known is not None and known != stage.name:
                raise ValueError(
                    f"stage {stage.id!r} is declared as {known!r} by {origin[stage.id]} and as "
                    f"{stage.name!r} by job type {jt.name!r} ({jt.module or 'unknown module'})"
                )
            names[stage.id] = stage.name
            origin.setdefault(stage.id, f"job type {jt.name!r} ({jt.module or '?'})")
    return names


def check_label(value: Any) -> str:
    """A submitted label: a string of at most MAX_LABEL characters (may be empty)."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        raise InvalidPayload(f"label must be a string of at most {MAX_LABEL} characters")
    return value.strip()


UNKNOWN_STAGE = "UNKNOWN_STAGE"


def stage_id(stage: Any, allowed: Mapping[str, str], job_type: str) -> str:
    """The stage a handler reported, as its id, if its job type may report it; else the
    attempt fails for good with UNKNOWN_STAGE (a bug in the handler, not in the input)."""
    key = stage.id if isinstance(stage, Stage) else stage
    found = allowed.get(key) if isinstance(key, str) else None
    if found is None:
        if key in SERVER_STAGES:
            why = f"stage {key!r} is set by the server, not a handler"
        else:
            why = (f"stage {key!r} is not a stage of job type {job_type!r} "
                   f"(it may report: {', '.join(sorted(allowed))})")  # fmt: skip
        raise JobError(UNKNOWN_STAGE, why, recoverable=False)
    return found
