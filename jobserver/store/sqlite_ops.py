"""The SQLite writer's ops: one tuple type per op, tagged by a ``Literal`` kind, and its result.

``sqlite.py`` builds ops (with the functions below for those that carry JSON) and
``sqlite_writer.py`` runs them, on the other side of a pipe. Both ends are typed against these
aliases, and ``Handlers`` says which handler answers which op with which result, so mypy
checks that the two ends agree on each op's fields.

Ops are plain tuples, not named tuples: a progress op is made per event on the event loop's
side and pickled, and pickle handles a tuple subclass through Python-level hooks (several
times slower). Values are plain ``str``, ``int``, ``float`` and JSON as bytes: nothing of a
caller's own types crosses to the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypedDict

from ..models import JobStage
from . import frames
from .claims import PerUser
from .frames import JobFields, NewJobFields, json_bytes
from .protocol import NewJob, ProgressUpdate, Pruned

# -- the ops (fields after the kind are named in the comment) --------------------------------

# new job's fields (see frames.new_job_fields)
Enqueue = tuple[Literal["enqueue"], NewJobFields]
# every new job's fields: made in one transaction, all or nothing
EnqueueMany = tuple[Literal["enqueue_many"], list[NewJobFields]]
# limit, lease_seconds, caps ({job type: how many more may run}), per_user (claims.PerUser)
Claim = tuple[Literal["claim"], int, float, dict[str, int] | None, PerUser | None]
# job_id, token, stage, progress, message, metadata (JSON), label
Progress = tuple[Literal["progress"], str, str, str, float, str, bytes | None, str | None]
# job_id, token, result (JSON)
Complete = tuple[Literal["complete"], str, str, bytes]
# job_id, token, error (JSON), retry_at
Fail = tuple[Literal["fail"], str, str, bytes, float | None]
# job_id, token, message
Requeue = tuple[Literal["requeue"], str, str, str]
# job_id, user_id (None: any owner)
Cancel = tuple[Literal["cancel"], str, str | None]
Retry = tuple[Literal["retry"], str, str | None]
Remove = tuple[Literal["remove"], str, str | None]
# user_id, statuses, limit
RemoveFinished = tuple[Literal["remove_finished"], str, list[str], int]
# {job_id: token}, lease_seconds
Renew = tuple[Literal["renew"], dict[str, str], float]
# expired_only
Recover = tuple[Literal["recover"], bool]
# a plugin's write op (tables.write_op): its name, its arguments
PluginOp = tuple[Literal["op"], str, tuple[Any, ...]]
Ping = tuple[Literal["ping"]]
# before (finished before this time), limit
Prune = tuple[Literal["prune"], float, int]
Settings = tuple[Literal["settings"]]
# the server is closing the store (its last write): the next start need not check the file
Stopping = tuple[Literal["stopping"]]
# Runs between two transactions, not in one (SQLite: copies the WAL back into the file).
Checkpoint = tuple[Literal["checkpoint"]]

Op = (
    Enqueue | EnqueueMany | Claim | Progress | Complete | Fail | Requeue | Cancel | Retry
    | Remove | RemoveFinished | Renew | Recover | PluginOp | Ping | Prune | Settings | Stopping
    | Checkpoint
)  # fmt: skip

# -- their results: each event written comes back as its seq ----------------------------------

Seq = int
JobAndSeqs = tuple[JobFields, list[Seq]]  # enqueue: no seq when an idempotency key matched
JobAndSeq = tuple[JobFields, Seq]
CheckpointResult = tuple[int, int, int, int]  # busy, WAL pages, pages copied, WAL bytes after


# -- which ops of a batch run first ------------------------------------------------------------

ENQUEUES = frozenset({"enqueue", "enqueue_many"})
# Ops an enqueue may run ahead of: they change jobs already made (a claim takes queued ones,
# and may as well take the new one), so none can depend on a job that enqueue makes or finds.
CROSSABLE = frozenset({"progress", "complete", "fail", "requeue", "renew", "claim", "ping"})


def enqueues_first(batch: Sequence[Op]) -> list[int]:
    """Indices of the enqueues in ``batch`` that run first, in their order: every one with
    nothing but crossable ops (and other enqueues) before it. A caller waits on an enqueue;
    nobody waits on the others, so its event is published and its caller answered first
    (``sqlite_link``), before the rest of a batch that other jobs' progress filled."""
    first: list[int] = []
    for i, op in enumerate(batch):
        if op[0] in ENQUEUES:
            first.append(i)
        elif op[0] not in CROSSABLE:
            break
    return first


def first_events(batch: Sequence[Op], first: Sequence[int], outcomes: Sequence[Any]) -> int:
    """How many of a reply's events (in seq order) the ``first`` ops made: theirs come first."""
    count = 0
    for i in first:
        ok, value = outcomes[i]
        if ok:
            made = [value] if batch[i][0] == "enqueue" else value
            count += sum(len(seqs) for _, seqs in made)
    return count


class Handlers(TypedDict):
    """What a writer runs each op with (each handler takes the whole op): a writer builds
    this table, so mypy checks every handler against its op's fields and result."""

    enqueue: Callable[[Enqueue], JobAndSeqs]
    enqueue_many: Callable[[EnqueueMany], list[JobAndSeqs]]
    claim: Callable[[Claim], list[JobAndSeq]]
    progress: Callable[[Progress], Seq]
    complete: Callable[[Complete], Seq]
    fail: Callable[[Fail], Seq]
    requeue: Callable[[Requeue], Seq]
    cancel: Callable[[Cancel], JobAndSeq]
    retry: Callable[[Retry], JobAndSeq]
    remove: Callable[[Remove], JobAndSeq]
    remove_finished: Callable[[RemoveFinished], list[Seq]]
    renew: Callable[[Renew], set[str]]
    recover: Callable[[Recover], list[Seq]]
    op: Callable[[PluginOp], Any]
    ping: Callable[[Ping], None]
    prune: Callable[[Prune], Pruned]
    settings: Callable[[Settings], dict[str, int | str]]
    stopping: Callable[[Stopping], None]


# -- building them from the Store's arguments ---------------------------------------------------


# Each raises InvalidPayload when a value that must be JSON is not.


def enqueue(new: NewJob) -> Enqueue:
    return ("enqueue", frames.new_job_fields(new))


def enqueue_many(news: Sequence[NewJob]) -> EnqueueMany:
    return ("enqueue_many", [frames.new_job_fields(new) for new in news])


def progress(job_id: str, token: str, update: ProgressUpdate) -> Progress:
    stage, percent, message, metadata, label = update
    data = None if metadata is None else json_bytes(dict(metadata), "metadata")
    if type(stage) is not str and type(stage) is not JobStage:  # an Enum call costs, per event
        stage = str(stage)
    label = None if label is None else str(label)
    return ("progress", job_id, token, stage, float(percent), str(message), data, label)


def complete(job_id: str, token: str, result: Any) -> Complete:
    return ("complete", job_id, token, json_bytes(result, "the result"))


def fail(job_id: str, token: str, error: Any, retry_at: float | None) -> Fail:
    return ("fail", job_id, token, json_bytes(error, "the error"), retry_at)

