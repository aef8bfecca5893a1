"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json.

tests/test_openapi.py checks real responses against it and that every route is described,
so a route or field added without its description fails the suite.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from .. import __version__
from ..models import JOB_FIELDS, TERMINAL, EventType, JobStatus

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: list[str], props: dict[str, Schema], *, closed: bool = True) -> Schema:
    """An object schema; ``closed`` rejects fields the description does not name."""
    schema: Schema = {"type": "object", "required": required, "properties": props}
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> Schema:
    return json_body(ref("Error"), description)


STRING: Final = {"type": "string"}
INT: Final = {"type": "integer"}
NUMBER: Final = {"type": "number"}
OBJECT: Final = {"type": "object"}
TIME: Final = {"type": "string", "format": "date-time"}

STAGE: Final = {**STRING, "description": "a stage id; GET /api/meta's stageNames names it"}

# Each of the job's fields by its wire names: the names come from the one declaration of the
# fields (models.Job), so a field added there without a schema here fails at import.
_FIELD_SCHEMAS: dict[str, Schema] = {
    "id": STRING,
    "type": {**STRING, "description": "the job type, e.g. pdf-notes or demo.sleep"},
    "user_id": STRING,
    "payload": OBJECT,
    "label": {**STRING, "description": "a short human title (a PDF's file name)"},
    "status": {"enum": [s.value for s in JobStatus]},
    "stage": STAGE,
    "progress": {**NUMBER, "minimum": 0, "maximum": 100},
    "message": STRING,
    "metadata": OBJECT,
    "result": nullable(OBJECT),
    "error": nullable(ref("JobError")),
    "attempts": {**INT, "minimum": 0},
    "max_attempts": {**INT, "minimum": 1},
    "created_at": TIME,
    "started_at": nullable(TIME),
    "finished_at": nullable(TIME),
    "run_at": TIME,
    "last_seq": {**INT, "description": "seq of this job's newest event"},
    "idempotency_key": nullable(STRING),
    "removed_at": {**nullable(TIME), "description": "set once its owner removed it (then it is "
                   "gone from lists; GET answers 404)"},
}
# On an event, result and error are present only when the job has them.
_ON_EVENT = {"result": OBJECT, "error": ref("JobError")}
JOB_WIRE: Final = {n: _FIELD_SCHEMAS[f.name] for f in JOB_FIELDS for n in f.metadata["wire"]}
EVENT_WIRE: Final = {
    n: _ON_EVENT.get(f.name, _FIELD_SCHEMAS[f.name])
    for f in JOB_FIELDS for n in f.metadata["event"]
}  # fmt: skip

