"""jobserver: a self-hosted job server that streams each job's progress live.

The public API is what this module exports; everything under it may move. Names are loaded
on first use, so ``import jobserver.client`` does not load the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "job_type": "jobserver.jobtypes",
    "JobType": "jobserver.jobtypes",
    "Stage": "jobserver.jobtypes",
    "HandlerOptions": "jobserver.jobtypes",
    "JobContext": "jobserver.handlers",
    "ProcessContext": "jobserver.procs.context",
    "JobError": "jobserver.errors",
    "InvalidPayload": "jobserver.errors",
    "Plugin": "jobserver.plugins",
    "Server": "jobserver.plugins",
    "Tables": "jobserver.tables",
    "Tx": "jobserver.tables",
    "write_op": "jobserver.tables",
    "Job": "jobserver.models",
    "Event": "jobserver.models",
    "JobStage": "jobserver.models",
    "JobStatus": "jobserver.models",
}

__all__ = [
    "Event",
    "HandlerOptions",
    "InvalidPayload",
    "Job",
    "JobContext",
    "JobError",
    "JobStage",
    "JobStatus",
    "JobType",
    "Plugin",
    "ProcessContext",
    "Server",
    "Stage",
    "Tables",
    "Tx",
    "__version__",
    "job_type",
    "write_op",
]

if TYPE_CHECKING:
    from .errors import InvalidPayload, JobError
    from .handlers import JobContext
    from .jobtypes import HandlerOptions, JobType, Stage, job_type
    from .models import Event, Job, JobStage, JobStatus
    from .plugins import Plugin, Server
    from .procs.context import ProcessContext
    from .tables import Tables, Tx, write_op


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
