"""The client's exceptions: one base class, the server's refusals apart from network failures."""

from __future__ import annotations


class JobServerClientError(Exception):
    """Base of every error the client raises: a stable ``code`` and a human ``message``.

    Args:
        code: the server's error code (``JOB_NOT_FOUND``...) or the client's own
            (``NETWORK``, ``TIMEOUT``, ``PROTOCOL``).
        message: what went wrong, in words a person understands.
        status: the HTTP status of the answer that carried it (0 when there was none).
    """

    index: int | None = None  # a refused batch (submit_many): the position of the job at fault

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ApiError(JobServerClientError):
    """The server answered and refused the request (``{"error": {"code", "message"}}``)."""


class BadRequest(ApiError):
    """400: the request is not valid (``INVALID_PAYLOAD``, ``UNKNOWN_JOB_TYPE``...)."""


class Unauthorized(ApiError):
    """401: no token, an expired one (``TOKEN_EXPIRED``) or a bad one (``INVALID_TOKEN``)."""


class Forbidden(ApiError):
    """403: not allowed (e.g. ``SIGNIN_DISABLED``)."""


class NotFound(ApiError):
    """404: no such thing, or another user's (``JOB_NOT_FOUND``, ``NOT_FOUND``)."""


class Conflict(ApiError):
    """409: the job cannot make that change now (``ILLEGAL_TRANSITION``)."""


class ServerUnavailable(ApiError):
    """5xx: the server answered but could not do it now (``UNAVAILABLE``); try again later."""


class NetworkError(JobServerClientError):
    """The server could not be reached, or the connection broke before an answer (``NETWORK``)."""


class WaitTimeout(JobServerClientError, TimeoutError):
    """``wait`` ran out of time before the job finished (``TIMEOUT``)."""


class ProtocolError(JobServerClientError):
    """The server's answer was not what the protocol says (``PROTOCOL``): a bug on one side."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def api_error(status: int, code: str, message: str) -> ApiError:
    """The exception for an HTTP error answer: a subclass by status, else ``ApiError``."""
    cls = _BY_STATUS.get(status) or (ServerUnavailable if status >= 500 else ApiError)
    return cls(code, message, status)
