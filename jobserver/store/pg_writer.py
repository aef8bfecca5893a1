"""One PostgreSQL write transaction: a batch of ops, their job rows and events, one commit.

Every change is ``store/changes.py``'s, as on SQLite. The transaction takes the seq lock
(``pg_advisory_xact_lock``) before it writes, so seqs are handed out in commit order across
every node: no reader can see seq 42 committed while 41 is still to come. Job rows changed by
the batch are written once at its end (or before an op that reads the tables itself), with
the events and the ``NOTIFY``, in one statement (``pg_sql``).

A lone batch (enqueues, claims, a lease holder's progress and outcome; the head guessed) has
no transaction but its write's: it reads without locks, and its one write statement takes the
lock, checks the head and that each row it read or knew is still the version it had (its
xmin), and commits. One round trip for enqueues and progress, two with a claim's page (made
while the writer holds the batch for the op a request waits on, ``Batch.start``). Any
other batch is ``BEGIN`` with the lock, its reads under row locks (the rows of the jobs its
one-job ops name in one statement, a claim's pages), the write (which checks the head the
batch guessed, in a snapshot taken once the lock is held), ``COMMIT``; a round trip more
when the head is read first (``Batch``'s ``guess``). A lone batch that finds a row changed,
or the head moved, is made again as such a batch.

The job quota is kept here too, under the same lock, so it holds across nodes: the write
also counts the open jobs of each user the batch adds jobs for, as they were before it. If
that count and the jobs added pass the limit, the batch is rolled back (a lone one writes
nothing) and made again counting before each op that adds jobs (a round trip each, only near
the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from ..errors import JobServerError, TooManyJobs
from ..models import ErrorDict, Job, ResultDict, encode_event_row, iso
from ..tables import WriteOp
from . import changes
from .claims import ClaimBudget, PerUser
from .pg_schema import placeholders
from .pg_sql import (
    BEGIN_LOCKED,
    CLAIM_PAGE,
    CLAIM_PAGE_LONE,
    COUNT_OPEN,
    HEAD,
    MOVED,
    N_JOB,
    SELECT_JOBS,
    SELECT_NAMED,
    SELECT_NAMED_LONE,
    TERMINAL_SQL,
    WRITE,
    WRITE_KNOWN,
    WRITE_LONE,
)
from .protocol import NewJob, ProgressUpdate, Pruned
from .schema import insert_params, row_to_job

Op = tuple[Any, ...]
Outcome = tuple[bool, Any]

# Ops that read the tables themselves: the rows the batch changed are written first. A claim
# needs no such write: it passes over the jobs the batch changed (a job the batch made or
# requeued is claimed by a later batch, once its event woke a worker).
READING = frozenset({"renew", "recover", "prune", "op", "remove_finished"})
# Ops on one job (its id first), whose rows a batch locks and reads in one round trip at its
# start rather than one each: a busy node's batch holds many jobs' progress.
ONE_JOB = frozenset({"progress", "complete", "fail", "requeue", "cancel", "retry", "remove"})
# Ops a lone batch may hold (with a guessed head): none reads the tables but for the rows it
# writes, so the batch needs no transaction but its write's (``WRITE_LONE``): one round trip
# for an enqueue, or for a job's progress and outcome, two with a claim.
LONE = frozenset({"enqueue", "claim", "progress", "complete", "fail", "requeue"})
# Ops of a lease's holder: a job only these name in a batch needs no read when this node knows
# its row (``Batch``'s ``known``).
LEASED = frozenset({"progress", "complete", "fail", "requeue"})


def _lone(ops: Sequence[Op]) -> bool:
    """Whether a batch of ``ops`` may be lone (given a guessed head)."""
    return all(op[0] in LONE and (op[0] != "enqueue" or op[1].idempotency_key is None)
               for op in ops)  # fmt: skip


class PgTx:
    """A plugin write op's ``Tx`` on PostgreSQL. The op is plain (blocking) code: it runs in a
    thread, and each ``execute`` runs on the batch's connection in the event loop."""

    def __init__(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.loop = loop

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        future = asyncio.run_coroutine_threadsafe(self._run(sql, tuple(params)), self.loop)
        return future.result()

    async def _run(self, sql: str, params: tuple[Any, ...]) -> _Cursor:
        text = placeholders(sql)
        if sql.lstrip().upper().startswith("SELECT") or "RETURNING" in sql.upper():
            rows = [tuple(r) for r in await self.conn.fetch(text, *params)]
            return _Cursor(rows, len(rows))
        status = await self.conn.execute(text, *params)
        count = status.rsplit(" ", 1)[-1]
        return _Cursor([], int(count) if count.isdigit() else 0)


class _Cursor:
    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None


class _Stale(Exception):
    """The head was not the one guessed: the batch is made again (never a JobServerError,
    which an op's caller would get)."""


class _Moved(Exception):
    """A row this node knew was changed by someone else: the batch is made again, reading."""


class _OverQuota(Exception):
    """The batch may take a user past the job quota: it is made again, counting exactly."""


class Batch:
    """The ops of one transaction on ``conn``; ``run`` returns each op's outcome and the
    events committed (as rows: seq, type, job id, user id, data). ``head`` is then the
    highest seq committed before the batch (every seq up to it committed before it).

    With a ``guess`` of the head (the highest seq this node knows committed), the batch
    does not read the head first: its first write checks it, under the lock, and writes
    nothing if it differs; the transaction is then rolled back and the batch made again
    after reading the head. A round trip fewer while no other node writes in between. Plugin
    ops (arbitrary code, which should run once) never guess, and their batch counts the job
    quota exactly from the start.

    With ``known`` rows (the jobs this node holds leases on, as it last wrote them, with the
    id of the transaction that wrote them), a job only a lease's holder's ops name is not read:
    its write checks, under the row's lock, that the row is still that version, else the
    batch is rolled back, ``known`` cleared and the batch made again reading every row.

    Args:
        conn: an asyncpg connection, in no transaction.
        token_prefix: this node's lease token prefix (its node id), so it can tell its own.
        plugin_ops: the plugins' write ops by name.
        guess: the head this node expects, or None to read it.
        max_open: the most queued and active jobs a user may have (``TooManyJobs`` for an
            enqueue or retry past it), or None for no limit.
        known: rows by job id with the xmin they were written with (``cache_rows`` keeps it).
        alone: whether this node is the only one on its schema (as it last counted): its
            batches NOTIFY nobody.
    """

    def __init__(self, conn: Any, token_prefix: str, tokens: itertools.count[int],
                 plugin_ops: Mapping[str, WriteOp], guess: int | None = None,
                 max_open: int | None = None,
                 known: dict[str, tuple[Job, str]] | None = None,
                 alone: bool = False) -> None:  # fmt: skip
        self.conn = conn
        self.alone = alone
        self.known = {} if known is None else known
        self._fence: dict[str, str] = {}  # ids read from ``known``, not yet written: their xmin
        self._wrote: dict[str, Job] = {}  # every row this transaction wrote, as last written
        self._xid = ""  # this transaction's id as a row's xmin shows it
        self._reread = False  # whether an op read rows anew (a renew's): keep none known
        self._lone = False  # a lone batch (``LONE``): its write is its transaction
        # Whether the commit (a lone batch's write) was sent: a connection lost after it
        # leaves the outcome unknown, one lost before it means nothing was committed.
        self.committing = False
        self.plain = True  # no plugin op (code that should run once): ``run`` says
        self.token_prefix = token_prefix
        self.tokens = tokens
        self.plugin_ops = plugin_ops
        self.guess = guess
        self.max_open = max_open
        self._exact = False  # count each user's open jobs before each op that adds some
        self._added: dict[str, int] = {}  # jobs added per user since the last write
        self.seq = 0
        self.head = 0
        self._unchecked: int | None = None  # the guessed head, until a write checked it
        self._dirty: dict[str, Job] = {}
        self._rows: dict[str, Job | None] = {}  # rows as this transaction last wrote or read them
        self._events: list[tuple[int, str, str, str, bytes]] = []
        self._written = 0
        self._stamp = ""
        self._early: list[Outcome] = []  # the outcomes of the ops ``start`` ran
        self._ops: dict[str, Callable[..., Any]] = {
            "enqueue": self.enqueue, "enqueue_many": self.enqueue_many, "claim": self.claim,
            "progress": self.progress,
            "complete": self.complete, "fail": self.fail, "requeue": self.requeue,
            "cancel": self.cancel, "retry": self.retry, "renew": self.renew,
            "remove": self.remove, "remove_finished": self.remove_finished,
            "recover": self.recover, "op": self.plugin_op, "ping": self.ping,
            "prune": self.prune,
        }  # fmt: skip

    async def start(self, ops: Sequence[Op]) -> None:
        """Run the first ``ops`` of a lone batch now, while the writer holds it for the op a
        request waits on (``hold.py``): their reads (a claim's pages, rows not known) are
        done before that op comes, and ``run`` goes on from them. Nothing is done for ops a
        lone batch cannot hold, or when the batch reads the head; if a read fails, ``run``
        makes the batch from the start."""
        if self.guess is None or not _lone(ops):
            return
        self._lone = True
        try:
            self.head = self._unchecked = self.guess
            self.seq, self._stamp = self.head, iso(time.time()) or ""
            await self._prefetch(ops)
            self._early = [await self._step(op) for op in ops]
        except Exception:
            self._early = []
            self._reset()

    async def run(self, ops: Sequence[Op]) -> tuple[list[Outcome], list[tuple[Any, ...]]]:
        self.plain = plain = all(op[0] != "op" for op in ops)
        guess = self.guess if plain else None
        self._exact = not plain
        self._lone = guess is not None and _lone(ops)
        early, self._early = self._early, []
        if early and not self._lone:  # an op came that a lone batch cannot hold
            early = []
            self._reset()
        while True:
            try:
                if early:
                    early, done = [], early
                    return await self._go_on(ops[len(done) :], done)
                return await self._run(ops, guess)
            except _Stale:
                guess = None
            except _OverQuota:
                guess, self._exact = None, True
            except _Moved:
                self.known.clear()
            self._lone = False  # made again in a transaction, its rows read under their locks
            self._reset()

    def _reset(self) -> None:
        self.committing = False  # what was sent was refused: nothing committed
        self._dirty, self._events, self._written, self._added = {}, [], 0, {}
        self._rows, self._fence, self._wrote, self._reread = {}, {}, {}, False

    async def _go_on(
        self, ops: Sequence[Op], done: list[Outcome]
    ) -> tuple[list[Outcome], list[tuple[Any, ...]]]:
        """A lone batch ``start`` began: the rest of its ops, then its write."""
        await self._prefetch(ops)
        results = done + [await self._step(op) for op in ops]
        await self._flush(notify=str(self.seq) if self._events and not self.alone else None)
        return results, self._events

    async def _step(self, op: Op) -> Outcome:
        try:
            return True, await self._ops[op[0]](*op[1:])
        except JobServerError as exc:  # raised before the op wrote anything
            return False, exc

    async def _run(
        self, ops: Sequence[Op], guess: int | None
    ) -> tuple[list[Outcome], list[tuple[Any, ...]]]:
        if not self._lone:
            await self.conn.execute(BEGIN_LOCKED)
        try:
            if guess is None:
                self.head = int(await self.conn.fetchval(HEAD) or 0)
            else:
                self.head = self._unchecked = guess
            self.seq = self.head
            self._stamp = iso(time.time()) or ""
            await self._prefetch(ops)
            results: list[Outcome] = []
            for op in ops:
                if op[0] in READING:
                    await self._flush()
                    self._rows = {}  # the op may change rows itself (a renew's expiry)
                    self._fence, self._reread = {}, True
                results.append(await self._step(op))
            await self._flush(notify=str(self.seq) if self._events and not self.alone else None)
            if not self._lone:
                self.committing = True
                await self.conn.execute("COMMIT")
        except BaseException:
            if not self._lone and not self.conn.is_closed():
                with contextlib.suppress(Exception):
                    await self.conn.execute("ROLLBACK")
            raise
        return results, self._events

    async def _flush(self, notify: str | None = None) -> None:
        if not self._dirty and self._written == len(self._events) and notify is None:
            return
        fence = self._fence
        jobs = [insert_params(job) for job in self._dirty.values() if job.id not in fence]
        events = self._events[self._written :]
        columns = [list(c) for c in zip(*jobs, strict=True)] if jobs else [[]] * N_JOB
        rows = [list(c) for c in zip(*events, strict=True)] if events else [[]] * 5
        expected, self._unchecked = self._unchecked, None
        users = list(self._added)
        args = [*columns, *rows, notify, expected, users]
        fenced = [job for job in self._dirty.values() if job.id in fence]
        params = [(*insert_params(job), fence.pop(job.id)) for job in fenced]
        if fenced or self._lone:
            args += [list(c) for c in zip(*params, strict=True)] if params else [[]] * (N_JOB + 1)
        if self._lone:
            args += [[self._added[u] for u in users], self.max_open, len(fenced)]
            head, ok, xid = await self._write_lone(args)
            counts, matched = None, len(fenced)
        elif fenced:
            head, _, counts, matched, xid = await self.conn.fetchrow(WRITE_KNOWN, *args)
        else:
            head, _, counts, xid = await self.conn.fetchrow(WRITE, *args)
            matched = 0
        if expected is not None and head != expected:
            self.head = int(head)
            raise _Stale
        if matched != len(fenced):
            raise _Moved
        if self._lone and not ok:
            raise _OverQuota
        self._xid = str(xid)
        self._wrote.update(self._dirty)
        # Conservative: the jobs this batch finished before adding these are still counted.
        if self.max_open is not None and users:
            open_jobs = orjson.loads(counts) if counts else {}
            if any(open_jobs.get(u, 0) + n > self.max_open for u, n in self._added.items()):
                raise _OverQuota
        self._rows.update(self._dirty)
        self._dirty, self._added = {}, {}
        self._written = len(self._events)

    async def _room(self, user_id: str, count: int) -> None:
        """Before an op adds ``count`` jobs of ``user_id``: counted now when exact (else at
        the next write), ``TooManyJobs`` when they do not fit."""
        if self.max_open is None or count == 0:
            return
        if not self._exact:
            self._added[user_id] = self._added.get(user_id, 0) + count
            return
        await self._flush()
        if int(await self.conn.fetchval(COUNT_OPEN, user_id)) + count > self.max_open:
            raise TooManyJobs(self.max_open)

    async def _write_lone(self, args: list[Any]) -> tuple[int, bool, int]:
        self.committing = True
        try:
            head, _, ok, _, xid = await self.conn.fetchrow(WRITE_LONE, *args)
        except asyncpg.UniqueViolationError:  # its snapshot predates another node's events
            raise _Stale from None
        except asyncpg.InvalidTextRepresentationError as exc:
            if MOVED in str(exc):
                raise _Moved from None
            raise
        return int(head), bool(ok), int(xid)

    def cache_rows(self) -> None:
        """After the commit: keep in ``known`` the rows of this node's leases the batch wrote,
        forget the rest (none after a renewal, recovery or plugin op: they change rows)."""
        if self._reread:
            self.known.clear()
            return
        for job_id, job in self._wrote.items():
            token = job.lease_token
            if token is not None and token.startswith(self.token_prefix + "-"):
                self.known[job_id] = (job, self._xid)
            else:
                self.known.pop(job_id, None)

    async def _prefetch(self, ops: Sequence[Op]) -> None:
        """Lock and read the rows of every job the batch's one-job ops name, in one round trip
        (in id order), but for the ``known`` rows only a lease's holder's ops name."""
        named = {op[1] for op in ops if op[0] in ONE_JOB} - self._rows.keys() - self._dirty.keys()
        if self.known and named:
            others = {op[1] for op in ops if op[0] in ONE_JOB and op[0] not in LEASED}
            for job_id in named - others:
                entry = self.known.get(job_id)
                if entry is not None:
                    self._rows[job_id] = entry[0]
                    self._fence[job_id] = entry[1]
            named -= self._fence.keys()
        if not named:
            return
        self._rows.update(dict.fromkeys(named))
        if self._lone:
            for row in await self.conn.fetch(SELECT_NAMED_LONE, list(named)):
                job = row_to_job(tuple(row)[1:])
                self._rows[job.id] = job
                self._fence[job.id] = row[0]
            return
        for row in await self.conn.fetch(SELECT_NAMED, sorted(named)):
            job = row_to_job(tuple(row))
            self._rows[job.id] = job

    async def _load(self, job_id: str) -> Job | None:
        job = self._dirty.get(job_id)
        if job is not None:
            return job
        if job_id in self._rows:
            return self._rows[job_id]
        row = await self.conn.fetchrow(f"{SELECT_JOBS} WHERE id=$1 FOR UPDATE", job_id)
        job = None if row is None else row_to_job(tuple(row))
        self._rows[job_id] = job
        return job

    def _save(self, change: changes.Change) -> int:
        job, type_ = change
        self.seq += 1
        job.last_seq = self.seq
        row = encode_event_row(self.seq, type_, job, self._stamp)
        self._events.append((self.seq, type_.value, job.id, job.user_id, row[4]))
        self._dirty[job.id] = job
        return self.seq

    # -- ops: the same results as the SQLite writer's (jobs as Job, events as their seq) ----

    async def enqueue(self, new: NewJob) -> tuple[Job, list[int]]:
        if new.idempotency_key is not None:
            await self._flush()
            row = await self.conn.fetchrow(
                f"{SELECT_JOBS} WHERE user_id=$1 AND idempotency_key=$2",
                new.user_id, new.idempotency_key,
            )  # fmt: skip
            if row is not None:
                return row_to_job(tuple(row)), []
            for job in self._dirty.values():
                if job.user_id == new.user_id and job.idempotency_key == new.idempotency_key:
                    return job, []
        change = changes.new_job(new, time.time())
        await self._room(new.user_id, 1)
        seq = self._save(change)
        return change[0], [seq]

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, list[int]]]:
        """Every job made (or found by its key) before any is staged: one that cannot be
        made leaves the transaction as it was."""
        now = time.time()
        made: list[changes.Change | Job] = []
        await self._flush()
        for new in news:
            if new.idempotency_key is not None:
                row = await self.conn.fetchrow(
                    f"{SELECT_JOBS} WHERE user_id=$1 AND idempotency_key=$2",
                    new.user_id, new.idempotency_key,
                )  # fmt: skip
                if row is not None:
                    made.append(row_to_job(tuple(row)))
                    continue
            made.append(changes.new_job(new, now))
        added = Counter(m[0].user_id for m in made if not isinstance(m, Job))
        for user_id, count in added.items():
            await self._room(user_id, count)
        out: list[tuple[Job, list[int]]] = []
        for item in made:
            if isinstance(item, Job):
                out.append((item, []))
            else:
                seq = self._save(item)
                out.append((item[0], [seq]))
        return out

    async def claim(
        self, limit: int, lease_seconds: float, caps: dict[str, int] | None = None,
        per_user: PerUser | None = None,
    ) -> list[tuple[Job, int]]:
        now = time.time()
        budget = ClaimBudget(limit, caps, per_user)
        out: list[tuple[Job, int]] = []
        # Rows of earlier pages (claimed, or skipped for a full user or type), and the jobs
        # this batch changed and has not written yet, which the table shows as they were.
        seen: list[str] = list(self._dirty)
        while budget.more:
            rows = await self.conn.fetch(
                CLAIM_PAGE_LONE if self._lone else CLAIM_PAGE,
                now, budget.full_types(), budget.full_users(), seen, budget.want,
            )  # fmt: skip
            if self._lone:  # no lock taken: the write checks each row is still this one
                self._fence.update((row[1], row[0]) for row in rows)
                jobs = [row_to_job(tuple(row)[1:]) for row in rows]
            else:
                jobs = [row_to_job(tuple(row)) for row in rows]
            seen.extend(job.id for job in jobs)
            for job in budget.page(jobs):
                token = f"{self.token_prefix}-{next(self.tokens):x}"
                change = changes.claimed(job, token, lease_seconds, now)
                seq = self._save(change)
                out.append((change[0], seq))
        return out

    async def _leased(self, job_id: str, token: str) -> Job:
        return changes.leased(await self._load(job_id), job_id, token)

    async def progress(self, job_id: str, token: str, update: ProgressUpdate) -> int:
        job = await self._leased(job_id, token)
        return self._save(changes.progressed(job, update))

    async def complete(self, job_id: str, token: str, result: ResultDict) -> int:
        return self._save(changes.completed(await self._leased(job_id, token), result, time.time()))

    async def fail(self, job_id: str, token: str, error: ErrorDict, retry_at: float | None) -> int:
        job = await self._leased(job_id, token)
        return self._save(changes.failed(job, error, retry_at, time.time()))

    async def requeue(self, job_id: str, token: str, message: str) -> int:
        job = await self._leased(job_id, token)
        return self._save(changes.requeued(job, message, time.time()))

    async def _owned(
        self, job_id: str, user_id: str | None, apply: Callable[[Job, float], changes.Change]
    ) -> tuple[Job, int]:
        change = apply(changes.owned(await self._load(job_id), job_id, user_id), time.time())
        return change[0], self._save(change)

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, int]:
        return await self._owned(job_id, user_id, changes.cancelled)

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, int]:
        job = changes.owned(await self._load(job_id), job_id, user_id)
        change = changes.retried(job, time.time())
        await self._room(job.user_id, 1)
        return change[0], self._save(change)

    async def remove(self, job_id: str, user_id: str | None) -> tuple[Job, int]:
        return await self._owned(job_id, user_id, changes.removed)

    async def remove_finished(self, user_id: str, statuses: list[str], limit: int) -> list[int]:
        now = time.time()
        rows = await self.conn.fetch(
            f"{SELECT_JOBS} WHERE user_id=$1 AND removed_at IS NULL AND status = ANY($2) "
            "ORDER BY created_at, id LIMIT $3 FOR UPDATE", user_id, statuses, limit,
        )  # fmt: skip
        return [self._save(changes.removed(row_to_job(tuple(r)), now)) for r in rows]

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        expires = time.time() + lease_seconds
        ids, tokens = list(leases), [leases[i] for i in leases]
        kept = await self.conn.fetch(
            "UPDATE jobs SET lease_expires_at=$1 FROM unnest($2::text[], $3::text[]) "
            "AS l(id, t) WHERE jobs.id=l.id AND jobs.status='active' AND jobs.lease_token=l.t "
            "RETURNING jobs.id",
            expires, ids, tokens,
        )  # fmt: skip
        return set(ids) - {r[0] for r in kept}

    async def recover(self, expired_only: bool) -> list[int]:
        """Jobs whose worker is gone: this node's own (at start, from its previous life), or
        any node's whose lease expired (a node that died)."""
        now = time.time()
        if expired_only:
            rows = await self.conn.fetch(
                f"{SELECT_JOBS} WHERE status='active' AND lease_expires_at < $1 "
                "FOR UPDATE SKIP LOCKED", now,
            )  # fmt: skip
        else:
            rows = await self.conn.fetch(
                f"{SELECT_JOBS} WHERE status='active' AND starts_with(lease_token, $1) "
                "FOR UPDATE SKIP LOCKED", f"{self.token_prefix}-",
            )  # fmt: skip
        return [self._save(changes.worker_lost(row_to_job(tuple(r)), now)) for r in rows]

    async def plugin_op(self, name: str, args: tuple[Any, ...]) -> Any:
        try:
            op = self.plugin_ops[name]
        except KeyError:
            raise JobServerError(f"no write op {name!r}") from None
        tx = PgTx(self.conn, asyncio.get_running_loop())
        return await asyncio.to_thread(op, tx, *args)

    async def ping(self) -> None:
        await self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('ping', $1) ON CONFLICT (key) "
            "DO UPDATE SET value=excluded.value", repr(time.time()),
        )  # fmt: skip

    async def prune(self, before: float, limit: int) -> Pruned:
        ids = [r[0] for r in await self.conn.fetch(
            f"SELECT id FROM jobs WHERE status IN {TERMINAL_SQL} AND finished_at < $1 "
            "ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED", before, limit,
        )]  # fmt: skip
        pruned = int(await self.conn.fetchval("SELECT value::bigint FROM meta WHERE key='pruned'"))
        if not ids:
            return Pruned(0, 0, pruned)
        through = int(await self.conn.fetchval(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ANY($1)", ids) or 0)
        status = await self.conn.execute("DELETE FROM events WHERE job_id = ANY($1)", ids)
        await self.conn.execute("DELETE FROM jobs WHERE id = ANY($1)", ids)
        if through > pruned:
            pruned = through
            await self.conn.execute("UPDATE meta SET value=$1 WHERE key='pruned'", str(through))
        return Pruned(len(ids), int(status.rsplit(" ", 1)[-1]), pruned, tuple(ids))