SCHEMAS: dict[str, Schema] = {
    "ErrorBody": obj(["code", "message"], {
        "code": {**STRING, "description": "stable, machine-readable (e.g. JOB_NOT_FOUND)"},
        "message": {**STRING, "description": "for people"},
        "index": {**INT, "description": "in a batch: the position of the job that refused it"},
    }),
    "Error": obj(["error"], {"error": ref("ErrorBody")}),
    "JobError": obj(["code", "message", "recoverable"], {
        "code": STRING, "message": STRING,
        "recoverable": {"type": "boolean", "description": "whether trying again may succeed"},
    }, closed=False),
    "Job": obj(list(JOB_WIRE), JOB_WIRE),
    "NewJob": obj(["type"], {
        "type": {**STRING, "description": "a registered job type (GET /api/meta lists them)"},
        "label": {**STRING, "maxLength": 200, "description": "a short title for lists"},
        "payload": {**OBJECT, "description": "input for the job type"},
        "idempotencyKey": {**STRING, "minLength": 1, "maxLength": 200,
                           "description": "a second request with the same key gets the same job"},
        "maxAttempts": {**INT, "minimum": 1, "maximum": 100,
                        "description": "at most max_attempts_limit (10 unless set)"},
        "delaySeconds": {**NUMBER, "minimum": 0, "maximum": 86400},
    }, closed=False),
    "NewJobs": obj(["jobs"], {
        "jobs": {"type": "array", "items": ref("NewJob"), "minItems": 1, "maxItems": 1000,
                 "description": "enqueued in one commit, all or nothing"},
    }),
    "Jobs": obj(["jobs"], {
        "jobs": {"type": "array", "items": obj([*JOB_WIRE, "created"], {**JOB_WIRE, "created": {
            "type": "boolean", "description": "false: its idempotency key named this job already"
        }})},
    }),
    "JobPage": obj(["jobs", "limit", "offset", "nextOffset"], {
        "jobs": {"type": "array", "items": ref("Job")},
        "limit": INT,
        "offset": INT,
        "nextOffset": nullable(INT),
        "total": {**INT, "description": "jobs matching status and q (all pages)"},
        "counts": {**obj(["all", *(s.value for s in JobStatus)], {
            "all": INT, **{s.value: INT for s in JobStatus}}),
            "description": "jobs matching q, per status (removed ones not counted)"},
    }),
    "JobEvents": obj(["jobId", "events", "limit", "nextAfter"], {
        "jobId": STRING,
        "events": {"type": "array", "items": ref("Event")},
        "limit": INT,
        "nextAfter": {**nullable(INT), "description": "pass as after for the next page; null: "
                      "no more events now"},
    }),
    "BulkResult": obj(["action", "results", "done", "refused"], {
        "action": {"enum": ["cancel", "retry", "remove"]},
        "results": {"type": "array", "items": obj(["jobId", "ok"], {
            "jobId": STRING, "ok": {"type": "boolean"}, "job": ref("Job"),
            "error": ref("ErrorBody")})},
        "done": INT,
        "refused": INT,
    }),
    "SignInMethods": obj(["methods", "openSignin"], {
        "methods": {"type": "array", "items": {"enum": ["open", "password", "token", "jwks"]}},
        "openSignin": {"type": "boolean",
                       "description": "anyone can sign in under any name (say so to people)"},
        "userIdRule": STRING,
    }),
    "Session": obj(["userId", "token", "refreshToken", "expiresAt", "method"], {
        "userId": STRING,
        "token": {**STRING, "description": "the access token (Authorization: Bearer)"},
        "refreshToken": {**STRING, "description": "for POST /api/session/refresh"},
        "expiresAt": {**INT, "description": "when the access token expires (epoch seconds)"},
        "method": {"enum": ["open", "password", "token", "jwks"]},
    }),
    "Meta": obj(["stages", "stageNames", "statuses", "eventTypes", "jobTypes", "epoch", "seq"], {
        "stages": {"type": "array", "items": obj(["id", "name"], {
            "id": STAGE, "name": STRING})},
        "stageNames": {"type": "object", "additionalProperties": STRING},
        "statuses": {"type": "array", "items": {"enum": [s.value for s in JobStatus]}},
        "terminalStatuses": {"type": "array", "items": {"enum": [s.value for s in JobStatus]}},
        "eventTypes": {"type": "array", "items": {"enum": [t.value for t in EventType]}},
        "statusEventTypes": {"type": "array", "items": {"enum": [t.value for t in EventType]},
                             "description": "events a slow client never loses"},
        "jobTypes": {"type": "array", "items": STRING},
        "types": {"type": "object", "description": "each job type's display name and stages",
                  "additionalProperties": obj(["displayName", "stages", "acceptsUpload"], {
                      "displayName": STRING, "stages": {"type": "array", "items": STAGE},
                      "acceptsUpload": {"type": "boolean"}})},
        "epoch": {**STRING, "description": "changes only when the store is created anew"},
        "seq": {**INT, "description": "the newest event's seq"},
        "signin": ref("SignInMethods"),
        "maxUploadBytes": {**INT, "description": "the largest file an upload may carry"},
    }, closed=False),
    "Event": obj(
        ["seq", "type", *(n for n in EVENT_WIRE if n not in ("result", "error")), "timestamp"],
        {
            "seq": {**INT, "description": "strictly increasing across the server"},
            "type": {"enum": [t.value for t in EventType]},
            **EVENT_WIRE,
            "timestamp": TIME,
        },
    ),
    "EventPage": obj(["events", "cursor", "epoch"], {
        "type": {"const": "resync", "description": "present only when the client must reload"},
        "reason": {"enum": ["epoch", "pruned", "ahead"],
                   "description": "why the cursor cannot be resumed (with type resync)"},
        "events": {"type": "array", "items": ref("Event")},
        "cursor": {**INT, "description": "pass as since next time"},
        "epoch": STRING,
    }),
    "LoopLag": obj(["running", "samples", "intervalMs", "p50Ms", "p99Ms", "maxMs"], {
        "running": {"type": "boolean"}, "samples": INT, "intervalMs": NUMBER,
        "p50Ms": NUMBER, "p99Ms": NUMBER, "maxMs": NUMBER,
    }),
    "Ready": obj(["status", "checks"], {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": obj(["database", "workers"], {"database": STRING, "workers": STRING}),
        "error": ref("ErrorBody"),
    }),
}  # fmt: skip

