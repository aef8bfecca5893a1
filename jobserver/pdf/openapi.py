"""The PDF plugin's part of the OpenAPI document: the notes routes and the note schemas."""

from __future__ import annotations

from typing import Final

from ..web.openapi import INT, STRING, TIME, Schema, error, json_body, nullable, obj, ref

SCHEMAS: dict[str, Schema] = {
    "NoteSummary": obj(
        ["noteId", "jobId", "title", "filename", "pageCount", "contentHash", "createdAt"],
        {"noteId": STRING, "jobId": STRING, "title": STRING, "filename": STRING,
         "pageCount": INT, "contentHash": STRING, "createdAt": TIME},
    ),
    "Note": obj(
        ["noteId", "jobId", "userId", "title", "filename", "pageCount", "contentHash",
         "createdAt", "summary", "keyPoints", "sections", "keywords", "generator",
         "sectionsFrom"],
        {
            "noteId": STRING, "jobId": STRING, "userId": STRING, "title": STRING,
            "filename": STRING, "pageCount": INT, "contentHash": STRING, "createdAt": TIME,
            "summary": STRING,
            "keyPoints": {"type": "array", "items": obj(["text", "page"], {
                "text": STRING, "page": INT})},
            "sections": {"type": "array", "items": obj(["title", "page", "level"], {
                "title": STRING, "page": nullable(INT), "level": {**INT, "minimum": 1}})},
            "keywords": {"type": "array", "items": STRING},
            "generator": {**STRING, "description": "offline, or llm:<model>"},
            "sectionsFrom": {"enum": ["outline", "headings"]},
        },
    ),
    "NotePage": obj(["notes", "limit", "offset", "nextOffset"], {
        "notes": {"type": "array", "items": ref("NoteSummary")},
        "limit": INT,
        "offset": INT,
        "nextOffset": nullable(INT),
    }),
}  # fmt: skip

NOTE_ID: Final = {"name": "noteId", "in": "path", "required": True, "schema": STRING}


def markdown(operation_id: str) -> Schema:
    return {
        "summary": "One of your notes as a Markdown download",
        "operationId": operation_id,
        "parameters": [NOTE_ID],
        "responses": {
            "200": {"description": "the note as Markdown (Content-Disposition: attachment)",
                    "content": {"text/markdown": {"schema": STRING}}},
            "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            "404": error("NOTE_NOT_FOUND"),
        },
    }


PATHS: dict[str, Schema] = {
    "/api/notes": {
        "get": {
            "summary": "Your notes, newest first",
            "operationId": "listNotes",
            "parameters": [
                {"name": "limit", "in": "query",
                 "schema": {**INT, "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "offset", "in": "query", "schema": {**INT, "minimum": 0, "default": 0}},
            ],
            "responses": {
                "200": json_body(ref("NotePage"), "a page of notes"),
                "400": error("INVALID_PAYLOAD (a bad limit or offset)"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
            },
        },
    },
    # Before /api/notes/{noteId}, which would match "<id>.md" too (the first match wins).
    "/api/notes/{noteId}.md": {"get": markdown("getNoteMarkdown")},
    "/api/notes/{noteId}": {
        "get": {
            "summary": "One of your notes",
            "operationId": "getNote",
            "parameters": [NOTE_ID],
            "responses": {
                "200": json_body(ref("Note"), "the note"),
                "401": error("UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED"),
                "404": error("NOTE_NOT_FOUND (also for another user's note)"),
            },
        },
    },
    "/api/notes/{noteId}/markdown": {"get": markdown("getNoteMarkdownAlias")},
}  # fmt: skip
