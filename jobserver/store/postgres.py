"""PostgreSQL backend: several server processes (nodes) on one database.

Writes: whatever a node's loop submitted during one turn goes in one transaction
(``pg_writer.Batch``). Each transaction takes the seq lock, so seq order is commit order.

Publishing, in seq order from this node's last published seq, whoever wrote the events: a
batch this node committed is published from its own rows when nothing below it is unpublished
(its head, the highest seq committed before it, read under the lock, is at most this node's
last published seq); otherwise, and when another node's ``NOTIFY jobserver_events`` arrives,
and at least every ``POLL_SECONDS``, the node reads the events table: a lost or coalesced
notification loses nothing. A write is answered only once this node has published every seq
up to the write's own, so no subscriber of this node sees its seq 50 before another node's 49
(``Store.on_commit``'s contract, kept across nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ..config import Settings
from ..errors import InvalidPayload, JobServerError, ServiceUnavailable
from ..models import ErrorDict, Event, EventType, Job, JobStatus, ResultDict
from ..tables import Tables, WriteOp, declared_in
from .answer import answer
from .claims import PerUser
from .hold import FOREGROUND, HOLD_MAX_OPS, Hold
from .pg_cluster import LIVE_NODES, PgCluster
from .pg_reads import PgReads
from .pg_schema import LIVE_SPACE, LOCK_SPACE, PG_CORE, migrate
from .pg_sql import HEAD
from .pg_writer import Batch, Op
from .protocol import NewJob, ProgressUpdate, Pruned
from .schema import CORE

log = logging.getLogger(__name__)

MAX_BATCH = 512
POLL_SECONDS = 1.0
READ_PAGE = 1000
CHANNEL = "jobserver_events"
HELLO = "hello"  # a node that starts NOTIFYs this: the others count the live nodes again
# A connection lost (or unusable after the server ended it): a batch that had not sent its
# commit is made again on another, at most RETRIES times, RETRY_SECONDS x attempt apart.
LOST = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
        asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError)  # fmt: skip
RETRIES = 2
RETRY_SECONDS = 0.05
Done = Callable[[Any, BaseException | None], None]


@dataclass(slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[Any] | None
    done: Done | None


class PostgresStore(PgCluster, PgReads):
    """Jobs and events in PostgreSQL, shared by every node.

    Args:
        url: a ``postgresql://`` URL (it may hold a password: never logged).
        node_id: this node's stable id; its lease tokens start with it, so at start it
            recovers its own jobs from a previous life at once.
        storage: plugins' storage modules (their tables and write ops).
        schema: the PostgreSQL schema to use (``search_path``); made when missing.
        max_open_jobs: the job quota: the most queued and active jobs one user may have,
            on every node (an enqueue or retry past it fails ``TooManyJobs``); None: none.
    """

    def __init__(self, url: str, *, node_id: str, storage: Sequence[str] = (),
                 schema: str = "public", max_open_jobs: int | None = None) -> None:  # fmt: skip
        self.url = url
        self.max_open_jobs = max_open_jobs
        self.node_id = node_id
        self.storage = tuple(storage)
        self.schema = schema
        self._epoch = ""
        self._publish: Callable[[list[Event]], None] = lambda events: None
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._pending: list[_Pending] = []
        self._wake_writer = asyncio.Event()
        self._held = asyncio.Event()  # a held batch goes: a foreground op, or enough ops
        self._wake_reader = asyncio.Event()
        self._published = 0
        self._pruned = 0
        self._waiting: list[tuple[int, _Pending, bool, Any]] = []
        self._writing: Batch | None = None
        self._known = 0  # the highest seq this node knows committed
        self._guessing = True  # whether a batch guesses the head (``pg_writer.Batch``)
        # The rows of the jobs this node holds leases on, as its last batch wrote them, and
        # that batch's xmin: their progress and outcome need no read (``pg_writer.Batch``).
        self._leased: dict[str, tuple[Job, str]] = {}
        # Whether this node is the only one on its schema, as last counted (every
        # POLL_SECONDS, and when a node says HELLO): then its batches NOTIFY nobody.
        self._alone = False
        self._counted = float("-inf")
        self._tasks: list[asyncio.Task[None]] = []
        self._tokens = itertools.count(1)
        self._plugin_ops: dict[str, WriteOp] = {}
        self._tables: list[Tables] = [CORE, PG_CORE]
        self._closing = False
        self._problem: str | None = None

    def on_commit(self, publish: Callable[[list[Event]], None]) -> None:
        self._publish = publish

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def problem(self) -> str | None:
        return self._problem

    # -- life cycle ------------------------------------------------------------------------

    async def _init(self, conn: asyncpg.Connection) -> None:
        await conn.execute(f'SET search_path TO "{self.schema}"')

    async def open(self) -> None:
        for name in self.storage:
            tables, ops = declared_in(importlib.import_module(name))
            self._tables += tables
            self._plugin_ops.update(ops)
        try:
            setup = await asyncpg.connect(self.url)
        except (OSError, asyncpg.PostgresError) as exc:
            raise ServiceUnavailable(f"cannot reach PostgreSQL: {exc}") from None
        try:
            # Another node may make it at the same moment.
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await setup.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await self._init(setup)
            await migrate(setup, self._tables)
            await setup.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', $1), ('pruned', '0') "
                "ON CONFLICT (key) DO NOTHING", uuid.uuid4().hex,
            )  # fmt: skip
            meta = dict(await setup.fetch("SELECT key, value FROM meta"))
        finally:
            await setup.close()
        self._epoch = meta["epoch"]
        self._pruned = int(meta["pruned"])
        # A startup setting, not a SET: the pool resets a connection's settings on release.
        self._pool = await asyncpg.create_pool(
            self.url, min_size=2, max_size=8, reset=_reuse,
            server_settings={**self._settings(), "search_path": self.schema},
        )  # fmt: skip
        self._published = await self._head()
        try:
            await self._listen()
        except BaseException:
            await self._pool.close()
            raise
        self._tasks = [
            asyncio.create_task(self._writer(), name="pg-writer"),
            asyncio.create_task(self._reader(), name="pg-reader"),
        ]

    async def close(self) -> None:
        self._closing = True
        self._wake_writer.set()
        self._held.set()
        if self._tasks:
            await asyncio.gather(self._tasks[0], return_exceptions=True)  # writes drain
            self._wake_reader.set()
            self._tasks[1].cancel()
            await asyncio.gather(self._tasks[1], return_exceptions=True)
        self._fail_all(ServiceUnavailable("the store is closed"))
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        if self._pool is not None:
            await self._pool.close()

    def _settings(self) -> dict[str, str]:
        # Named in pg_stat_activity, so an operator (or a test) can tell the nodes apart.
        return {"application_name": f"jobserver:{self.node_id}"[:63]}

    async def _listen(self) -> None:
        """The node's own connection: it holds the node id's lock for as long as it lives (a
        second live node with the same id cannot start: it would recover this one's running
        jobs as its own), the schema's live lock shared (``pguserdata`` waits for none) and
        hears other nodes' NOTIFY."""
        listener = await asyncpg.connect(self.url, server_settings=self._settings())
        locks = (
            ("pg_try_advisory_lock", LOCK_SPACE, self.node_id,
             f"another live node uses the node id {self.node_id!r}; give each its own"),
            ("pg_try_advisory_lock_shared", LIVE_SPACE, self.schema,
             "a command that needs every node stopped (server.py user merge or rename) is "
             f"running on the schema {self.schema!r}; start this node once it has finished"),
        )  # fmt: skip
        for take, space, key, refused in locks:
            if not await listener.fetchval(f"SELECT {take}($1, hashtext($2))", space, key):
                await listener.close()
                raise ServiceUnavailable(refused)
        await listener.add_listener(CHANNEL, self._notified)
        self._listener = listener
        await listener.execute(f"NOTIFY {CHANNEL}, '{HELLO}'")  # the others count again

    async def _count(self) -> None:
        """Count the live nodes of the schema (``live_nodes``, ``_alone``)."""
        assert self._pool is not None
        self._counted = asyncio.get_running_loop().time()
        nodes = int(await self._pool.fetchval(LIVE_NODES, LIVE_SPACE, self.schema) or 0)
        self.live_nodes = max(1, nodes)
        listening = self._listener is not None and not self._listener.is_closed()
        self._alone = listening and nodes <= 1

    async def _relisten(self) -> None:
        """After the database restarted or cut this connection: take it up again (meanwhile
        the reader polls, so nothing is missed)."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            await self._listen()
            self._problem = None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, JobServerError) as exc:
            self._problem = f"PostgreSQL connection lost: {exc}"

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        # The payload is the batch's last seq. This node's own batches need no reading: they
        # are published as they commit (or, after another node's, the writer wakes the
        # reader), and their NOTIFY may come in before the COMMIT's answer.
        own = self._published if self._writing is None else max(self._published,
                                                                 self._writing.seq)  # fmt: skip
        if payload == HELLO:
            self._alone, self._counted = False, float("-inf")  # counted at the reader's turn
        if not payload.isdigit() or int(payload) > own:
            self._wake_reader.set()

    async def _head(self) -> int:
        assert self._pool is not None
        value = await self._pool.fetchval(HEAD)
        return int(value or 0)

    # -- writes ------------------------------------------------------------------------------

    def _submit(self, op: Op, done: Done | None = None) -> asyncio.Future[Any] | None:
        if self._closing:
            error = ServiceUnavailable("the store is closed")
            if done is not None:
                done(None, error)
                return None
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed
        future = None if done is not None else asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(op, future, done))
        self._wake_writer.set()
        if op[0] in FOREGROUND or len(self._pending) >= HOLD_MAX_OPS:
            self._held.set()
        return future

    async def _write(self, op: Op) -> Any:
        future = self._submit(op)
        assert future is not None
        return await future

    async def _writer(self) -> None:
        """One batch at a time: what was submitted meanwhile goes into the next. Soon after
        an op an HTTP request waits on, a batch of others (claims, completions, progress) is
        held as on SQLite (``hold.py``), for the next such op to share its commit."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        hold = Hold()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake_writer.clear()
                await self._wake_writer.wait()
                continue
            await asyncio.sleep(0)  # let the rest of this turn's submissions in
            started = loop.time()
            wait = hold.seconds(started, self._foreground(), len(self._pending))
            known = max(self._known, self._published)
            guess = known if self._guessing else None
            early = None
            if wait and not self._closing:
                self._held.clear()
                # Meanwhile the batch's reads are made (``Batch.start``).
                early = asyncio.create_task(self._batch(guess, [p.op for p in self._pending]))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._held.wait()
                if self._foreground():
                    hold.last_foreground = loop.time()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            began = loop.time()
            try:
                outcomes, rows, writing = await self._commit(batch, guess, early)
                writing.cache_rows()
                # Guess the next head while no other node's write came in between.
                self._guessing = writing.head == known
                if rows:
                    self._known = max(self._known, rows[-1][0])
                self._problem = None
            except Exception as exc:  # the writer never stops: the next batch may succeed
                self._writing = None
                self._leased.clear()  # it may have committed: what the rows are is unknown
                self._wake_reader.set()  # in case it skipped a NOTIFY meanwhile
                self._problem = f"PostgreSQL write failed: {exc}"
                log.error("a write batch failed: %r", exc)
                error = ServiceUnavailable(f"the store could not write: {exc}")
                for pending in batch:
                    self._settle(pending, False, error)
                await asyncio.sleep(0.2)
                continue
            # The events as committed (the same bytes the reader will publish); each caller is
            # answered once this node has published up to the batch's last seq.
            events = {r[0]: Event(r[0], EventType(r[1]), r[2], r[3], r[4]) for r in rows}
            last = rows[-1][0] if rows else 0
            for pending, (ok, value) in zip(batch, outcomes, strict=True):
                self._waiting.append((last, pending, ok, _decoded(pending.op[0], ok, value,
                                                                  events)))  # fmt: skip
            if rows and writing.head <= self._published:
                # Every seq below the batch is published: its own rows follow them at once.
                self._deliver([e for e in events.values() if e.seq > self._published])
            elif rows:
                self._wake_reader.set()  # another node's events came first: read them
            self._writing = None
            self._release()
            hold.took = loop.time() - began

    async def _commit(
        self, batch: list[_Pending], guess: int | None,
        early: asyncio.Task[tuple[asyncpg.Connection, Batch]] | None,
    ) -> tuple[list[Any], list[tuple[Any, ...]], Batch]:
        """Run ``batch`` in one commit: on ``early``'s connection and batch if given. A batch
        whose connection is lost before its commit was sent (the database restarting, an
        operator's pg_terminate_backend, a pooled connection the server had closed) cannot
        have committed: it is made again on another connection, at most ``RETRIES`` times,
        instead of failing its callers. Once the commit (or a lone batch's write) is sent, a
        lost connection leaves the outcome unknown: the batch fails. So does one with a
        plugin op, which is code that should run once."""
        assert self._pool is not None
        ops = [p.op for p in batch]
        attempt = 0
        while True:
            writing: Batch | None = None
            begun, early = early, None
            try:
                conn, writing = await (begun or self._batch(guess, []))
                try:
                    self._writing = writing
                    outcomes, rows = await writing.run(ops)
                except BaseException:
                    # Cut, or left mid-operation: never back to the pool for another to use
                    # (a connection the server cut is already back in it, detached).
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                    raise
                finally:
                    await self._pool.release(conn)
                return outcomes, rows, writing
            except LOST as exc:
                once = writing is not None and (writing.committing or not writing.plain)
                if once or attempt == RETRIES or self._closing:
                    raise
                attempt += 1
                log.warning("a write batch lost its connection before its commit; making it "
                            "again on another: %r", exc)  # fmt: skip
                self._leased.clear()  # read the rows again: nothing is known of the cut one
                await asyncio.sleep(RETRY_SECONDS * (attempt - 1))

    async def _batch(self, guess: int | None, ops: list[Op]) -> tuple[asyncpg.Connection, Batch]:
        """A batch on a connection of the pool, ``ops`` begun (``Batch.start``)."""
        assert self._pool is not None
        conn = await self._pool.acquire()
        try:
            batch = Batch(conn, self.node_id, self._tokens, self._plugin_ops, guess,
                          self.max_open_jobs, self._leased, self._alone)  # fmt: skip
            if ops:
                await batch.start(ops)
        except BaseException:  # cancelled (the store closing): the connection goes back
            await self._pool.release(conn)
            raise
        return conn, batch

    def _foreground(self) -> bool:
        return any(p.op[0] in FOREGROUND for p in self._pending)

    def _deliver(self, events: list[Event]) -> None:
        """Publish ``events``: committed, in seq order, each above every seq published."""
        if not events:
            return
        try:
            self._publish(events)
        except Exception:
            log.exception("publishing committed events failed")
        self._published = events[-1].seq

    def _release(self) -> None:
        """Answer the writes whose events this node has published."""
        still = []
        for entry in self._waiting:
            if entry[0] <= self._published:
                self._answer(entry[1], entry[2], entry[3])
            else:
                still.append(entry)
        self._waiting = still

    def _answer(self, pending: _Pending, ok: bool, value: Any) -> None:
        if ok and pending.op[0] == "prune":
            self._pruned = max(self._pruned, value.through)
        self._settle(pending, ok, value)

    def _settle(self, pending: _Pending, ok: bool, value: Any) -> None:
        answer(pending.done, pending.future, ok, value)

    def _fail_all(self, error: JobServerError) -> None:
        for _, pending, _, _ in self._waiting:
            self._settle(pending, False, error)
        self._waiting = []
        waiting, self._pending = self._pending, []
        for pending in waiting:
            self._settle(pending, False, error)

    # -- reading the log back, and publishing it --------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake_reader.wait()
            except TimeoutError:
                pass
            self._wake_reader.clear()
            await self._relisten()
            try:
                if asyncio.get_running_loop().time() - self._counted >= POLL_SECONDS:
                    await self._count()
                while True:
                    events = await self.events_after(self._published, limit=READ_PAGE)
                    if not events:
                        break
                    # The writer may have published some of them meanwhile.
                    self._deliver([e for e in events if e.seq > self._published])
                    self._release()
                    if len(events) < READ_PAGE:
                        break
            except Exception as exc:  # the reader never stops: the next read may succeed
                self._problem = f"PostgreSQL read failed: {exc}"
                log.error("reading new events failed: %r", exc)
                await asyncio.sleep(0.2)

    # -- the Store protocol ------------------------------------------------------------------

    async def head_seq(self) -> int:
        return self._published

    async def seq_ceiling(self) -> int:
        return max(self._published, await self._head())

    async def pruned_through(self) -> int:
        rows = await self._read("SELECT value::bigint FROM meta WHERE key='pruned'")
        return max(self._pruned, int(rows[0][0]))

    async def enqueue(self, new: NewJob) -> tuple[Job, list[Event]]:
        _check_json(new.payload, "the payload")
        result: tuple[Job, list[Event]] = await self._write(("enqueue", new))
        return result

    async def enqueue_many(self, news: Sequence[NewJob]) -> list[tuple[Job, list[Event]]]:
        for new in news:
            _check_json(new.payload, "the payload")
        result: list[tuple[Job, list[Event]]] = await self._write(("enqueue_many", list(news)))
        return result

    async def claim(
        self, limit: int, lease_seconds: float, caps: Mapping[str, int] | None = None,
        per_user: PerUser | None = None,
    ) -> list[tuple[Job, Event]]:
        result: list[tuple[Job, Event]] = await self._write(
            ("claim", limit, lease_seconds, None if caps is None else dict(caps), per_user)
        )
        return result

    def progress(self, job_id: str, token: str, update: ProgressUpdate,
                 done: Callable[[Event | None, BaseException | None], None]) -> None:  # fmt: skip
        if update.metadata is not None:
            try:
                _check_json(dict(update.metadata), "metadata")
            except InvalidPayload as exc:
                done(None, exc)
                return
        self._submit(("progress", job_id, token, update), done)

    async def complete(self, job_id: str, token: str, result: ResultDict) -> Event:
        _check_json(result, "the result")
        event: Event = await self._write(("complete", job_id, token, result))
        return event

    async def fail(self, job_id: str, token: str, error: ErrorDict,
                   retry_at: float | None) -> Event:  # fmt: skip
        _check_json(error, "the error")
        event: Event = await self._write(("fail", job_id, token, error, retry_at))
        return event

    async def requeue(self, job_id: str, token: str, message: str) -> Event:
        event: Event = await self._write(("requeue", job_id, token, message))
        return event

    async def cancel(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._write(("cancel", job_id, user_id))
        return result

    async def retry(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._write(("retry", job_id, user_id))
        return result

    async def remove(self, job_id: str, user_id: str | None) -> tuple[Job, Event]:
        result: tuple[Job, Event] = await self._write(("remove", job_id, user_id))
        return result

    async def remove_finished(
        self, user_id: str, statuses: Collection[JobStatus], limit: int
    ) -> list[Event]:
        values = [JobStatus(s).value for s in statuses]
        events: list[Event] = await self._write(("remove_finished", user_id, values, limit))
        return events

    async def renew(self, leases: Mapping[str, str], lease_seconds: float) -> set[str]:
        lost: set[str] = await self._write(("renew", dict(leases), lease_seconds))
        return lost

    async def recover(self, *, expired_only: bool) -> list[Event]:
        events: list[Event] = await self._write(("recover", expired_only))
        return events

    async def write(self, op: str, *args: Any) -> Any:
        return await self._write(("op", op, args))

    async def ping(self) -> None:
        await self._write(("ping",))

    async def prune(self, before: float, *, limit: int = 1000) -> Pruned:
        pruned: Pruned = await self._write(("prune", before, limit))
        return pruned

    async def checkpoint(self) -> int:
        return 0  # PostgreSQL manages its own journal


def node_id(settings: Settings) -> str:
    """The configured node id, else the one kept in the data dir (made on first start)."""
    if settings.node_id:
        return settings.node_id
    path = settings.data_dir / "node-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    value = f"node-{uuid.uuid4().hex[:12]}"
    path.write_text(value)
    return value


async def _reuse(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is (asyncpg still rolls back a transaction
    left open), without the reset query's round trip on every release: only this store uses
    its pool, and it changes no session state but the duty locks, which it unlocks."""


def _decoded(kind: str, ok: bool, value: Any, events: Mapping[int, Event]) -> Any:
    """An op's result as the caller gets it: events (written as their seq) as Events."""
    if not ok:
        return value
    if kind in ("progress", "complete", "fail", "requeue"):
        return events[value]
    if kind == "enqueue":
        return value[0], [events[s] for s in value[1]]
    if kind == "enqueue_many":
        return [(job, [events[s] for s in seqs]) for job, seqs in value]
    if kind in ("cancel", "retry", "remove"):
        return value[0], events[value[1]]
    if kind == "claim":
        return [(job, events[seq]) for job, seq in value]
    if kind in ("recover", "remove_finished"):
        return [events[s] for s in value]
    return value


def _check_json(value: Any, what: str) -> None:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise InvalidPayload(f"{what} must be JSON: {exc}") from None
