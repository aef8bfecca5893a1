"""The PDF plugin's routes: a user's own notes as JSON, and one note as Markdown."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from ..errors import NoteNotFound
from ..web.http import json_response, page_of, paged, user_of
from ..web.keys import STORE
from . import storage
from .markdown import download_name, to_markdown
from .notes import Note

routes = web.RouteTableDef()


async def own_note(request: web.Request) -> Note:
    """The note named in the path, if it belongs to the caller (another user's is a 404)."""
    note_id = request.match_info["note_id"]
    note = await storage.get_note(request.app[STORE], note_id)
    if note is None or note.user_id != user_of(request):
        raise NoteNotFound(f"no note {note_id}")
    return note


@routes.get("/api/notes")
async def list_notes(request: web.Request) -> web.Response:
    limit, offset = page_of(request)
    notes = await storage.list_notes(request.app[STORE], user_of(request), limit + 1, offset)
    return paged("notes", [note.summary_wire() for note in notes], limit, offset)


async def _markdown(request: web.Request) -> web.Response:
    note = await own_note(request)
    name, ascii_name = download_name(note)
    return web.Response(
        text=to_markdown(note),
        content_type="text/markdown",
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(name)}"
        },
    )


# Registered before /api/notes/{note_id}, which would otherwise take "<id>.md" as an id.
routes.get(r"/api/notes/{note_id:[^/.]+}.md")(_markdown)
routes.get("/api/notes/{note_id}/markdown")(_markdown)


@routes.get("/api/notes/{note_id}")
async def get_note(request: web.Request) -> web.Response:
    return json_response((await own_note(request)).to_wire())
