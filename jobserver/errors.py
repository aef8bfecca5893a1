"""Every error a user or a handler can cause, each with a stable code and an HTTP status."""

from __future__ import annotations


class JobServerError(Exception):
    """Base error: a stable machine-readable ``code``, a human message and an HTTP status.

    Args:
        message: what went wrong, in words a person understands.
        code: overrides the class default code.
    """

    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps a chosen code when the error crosses from the store's writer process.
        return type(self), (self.message,), self.__dict__


class Refused(JobServerError):
    """A command of ``server.py`` cannot do what it was asked: the message says why, the code
    which case (``error_line`` is how the command says it)."""

    code = "REFUSED"
    status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code=code)


def error_line(error: JobServerError) -> str:
    """How a command of ``server.py`` says why it stops: one line ending with the code."""
    return f"error: {error.message} ({error.code})"


class BadRequest(JobServerError):
    code = "BAD_REQUEST"
    status = 400


class InvalidJson(BadRequest):
    code = "INVALID_JSON"


class InvalidPayload(BadRequest):
    code = "INVALID_PAYLOAD"


class TooManyParts(BadRequest):
    code = "TOO_MANY_PARTS"


class UnknownJobType(BadRequest):
    code = "UNKNOWN_JOB_TYPE"


class InBatch(JobServerError):
    """One job of a batch was refused, so the whole batch was: that job's own code, status
    and message, and its ``index`` in the batch (0-based).

    Args:
        index: the refused job's position in the batch.
        error: why it was refused.
    """

    def __init__(self, index: int, error: JobServerError) -> None:
        super().__init__(f"jobs[{index}]: {error.message}", code=error.code)
        self.status = error.status
        self.index = index


class DuplicateKey(BadRequest):
    code = "DUPLICATE_IDEMPOTENCY_KEY"


class BodyTooLarge(JobServerError):
    code = "BODY_TOO_LARGE"
    status = 413


class Unauthorized(JobServerError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(JobServerError):
    code = "FORBIDDEN"
    status = 403


class HostNotAllowed(JobServerError):
    """The Host header names a server this one is not (a DNS-rebinding page, a wrong proxy)."""

    code = "HOST_NOT_ALLOWED"
    status = 421


class NotFound(JobServerError):
    code = "NOT_FOUND"
    status = 404


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class IllegalTransition(JobServerError):
    """A status change the job model does not allow (e.g. cancelling a completed job)."""

    code = "ILLEGAL_TRANSITION"
    status = 409


class LeaseLost(JobServerError):
    """A worker wrote to a job whose lease it no longer holds; the write is rejected."""

    code = "LEASE_LOST"
    status = 409


class TooManyRequests(JobServerError):
    """A limit on how much or how often was reached; ``retry_after`` says when to try again.

    Args:
        message: what went wrong, in words a person understands.
        code: overrides the class default code.
        retry_after: seconds until a new attempt may succeed (the ``Retry-After`` header).
    """

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, *, code: str | None = None, retry_after: float = 1.0):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class TooManyJobs(TooManyRequests):
    """A user has the most queued or running jobs allowed (``max_jobs_per_user``)."""

    code = "QUOTA_JOBS"
    retry_seconds = 5.0  # jobs finish soon: the client is told to try again then

    def __init__(self, max_jobs: int) -> None:
        super().__init__(
            f"you have {max_jobs} jobs queued or running, the most allowed: "
            "wait for some to finish",
            retry_after=self.retry_seconds,
        )  # fmt: skip


class ServiceUnavailable(JobServerError):
    code = "UNAVAILABLE"
    status = 503


class UploadNotFound(NotFound):
    """A job names an upload its user never sent (unknown and other users' hashes alike)."""

    code = "UPLOAD_MISSING"


class StorageFull(ServiceUnavailable):
    """The disk (or the user's quota) is full: nothing can be written until room is made."""

    code = "STORAGE_FULL"
    status = 507


class DatabaseDamaged(ServiceUnavailable):
    """The database file is empty or fails SQLite's integrity check; nothing is served from it."""

    code = "DATABASE_DAMAGED"


class DataDirUnusable(ServiceUnavailable):
    """The data folder cannot be written (read-only, no permission, missing device)."""

    code = "DATA_DIR_UNUSABLE"


class NoteNotFound(NotFound):
    code = "NOTE_NOT_FOUND"


class NotAPdf(JobServerError):
    code = "NOT_A_PDF"
    status = 415


class FileTooLarge(JobServerError):
    code = "FILE_TOO_LARGE"
    status = 413


# Codes any job may fail with (JobError codes): past its type's timeout, a handler that raised
# something else than JobError, and for process=True types a call over its memory cap and a
# worker process that died under it.
JOB_TIMEOUT = "JOB_TIMEOUT"
HANDLER_ERROR = "HANDLER_ERROR"
JOB_MEMORY = "JOB_MEMORY"
PROCESS_CRASHED = "PROCESS_CRASHED"

# Codes a pdf-notes job fails with (JobError codes; NOT_A_PDF and FILE_TOO_LARGE are refused at
# upload). Which are recoverable is decided where each is raised, in jobserver/pdf/.
ENCRYPTED_PDF = "ENCRYPTED_PDF"
CORRUPT_PDF = "CORRUPT_PDF"
NO_TEXT = "NO_TEXT"
TOO_MANY_PAGES = "TOO_MANY_PAGES"
TEXT_TOO_LARGE = "TEXT_TOO_LARGE"
PARSE_TIMEOUT = "PARSE_TIMEOUT"
PARSE_MEMORY = "PARSE_MEMORY"
PARSE_CRASHED = "PARSE_CRASHED"
UPLOAD_MISSING = "UPLOAD_MISSING"


class JobError(Exception):
    """Raised by a handler to fail its job with a code; ``recoverable`` jobs are retried.

    Args:
        code: stable machine-readable code, e.g. ``CORRUPT_PDF``.
        message: what went wrong, in words a person understands.
        recoverable: whether trying again may succeed.
    """

    def __init__(self, code: str, message: str, *, recoverable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = recoverable