JOB_ID: Final = {"name": "jobId", "in": "path", "required": True, "schema": STRING}
JOB: Final = json_body(ref("Job"), "the job")
PUBLIC: Final[list[Any]] = []

PATHS: dict[str, Schema] = {
    "/api/session": {
        "post": {
            "summary": "Sign in: by name (open sign-in), name and password, or a token",
            "description": "GET /api/session/methods says which are on. Each starts a session: "
            "a short access token (also an HttpOnly cookie) and a refresh token (also a cookie "
            "sent only to /api/session). Password sign-in is throttled per account and per "
            "address (429 SIGNIN_THROTTLED with Retry-After).",
            "operationId": "signIn",
            "security": PUBLIC,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": obj([], {
                    "userId": {**STRING, "description": "normalised (NFKC, case-folded) to "
                               "1-64 of a-z, 0-9, '.', '_', '@', '-'"},
                    "password": {**STRING, "minLength": 8, "maxLength": 1024},
                    "token": {**STRING, "description": "an HS256 token of the shared secret "
                              "or an RS256/ES256 token of the JWKS provider"},
                }, closed=False)}}},
            "responses": {
                "200": json_body(ref("Session"),
                                 "signed in; the tokens are also set as HttpOnly cookies"),
                "400": error("INVALID_JSON or INVALID_PAYLOAD (a bad userId or password)"),
                "401": error("BAD_CREDENTIALS, INVALID_TOKEN, TOKEN_EXPIRED or TOKEN_REVOKED"),
                "403": error("SIGNIN_DISABLED: that way of signing in is turned off; "
                             "ORIGIN_NOT_ALLOWED: sent by another origin's page"),
                "429": error("SIGNIN_THROTTLED or RATE_LIMITED (see Retry-After)"),
            },
        },
        "get": {
            "summary": "Who the token belongs to",
            "operationId": "whoAmI",
            "responses": {
                "200": json_body(obj(["userId"], {"userId": STRING}), "the signed-in user"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED or TOKEN_REVOKED"),
            },
        },
        "delete": {
            "summary": "Sign out: revoke the session (or the token's jti) on the server, close "
            "its WebSockets and long-polls, clear the cookies",
            "operationId": "signOut",
            "security": PUBLIC,
            "responses": {
                "200": json_body(obj(["signedOut"], {
                    "signedOut": {"const": True},
                    "revoked": {"type": "boolean",
                                "description": "a session or token id was revoked"},
                    "closed": {**INT, "description": "live connections that were ended"},
                }), "done (also with no valid token: the cookies are cleared)"),
            },
        },
    },
    "/api/session/refresh": {
        "post": {
            "summary": "A new access token for the session a refresh token names",
            "operationId": "refreshSession",
            "security": PUBLIC,
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": obj([], {"refreshToken": {
                    **STRING, "description": "else the refresh cookie is used"}})}}},
            "responses": {
                "200": json_body(obj(["userId", "token", "expiresAt"], {
                    "userId": STRING, "token": STRING, "expiresAt": INT,
                }), "the new access token (also set as the cookie)"),
                "400": error("INVALID_JSON or INVALID_PAYLOAD"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED or TOKEN_REVOKED"),
            },
        },
    },
    "/api/session/methods": {
        "get": {
            "summary": "The sign-in methods this server has on (asked before signing in)",
            "operationId": "signInMethods",
            "security": PUBLIC,
            "responses": {
                "200": json_body(ref("SignInMethods"), "what the sign-in form offers"),
            },
        },
    },
    "/api/meta": {
        "get": {
            "summary": "Stage display names, statuses, event types, job types, epoch, head seq",
            "operationId": "meta",
            "responses": {
                "200": json_body(ref("Meta"), "what clients need to show jobs"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
    },
    "/api/jobs": {
        "post": {
            "summary": "Enqueue a job, or a batch of jobs (`{\"jobs\": [...]}`, one commit, all or "
                       "nothing): JSON for any job type, or PDF uploads (pdf-notes)",
            "operationId": "createJob",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"anyOf": [ref("NewJob"), ref("NewJobs")]}},
                "multipart/form-data": {"schema": obj(["file"], {
                    "file": {**STRING, "contentMediaType": "application/pdf",
                             "description": "the PDF, streamed to disk (--max-upload-bytes); "
                                            "several file parts (at most 100) make one job "
                                            "each, as a batch"},
                    "idempotencyKey": {**STRING, "maxLength": 200},
                    "maxAttempts": {**STRING, "pattern": "^[0-9]+$"},
                }, closed=False)},
            }},
            "responses": {
                "202": json_body({"anyOf": [ref("Job"), ref("Jobs")]},
                                 "queued (a PDF: before any processing); a batch: every job, "
                                 "when any was new"),
                "200": json_body({"anyOf": [ref("Job"), ref("Jobs")]},
                                 "the job the idempotency key already named (a batch: every "
                                 "job, when none was new)"),
                "400": error("INVALID_JSON, INVALID_PAYLOAD, UNKNOWN_JOB_TYPE or (a batch, with "
                             "the job's index) DUPLICATE_IDEMPOTENCY_KEY"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "403": error("ORIGIN_NOT_ALLOWED: another origin's page, with the cookie"),
                "404": error("UPLOAD_MISSING: a pdf-notes job naming a hash its user did not "
                             "upload (unknown and other users' hashes alike)"),
                "413": error("BODY_TOO_LARGE (JSON) or FILE_TOO_LARGE (upload)"),
                "415": error("NOT_A_PDF: the upload does not start with %PDF-"),
            },
        },
        "get": {
            "summary": "Your jobs, newest first",
            "operationId": "listJobs",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": [s.value for s in JobStatus]}},
                {"name": "limit", "in": "query",
                 "schema": {**INT, "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "offset", "in": "query", "schema": {**INT, "minimum": 0, "default": 0}},
                {"name": "q", "in": "query", "schema": {**STRING, "maxLength": 200},
                 "description": "only jobs whose label or type contains this (any case)"},
            ],
            "responses": {
                "200": json_body(ref("JobPage"), "a page of jobs, with the total and the "
                                 "counts per status"),
                "400": error("INVALID_PAYLOAD (a bad status, limit, offset or q)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
        "delete": {
            "summary": "Remove your finished jobs (soft delete: a job.removed event each; "
                       "notes stay, uploads are left to retention)",
            "operationId": "removeFinishedJobs",
            "parameters": [{"name": "status", "in": "query", "schema": {
                "enum": sorted(s.value for s in TERMINAL)},
                "description": "only these (repeat or comma-separate); all finished if none"}],
            "responses": {
                "200": json_body(obj(["removed", "statuses"], {
                    "removed": INT, "statuses": {"type": "array", "items": STRING}}),
                    "how many were removed"),
                "400": error("INVALID_PAYLOAD (a status that is not a finished one)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "403": error("ORIGIN_NOT_ALLOWED: another origin's page, with the cookie"),
            },
        },
    },
    "/api/jobs/bulk": {
        "post": {
            "summary": "Cancel, retry or remove each job of a selection (each on its own)",
            "operationId": "bulkJobs",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": obj(["action", "ids"], {
                    "action": {"enum": ["cancel", "retry", "remove"]},
                    "ids": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 1000},
                })}}},
            "responses": {
                "200": json_body(ref("BulkResult"), "one result per distinct id, in order "
                                 "(another user's job: JOB_NOT_FOUND)"),
                "400": error("INVALID_JSON or INVALID_PAYLOAD (a bad action or ids)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "403": error("ORIGIN_NOT_ALLOWED: another origin's page, with the cookie"),
            },
        },
    },
    "/api/jobs/{jobId}/events": {
        "get": {
            "summary": "One job's events from the stored log, oldest first (its timeline)",
            "description": "Kept as long as the job is, whatever the resume floor of "
                           "GET /api/events.",
            "operationId": "jobEvents",
            "parameters": [
                JOB_ID,
                {"name": "after", "in": "query", "schema": {**INT, "minimum": 0, "default": 0},
                 "description": "only events with a larger seq"},
                {"name": "limit", "in": "query",
                 "schema": {**INT, "minimum": 1, "maximum": 1000, "default": 200}},
            ],
            "responses": {
                "200": json_body(ref("JobEvents"), "a page of the job's events"),
                "400": error("INVALID_PAYLOAD (a bad after or limit)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("JOB_NOT_FOUND (also for another user's job or a removed one)"),
            },
        },
    },
    "/api/jobs/{jobId}": {
        "get": {
            "summary": "One of your jobs",
            "operationId": "getJob",
            "parameters": [JOB_ID],
            "responses": {
                "200": JOB,
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("JOB_NOT_FOUND (also for another user's job or a removed one)"),
            },
        },
        "delete": {
            "summary": "Remove a finished job (soft delete: job.removed; its notes stay)",
            "operationId": "removeJob",
            "parameters": [JOB_ID],
            "responses": {
                "200": JOB,
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "403": error("ORIGIN_NOT_ALLOWED: another origin's page, with the cookie"),
                "404": error("JOB_NOT_FOUND (also for another user's job or a removed one)"),
                "409": error("ILLEGAL_TRANSITION: the job has not finished"),
            },
        },
    },
    "/api/jobs/{jobId}/cancel": {
        "post": {
            "summary": "Cancel a queued or running job",
            "operationId": "cancelJob",
            "parameters": [JOB_ID],
            "responses": {
                "200": JOB,
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("JOB_NOT_FOUND"),
                "409": error("ILLEGAL_TRANSITION: the job already finished"),
            },
        },
    },
    "/api/jobs/{jobId}/retry": {
        "post": {
            "summary": "Run a failed or cancelled job again, with a fresh set of attempts",
            "operationId": "retryJob",
            "parameters": [JOB_ID],
            "responses": {
                "200": JOB,
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("JOB_NOT_FOUND"),
                "409": error("ILLEGAL_TRANSITION: the job is not failed or cancelled"),
            },
        },
    },
    "/api/events": {
        "get": {
            "summary": "Long-poll: events after since, at once or when one arrives",
            "description": "The same event objects as the WebSocket's. With neither userId nor "
                           "jobId, the caller's own events. A cursor older than the kept log, "
                           "from another epoch or ahead of the server gets type resync: reload "
                           "state (GET /api/jobs) and poll again from the returned cursor.",
            "operationId": "pollEvents",
            "parameters": [
                {"name": "since", "in": "query", "schema": {**INT, "minimum": 0},
                 "description": "last seq seen; omitted: only events from now on"},
                {"name": "userId", "in": "query", "schema": STRING},
                {"name": "jobId", "in": "query", "schema": STRING},
                {"name": "epoch", "in": "query", "schema": STRING,
                 "description": "the epoch the cursor came from"},
                {"name": "timeout", "in": "query",
                 "schema": {**NUMBER, "minimum": 0, "maximum": 60, "default": 30}},
            ],
            "responses": {
                "200": json_body(ref("EventPage"), "events (maybe none) and the next cursor"),
                "400": error("INVALID_PAYLOAD or INVALID_MESSAGE (a bad since, timeout or target)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("NOT_FOUND or JOB_NOT_FOUND: another user's stream"),
            },
        },
    },
    "/api/debug/loop-lag": {
        "post": {
            "summary": "Start sampling event-loop lag for a while (earlier samples dropped)",
            "operationId": "startLoopLag",
            "requestBody": {"content": {"application/json": {"schema": obj([], {
                "seconds": {**NUMBER, "minimum": 0.1, "default": 60},
                "intervalMs": {**NUMBER, "minimum": 1, "maximum": 1000, "default": 5},
            })}}},
            "responses": {
                "202": json_body(ref("LoopLag"), "sampling"),
                "400": error("INVALID_JSON or INVALID_PAYLOAD"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
        "get": {
            "summary": "Event-loop lag so far: p50, p99 and max in milliseconds",
            "operationId": "readLoopLag",
            "responses": {
                "200": json_body(ref("LoopLag"), "the window so far"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
        "delete": {
            "summary": "Stop sampling; returns the window's numbers",
            "operationId": "stopLoopLag",
            "responses": {
                "200": json_body(ref("LoopLag"), "the finished window"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": PUBLIC,
            "responses": {"200": json_body(OBJECT, "the OpenAPI document")},
        },
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "operationId": "healthz",
            "security": PUBLIC,
            "responses": {"200": json_body(obj(["status"], {"status": {"const": "ok"}}), "alive")},
        },
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: a database write commits and the workers are running",
            "operationId": "readyz",
            "security": PUBLIC,
            "responses": {
                "200": json_body(ref("Ready"), "ready"),
                "503": json_body(ref("Ready"), "not ready; error.code is NOT_READY"),
            },
        },
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format; OpenMetrics on request)",
            "operationId": "metrics",
            "security": PUBLIC,
            "responses": {"200": {"description": "metrics", "content": {
                "text/plain": {"schema": STRING},
                "application/openmetrics-text": {"schema": STRING}}}},
        },
    },
}  # fmt: skip

DESCRIPTION = """\
Jobs, their progress and their results. Every /api route except signing in and this document
needs a token: `Authorization: Bearer <token>` or the `jobserver_token` cookie. Errors are
`{"error": {"code", "message"}}` with a stable code. Any route answers 421 HOST_NOT_ALLOWED
to a Host name the server is not configured for, and a write sent with the cookie by another
origin's page is refused with 403 ORIGIN_NOT_ALLOWED (docs/security.md).

Live events come over the WebSocket at `/ws` (described in docs/websocket.md) or by
long-polling; settings are listed in docs/settings.md.
"""


# Every /api route may answer 429: requests per second per user (docs/security.md).
RATE_LIMITED: Final = error("RATE_LIMITED: too many requests per second (see Retry-After)")
QUOTA_CODES: Final = {
    ("post", "/api/jobs"): "QUOTA_JOBS (too many queued or running jobs), QUOTA_BYTES "
    "(uploads kept) or RATE_LIMITED (see Retry-After)",
    ("post", "/api/jobs/{jobId}/retry"): "QUOTA_JOBS or RATE_LIMITED (see Retry-After)",
}


def _with_limits(paths: dict[str, Schema]) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for path, item in paths.items():
        out[path] = {}
        for method, operation in item.items():
            responses = dict(operation.get("responses", {}))
            if path.startswith("/api/") and "429" not in responses:
                quota = QUOTA_CODES.get((method, path))
                responses["429"] = error(quota) if quota else RATE_LIMITED
            out[path][method] = {**operation, "responses": responses}
    return out


def document(
    extra_paths: dict[str, Schema] | None = None, extra_schemas: dict[str, Schema] | None = None
) -> Schema:
    """The whole OpenAPI document, as a new dict, with what plugins describe of their routes."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobserver", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": _with_limits({**PATHS, **(extra_paths or {})}),
        "components": {
            "schemas": {**SCHEMAS, **(extra_schemas or {})},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "jobserver_token"},
            },
        },
    }


def document_bytes(
    extra_paths: dict[str, Schema] | None = None, extra_schemas: dict[str, Schema] | None = None
) -> bytes:
    return orjson.dumps(document(extra_paths, extra_schemas))
