"""The SQL of a PostgreSQL write batch (``pg_writer.Batch``): its reads and its one write.

Each write sends every column as one array, so a statement is the same for any number of rows
(prepared once per connection). Parameters, in order: the jobs' columns ($1 to $N), the
events' five ($N+1 to $N+5), the NOTIFY payload, the head expected, the users the batch adds
jobs for; with rows it knows, their columns and xmins; a lone batch's count of jobs added per
user, quota and count of known rows.
"""

from __future__ import annotations

from ..models import JOB_FIELDS
from .pg_schema import LOCK_SPACE, SEQ_LOCK
from .schema import JOB_COLUMNS

_COLUMNS = JOB_COLUMNS.split(", ")
_ARRAY = {"TEXT": "text[]", "REAL": "float8[]", "INTEGER": "int8[]"}
_JOB_ARRAYS = ", ".join(
    f"${i}::{_ARRAY[f.metadata['sql'].split()[0]]}" for i, f in enumerate(JOB_FIELDS, start=1)
)
N_JOB = len(JOB_FIELDS)  # the columns of a job row
_HEAD = (
    "GREATEST(COALESCE((SELECT MAX(seq) FROM events), 0), "
    "(SELECT value::bigint FROM meta WHERE key='pruned'))"
)
HEAD = f"SELECT {_HEAD}"
# The head as a lone write sees it once it holds the seq lock. Its snapshot may predate a
# prune committed while it waited: the events the prune deleted (another node's newest among
# them) can no longer collide with its own, so the mark is read as committed now (FOR SHARE
# reads the row's newest version), and a higher mark makes the head differ from the guess.
_HEAD_LOCKED = (
    "GREATEST(COALESCE((SELECT MAX(seq) FROM events), 0), "
    "(SELECT value::bigint FROM meta WHERE key='pruned' FOR SHARE))"
)
# The batch's job rows, its events and its NOTIFY (when $N+6 is not null) in one statement:
# each column goes as one array, so the statement is the same for any number of rows. It
# answers the head as it found it: given a head to expect ($N+7), it writes nothing unless
# the head is that. It also answers the open jobs of each user named in $N+8 (a JSON object
# of those with any), as they were before it.
_EXPECTED = f"(SELECT ${N_JOB + 7}::int8 IS NULL OR head = ${N_JOB + 7}::int8 FROM h)"
OPEN_SQL = "status IN ('queued', 'active')"  # the jobs the quota counts (index jobs_open_user)
# Grouped, not one count per user in a correlated subquery: that form made PostgreSQL plan the
# whole write again at each run (0.85 ms a write instead of 0.45, measured on a node's schema).
_GROUPED = (
    f"(SELECT user_id, COUNT(*) AS n FROM jobs WHERE user_id = ANY(${N_JOB + 8}::text[]) "
    f"AND {OPEN_SQL} GROUP BY user_id) AS g"
)
_OPEN = f"(SELECT jsonb_object_agg(g.user_id, g.n) FROM {_GROUPED})"
_XID = "txid_current() % 4294967296"  # this transaction's id as the xmin of its rows shows it
# With rows this node knows without reading them under a lock (``Batch``'s ``known``, and a
# lone batch's reads): each is written only if the row is still the version read (its xmin,
# the id of the transaction that made it: any change by anyone makes a new one), so a job
# another node cancelled, claimed or recovered meanwhile is not overwritten.
_KNOWN_ARRAYS = ", ".join(
    f"${i}::{_ARRAY[f.metadata['sql'].split()[0]]}"
    for i, f in enumerate(JOB_FIELDS, start=N_JOB + 9)
)
_FENCE = 2 * N_JOB + 9  # the known rows' xmins; then a lone batch's three parameters
# A lone batch's quota, under the lock: every user it adds jobs for ($N+8, with as many added
# each in $G+1) stays within $G+2 (NULL: no limit) with the open jobs they had.
_QUOTA_OK = (
    f"COALESCE((SELECT bool_and(${_FENCE + 2}::int8 IS NULL OR COALESCE(g.n, 0) + a.n <= "
    f"${_FENCE + 2}::int8) FROM unnest(${N_JOB + 8}::text[], ${_FENCE + 1}::int8[]) AS a(u, n) "
    f"LEFT JOIN {_GROUPED} ON g.user_id = a.u), true)"
)
_GO = f"(SELECT ok AND head = ${N_JOB + 7}::int8 FROM h)"
MOVED = "jobserver: a row changed since it was read: "


