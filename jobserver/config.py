"""Settings: one frozen dataclass, read once from JOBSERVER_* variables and flags, validated."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "JOBSERVER_"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?/?")
HOST = re.compile(r"\*|(\*\.)?[a-z0-9_.-]+|\[?[0-9a-f:.]+\]?")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _tuple(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told; each field is also ``JOBSERVER_<NAME>``.

    Args:
        host: interface to listen on.
        port: TCP port to listen on (0 picks a free one).
        data_dir: where the SQLite file, uploads and the generated secret live.
        database_url: a ``postgresql://`` URL: keep jobs and events in PostgreSQL, shared by
            several server processes (nodes), instead of the SQLite file. Environment only
            (a systemd ``EnvironmentFile=``, say), never a flag, never logged (it may hold a
            password).
        database_schema: the PostgreSQL schema the tables live in (made when missing).
        node_id: this node's stable id on PostgreSQL (made once and kept in the data dir when
            empty); two live nodes never share one.
        upload_dir: a folder for uploads that every node mounts (a shared file system).
            Empty: the data dir's ``uploads`` folder on SQLite, the database on PostgreSQL.
        concurrency: how many jobs run at once in this process.
        demo_jobs: register the ``demo.*`` job types.
        jobs: modules (or ``jobserver.job_types`` entry points) whose job types to load; the
            flag may be repeated, the variable is comma-separated.
        disable_job_types: job types not to run, built-in ones included (``pdf-notes`` turns
            the PDF plugin off).
        lease_seconds: how long a claimed job's lease lasts without a heartbeat.
        shutdown_grace_seconds: how long shutdown waits for running jobs before requeueing them.
        max_body_bytes: largest JSON request body.
        secret: HS256 key for tokens; generated and kept in the data dir when empty. Set it to
            share it with an application that mints its own tokens (a sign-in method).
        open_signin: allow ``POST /api/session`` to sign in by name alone, so anyone can be
            anyone. Unset: on only while the server is local-only (listening on a loopback
            address, no ``allowed_hosts``, not ``behind_proxy``) and has no accounts or
            ``jwks_url``. Every start warns when it is on beyond this machine.
        token_ttl_seconds: lifetime of issued access tokens (refresh them with
            ``POST /api/session/refresh`` while the session lasts).
        session_ttl_seconds: how long a sign-in lasts: its refresh token's lifetime.
        behind_proxy: the server is reached through a reverse proxy, so a loopback address
            does not mean that only this machine can reach it.
        jwks_url: a JSON Web Key Set (an identity provider's ``jwks_uri``); RS256 and ES256
            tokens signed by its keys are accepted.
        jwt_audience: the ``aud`` claim JWKS-verified tokens must carry (empty: not checked).
        jwt_issuer: the ``iss`` claim JWKS-verified tokens must carry (empty: not checked).
        jwt_user_claim: the claim of a JWKS-verified token that names the user.
        signin_failures_per_account: failed password sign-ins to one account within
            ``signin_failure_window_seconds`` before it is refused (429) for the rest of it.
        signin_failures_per_address: failed password sign-ins from one address within the
            window before that address is refused (429).
        signin_failure_window_seconds: how long a failed sign-in counts against the limits.
        allowed_origins: Origins (``scheme://host[:port]``) besides the server's own whose pages
            may send cookie-authenticated writes, open the WebSocket and call the JSON API
            (CORS); ``*`` lets any page open the WebSocket and call the API, but never with
            the cookie or CORS credentials (it must send a token).
        allowed_hosts: ``Host`` names the server answers besides the IP address a connection
            arrived on (421 ``HOST_NOT_ALLOWED`` for others); empty means localhost, 127.0.0.1,
            [::1] and ``host``. ``*.example.com`` is a domain and its subdomains; ``*``
            answers any name (no defence against DNS rebinding).
        max_connections: open connections at most; 0 sizes it from the descriptor limit
            (raised to its hard limit at start), keeping room for files, pipes and accepts.
            At the cap the connection that has waited longest for a request is dropped.
        header_timeout_seconds: how long a new connection may take to send its first
            request's headers before it is closed.
        body_timeout_seconds: how long a request body may go without a byte arriving before
            the connection is closed.
        keepalive_timeout_seconds: how long an idle connection is kept open between requests
            (the next request's headers must arrive within it).
        max_header_bytes: longest request line or header line (400 above it).
        max_headers: most header lines in a request (400 above it).
        max_multipart_parts: most parts in a multipart upload, its files and fields together
            (400 ``TOO_MANY_PARTS`` above).
        multipart_overhead_bytes: bytes a multipart upload may have beyond
            ``max_upload_bytes`` for its fields and framing (413 above the sum; the files of
            one upload share ``max_upload_bytes``).
        ws_max_message_bytes: largest WebSocket message a client may send (1009 above it).
        ws_max_subscriptions: subscriptions one WebSocket may hold at once.
        ws_max_connections_per_user: WebSockets one user may hold open at once (1013 above).
        ws_queue_size: events queued for a socket that is not reading before it is closed
            with 4000 (resume from your last seq); progress coalesces from half of it.
        ws_heartbeat_seconds: how often the server pings every socket; one that has not
            answered the previous ping is cut, so a dead peer is freed within twice this.
        ws_auth_timeout_seconds: how long a socket without the cookie may take to send
            ``{"type": "auth"}`` (1008 after it).
        log_format: ``json`` (one object per line) or ``text`` (for people).
        log_level: least severe level logged: DEBUG, INFO, WARNING or ERROR.
        debug: log every event emitted and every subscription (a troubleshooting switch).
        retention_days: finished jobs, their events, unneeded uploads and cached notes older
            than this are pruned (users' saved notes stay); 0 keeps everything.
        prune_interval_seconds: how often the retention pruner runs.
        checkpoint_interval_seconds: how often the SQLite WAL is checkpointed and truncated.
        db_check_seconds: after an unclean stop, the database is checked at start (SQLite's
            ``quick_check``) for at most this long; a damaged file refuses to start. 0 skips it.
        max_upload_bytes: largest PDF upload (413 FILE_TOO_LARGE above it).
        process_workers: worker processes, shared by ``process=True`` job types and the PDF
            parser; 0 means one per CPU core; unset, ``pdf_workers`` says how many.
        process_memory_mb: address-space cap of a worker process running a ``process=True``
            job whose type sets no ``memory_mb`` (JOB_MEMORY above it).
        pdf_workers: processes that parse PDFs (the worker processes, unless
            ``process_workers`` is set); 0 means one per CPU core.
        pdf_max_pages: most pages a PDF may have (TOO_MANY_PAGES above it).
        pdf_max_text_chars: most characters of text one PDF may yield (TEXT_TOO_LARGE).
        pdf_memory_mb: address-space cap of each parsing process (PARSE_MEMORY above it).
        pdf_timeout_seconds: wall-clock limit of one parse (PARSE_TIMEOUT above it).
        max_jobs_per_user: queued and running jobs one user may have at once (429 QUOTA_JOBS
            above it).
        max_running_per_user: jobs of one user running at once in this process's worker pool;
            0: all but one of its slots (concurrency - 1, at least 1), so another user's job
            always finds one.
        max_parsers_per_user: PDF parser processes one user's documents may hold at once (0:
            all of them). A user who holds none while all are busy gets an extra one started.
        max_stored_bytes_per_user: bytes of uploads one user's jobs may hold on the server (429
            QUOTA_BYTES above it; pruning old jobs frees them).
        requests_per_second_per_user: API requests one user (or, before signing in, one address)
            may make per second on average (429 RATE_LIMITED above it).
        request_burst_per_user: API requests one user may make at once after a quiet spell.
        max_attempts_limit: the largest ``maxAttempts`` a job may ask for (400 above it).
        llm_url: an OpenAI-compatible API (e.g. ``http://127.0.0.1:8000/v1``); when set, notes
            are written by its chat completions, falling back to the offline generator.
        llm_model: the model named in each chat-completions request.
        llm_api_key: sent as a bearer token to ``llm_url`` when set.
        llm_timeout_seconds: how long one chat-completions request may take.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=lambda: Path("data"))
    database_url: str = field(default="", repr=False)
    database_schema: str = "public"
    node_id: str = ""
    upload_dir: str = ""
    concurrency: int = 8
    demo_jobs: bool = False
    jobs: tuple[str, ...] = ()
    disable_job_types: tuple[str, ...] = ()
    lease_seconds: float = 30.0
    shutdown_grace_seconds: float = 10.0
    max_body_bytes: int = 1024 * 1024
    secret: str = field(default="", repr=False)
    open_signin: bool | None = None
    token_ttl_seconds: int = 7 * 24 * 3600
    session_ttl_seconds: int = 30 * 24 * 3600
    behind_proxy: bool = False
    jwks_url: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_user_claim: str = "sub"
    signin_failures_per_account: int = 5
    signin_failures_per_address: int = 20
    signin_failure_window_seconds: float = 300.0
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keepalive_timeout_seconds: float = 75.0
    max_header_bytes: int = 8190
    max_headers: int = 128
    max_multipart_parts: int = 128
    multipart_overhead_bytes: int = 64 * 1024
    ws_max_message_bytes: int = 64 * 1024
    ws_max_subscriptions: int = 100
    ws_max_connections_per_user: int = 100
    ws_queue_size: int = 1000
    ws_heartbeat_seconds: float = 15.0
    ws_auth_timeout_seconds: float = 5.0
    log_format: str = "json"
    log_level: str = "INFO"
    debug: bool = False
    retention_days: float = 30.0
    prune_interval_seconds: float = 3600.0
    checkpoint_interval_seconds: float = 60.0
    db_check_seconds: float = 30.0
    max_upload_bytes: int = 50 * 1024 * 1024
    process_workers: int | None = None
    process_memory_mb: int = 1024
    pdf_workers: int = 0
    pdf_max_pages: int = 500
    pdf_max_text_chars: int = 4_000_000
    pdf_memory_mb: int = 1024
    pdf_timeout_seconds: float = 60.0
    max_jobs_per_user: int = 10_000
    max_running_per_user: int = 0
    max_parsers_per_user: int = 0
    max_stored_bytes_per_user: int = 10 * 1024**3
    requests_per_second_per_user: float = 5000.0
    request_burst_per_user: int = 10_000
    max_attempts_limit: int = 10
    llm_url: str = ""
    llm_model: str = "default"
    llm_api_key: str = field(default="", repr=False)
    llm_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_seconds <= 0 or self.shutdown_grace_seconds < 0:
            raise ValueError("lease_seconds must be positive, shutdown_grace_seconds not negative")
        if self.secret and len(self.secret.encode()) < 32:
            raise ValueError("secret must be at least 32 bytes long (HS256)")
        if self.database_url and not self.database_url.startswith(("postgresql://",
                                                                    "postgres://")):
            # said here, in one line without the URL (it may hold a password), rather than as
            # asyncpg's traceback when the store opens
            raise ValueError("JOBSERVER_DATABASE_URL must be a postgresql:// URL")
        if self.token_ttl_seconds < 1 or self.session_ttl_seconds < self.token_ttl_seconds:
            raise ValueError("token_ttl_seconds must be >= 1 and <= session_ttl_seconds")
        if self.signin_failures_per_account < 1 or self.signin_failures_per_address < 1:
            raise ValueError("signin_failures_per_account and _per_address must be >= 1")
        if self.signin_failure_window_seconds <= 0:
            raise ValueError("signin_failure_window_seconds must be positive")
        if self.jwks_url and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError("jwks_url must be an http(s) URL")
        if not self.jwt_user_claim:
            raise ValueError("jwt_user_claim must not be empty")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.ws_max_message_bytes < 1024 or self.ws_queue_size < 2:
            raise ValueError("ws_max_message_bytes must be >= 1024 and ws_queue_size >= 2")
        if self.ws_max_subscriptions < 1 or self.ws_max_connections_per_user < 1:
            raise ValueError("ws_max_subscriptions and ws_max_connections_per_user must be >= 1")
        if self.ws_heartbeat_seconds <= 0 or self.ws_auth_timeout_seconds <= 0:
            raise ValueError("ws_heartbeat_seconds and ws_auth_timeout_seconds must be positive")
        _check_limits(self)
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.retention_days < 0:
            raise ValueError("retention_days must not be negative (0 keeps everything)")
        if self.prune_interval_seconds <= 0 or self.checkpoint_interval_seconds <= 0:
            raise ValueError("prune_interval_seconds and checkpoint_interval_seconds must be > 0")
        if self.db_check_seconds < 0:
            raise ValueError("db_check_seconds must not be negative (0 skips the check)")
        if self.max_upload_bytes < 1024 or self.pdf_max_pages < 1 or self.pdf_max_text_chars < 1:
            raise ValueError("max_upload_bytes, pdf_max_pages and pdf_max_text_chars are too small")
        if self.pdf_workers < 0 or (self.process_workers or 0) < 0:
            raise ValueError("pdf_workers and process_workers must not be negative (0: one "
                             "per core)")  # fmt: skip
        if self.process_memory_mb < 128:
            raise ValueError("process_memory_mb must be at least 128 (a process needs room to "
                             "start)")  # fmt: skip
        if self.pdf_memory_mb < 128:
            raise ValueError("pdf_memory_mb must be at least 128 (a parser needs room to start)")
        if self.max_jobs_per_user < 1 or min(self.max_parsers_per_user,
                                             self.max_stored_bytes_per_user,
                                             self.max_running_per_user) < 0:  # fmt: skip
            raise ValueError("max_jobs_per_user must be >= 1, max_parsers_per_user, "
                             "max_running_per_user and max_stored_bytes_per_user not "
                             "negative")  # fmt: skip
        if self.requests_per_second_per_user <= 0 or self.request_burst_per_user < 1:
            raise ValueError(
                "requests_per_second_per_user must be > 0 and request_burst_per_user >= 1"
            )
        if not 1 <= self.max_attempts_limit <= 100:
            raise ValueError("max_attempts_limit must be from 1 to 100")
        if self.pdf_timeout_seconds <= 0 or self.llm_timeout_seconds <= 0:
            raise ValueError("pdf_timeout_seconds and llm_timeout_seconds must be positive")

    @property
    def running_per_user(self) -> int:
        """``max_running_per_user`` with 0 resolved: all but one of the pool's slots."""
        return self.max_running_per_user or max(1, self.concurrency - 1)

    @property
    def worker_processes(self) -> int:
        """How many worker processes to keep (0: one per core)."""
        return self.pdf_workers if self.process_workers is None else self.process_workers

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobserver.db"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Defaults, then ``JOBSERVER_*`` variables, then explicit ``overrides`` (flags)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None:
                try:
                    values[f.name] = convert(f.name, raw)
                except ValueError as exc:  # named, with its value unless it is a secret
                    shown = "" if is_secret(f.name) else f"={raw!r}"
                    raise ValueError(f"{PREFIX}{f.name.upper()}{shown}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _check_limits(s: Settings) -> None:
    """The request limits and the origin and host lists are usable as given."""
    if s.max_connections < 0 or s.max_multipart_parts < 1 or s.max_headers < 1:
        raise ValueError("max_connections must be >= 0, max_multipart_parts and max_headers >= 1")
    if min(s.header_timeout_seconds, s.body_timeout_seconds, s.keepalive_timeout_seconds) <= 0:
        raise ValueError("the header, body and keep-alive timeouts must be positive")
    if s.max_header_bytes < 1024 or s.multipart_overhead_bytes < 1024:
        raise ValueError("max_header_bytes and multipart_overhead_bytes must be at least 1024")
    for origin in s.allowed_origins:
        if origin != "*" and not ORIGIN.fullmatch(origin.strip().lower()):
            raise ValueError(f"allowed_origins: {origin!r} is not * or scheme://host[:port]")
    for host in s.allowed_hosts:
        if not HOST.fullmatch(host.strip().lower()):
            raise ValueError(f"allowed_hosts: {host!r} is not *, a host name, *.domain or an IP")


def convert(name: str, raw: str) -> Any:
    """Turn a textual setting into the type of field ``name``."""
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    if kind == "bool":
        return _bool(raw)
    if kind == "bool | None":
        return None if raw.strip().lower() == "auto" else _bool(raw)
    if kind == "int" or (kind == "int | None" and raw.strip()):
        return _number(int, raw, "not a whole number")
    if kind == "int | None":
        return None
    if kind == "float":
        return _number(float, raw, "not a number")
    if kind == "Path":
        return Path(raw)
    if kind == "tuple[str, ...]":
        return _tuple(raw)
    return raw


def _number(parse: Callable[[str], Any], raw: str, what: str) -> Any:
    try:
        return parse(raw)
    except ValueError:  # "invalid literal for int() with base 10" says nothing to a user
        raise ValueError(what) from None


def is_secret(name: str) -> bool:
    """Settings that are never flags or logged (a command line shows in ``ps``)."""
    return name in ("secret", "database_url") or name.endswith(
        ("_secret", "_key", "_token", "_password")
    )


def field_docs() -> dict[str, str]:
    """Each setting's description, from the ``Args:`` block of the Settings docstring."""
    docs: dict[str, str] = {}
    name = ""
    in_args = False
    for line in (Settings.__doc__ or "").splitlines():
        if line.strip() == "Args:":
            in_args = True
        elif in_args and line.startswith(" " * 12) and name:
            docs[name] += " " + line.strip()
        elif in_args and line.startswith(" " * 8) and ":" in line:
            name, _, text = line.strip().partition(":")
            docs[name] = text.strip()
    return docs