def _write(head: str, go: str, known: bool, answer: str) -> str:
    """The write statement: ``head`` makes ``h``, nothing is written unless ``go``."""
    k = (
        f"k AS (UPDATE jobs SET ({', '.join(_COLUMNS[1:])}) = ("
        + ", ".join(f"x.{c}" for c in _COLUMNS[1:])
        + f") FROM unnest({_KNOWN_ARRAYS}, ${_FENCE}::text[]) AS x({JOB_COLUMNS}, xid) "
        f"WHERE jobs.id = x.id AND jobs.xmin::text = x.xid AND {go} RETURNING 1), "
    )
    return (
        f"WITH h AS ({head}), {k if known else ''}"
        f"j AS (INSERT INTO jobs ({JOB_COLUMNS}) SELECT * FROM unnest({_JOB_ARRAYS}) "
        f"WHERE {go} ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS if c != "id")
        + "), e AS (INSERT INTO events (seq, type, job_id, user_id, data) SELECT * FROM "
        f"unnest(${N_JOB + 1}::int8[], ${N_JOB + 2}::text[], ${N_JOB + 3}::text[], "
        f"${N_JOB + 4}::text[], ${N_JOB + 5}::bytea[]) WHERE {go}) "
        f"SELECT head, (SELECT pg_notify('jobserver_events', ${N_JOB + 6}::text) "
        f"WHERE ${N_JOB + 6}::text IS NOT NULL), {answer}, {_XID} FROM h"
    )


WRITE = _write(f"SELECT {_HEAD} AS head", _EXPECTED, False, _OPEN)
# ... and the count of the known rows written.
WRITE_KNOWN = _write(
    f"SELECT {_HEAD} AS head", _EXPECTED, True, f"{_OPEN}, (SELECT COUNT(*) FROM k)"
)
# A lone batch: the write is its transaction, which takes the seq lock before it writes. Its
# snapshot may predate the lock: if another node committed events meanwhile, its seqs
# collide with theirs (a unique violation: made again, in a transaction). It writes nothing
# unless the head is the one guessed and the quota holds (it answers whether it does), and
# fails (``MOVED``) unless every row it read is still the version it read.
WRITE_LONE = _write(
    f"SELECT {_HEAD_LOCKED} AS head, {_QUOTA_OK} AS ok FROM "
    f"(SELECT pg_advisory_xact_lock({LOCK_SPACE}, {SEQ_LOCK})) AS l",
    _GO, True,
    f"ok, CASE WHEN NOT {_GO} OR (SELECT COUNT(*) FROM k) = ${_FENCE + 3}::int8 THEN 0 "
    f"ELSE ('{MOVED}' || (SELECT COUNT(*) FROM k))::int END",
)  # fmt: skip
COUNT_OPEN = f"SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND {OPEN_SQL}"
# One round trip: the simple protocol runs both; the lock is held from here to COMMIT. (Not
# with plan_cache_mode = force_generic_plan, tried in 42562d9: a node's POSTs went from 4.7 to
# 8 ms over its first 9,000 jobs, main's stayed near 6; on tables not yet analyzed, a plan
# made while they were small stays while they grow.)
BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_SPACE}, {SEQ_LOCK})"
SELECT_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs"
# A page of due jobs to claim: $1 when, $2 full types, $3 full users, $4 ids passed over, $5
# how many.
CLAIM_PAGE = (
    f"{SELECT_JOBS} WHERE status='queued' AND run_at<=$1 AND NOT (type = ANY($2)) "
    "AND NOT (user_id = ANY($3)) AND NOT (id = ANY($4)) "
    "ORDER BY run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED"
)
# The rows of the jobs a batch's one-job ops name, locked in id order. (One statement that
# also read the head and a claim's first page, 4d8898b and 0ba8c6e, cost more to plan at each
# run than the round trips it saved.)
SELECT_NAMED = f"{SELECT_JOBS} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
# A lone batch's reads: no lock, each row with its xmin (``WRITE_LONE`` checks it).
CLAIM_PAGE_LONE = CLAIM_PAGE.replace("SELECT ", "SELECT xmin::text, ", 1).removesuffix(
    " FOR UPDATE SKIP LOCKED"
)
SELECT_NAMED_LONE = f"SELECT xmin::text, {JOB_COLUMNS} FROM jobs WHERE id = ANY($1)"
TERMINAL_SQL = "('completed', 'failed', 'cancelled')"
