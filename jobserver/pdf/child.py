"""The parser process: reads requests on stdin, parses one PDF at a time, answers on stdout.

Started by the pool as ``python -m jobserver.pdf.child MEMORY_MB``. It caps its own address
space first (RLIMIT_AS), lowers its priority so the server process stays responsive, then loops.
Every message either way is a frame: a 4-byte big-endian length, then a JSON object. A
MemoryError ends the process after reporting it; the pool starts a fresh one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import resource
import signal
import struct
import sys
import warnings
from typing import Any, BinaryIO

import orjson

from ..errors import PARSE_CRASHED, PARSE_MEMORY, JobError
from .extract import (
    Limits,
    PageText,
    assemble,
    extract_share,
    page_from_wire,
    page_to_wire,
    require_text,
)
from .offline import build_notes, warm_up_notes

HEADER = struct.Struct(">I")
NICENESS = 5
EXIT_MEMORY = 3
PR_SET_PDEATHSIG = 1


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    data: dict[str, Any] = orjson.loads(body)
    return data


def frame(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return HEADER.pack(len(body)) + body


class _Channel:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(frame(message))
        self.out.flush()


def _die_with_parent() -> None:
    """Linux: be killed when the server dies, so a killed server leaves no parse running."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the end of stdin still ends the process between parses
    if os.getppid() == 1:  # the server died before the line above ran
        os._exit(1)


def _cap_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _warm_up() -> None:
    """Load the engine and the notes generator's libraries now, so the first parse is not
    slower: a one-page PDF made here is read and turned into notes."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    pdf.new_page(200, 200).close()
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    doc = pdfium.PdfDocument(buffer.getvalue())
    doc[0].get_textpage().get_text_range()
    doc.close()
    warm_up_notes()


class _EndOfInput(Exception):
    """The server closed our input while we waited for pages: it is stopping."""


def _others(job: int, requests: BinaryIO, texts: dict[int, PageText], pages: int) -> None:
    """Read the pages the other parsers of this document read, forwarded by the server."""
    while len(texts) < pages:
        message = read_frame(requests)
        if message is None:
            raise _EndOfInput
        if message.get("id") != job:
            continue
        if message.get("type") == "abort":
            raise JobError(PARSE_CRASHED, "Stopped: another parser of this file failed",
                           recoverable=True)  # fmt: skip
        texts[int(message["page"])] = page_from_wire(message)


def _extract(request: dict[str, Any], channel: _Channel, requests: BinaryIO) -> dict[str, Any]:
    """Read this process's share of the pages; with ``notes``, also write the notes.

    The first parser of a document gets ``notes``: after its own share it reads the other
    shares' pages from its input (the server forwards them as they come) and writes the
    notes at once, with no further round trip.
    """
    job = request["id"]
    limits = Limits(int(request["maxPages"]), int(request["maxTextChars"]))
    texts: dict[int, PageText] = {}

    def report(page: PageText) -> None:
        texts[page.page] = page
        channel.send({"id": job, "type": "page", **page_to_wire(page)})

    share = extract_share(str(request["path"]), limits, report,
                          stride=int(request["stride"]), offset=int(request["offset"]))
    answer = {"id": job, "type": "result", "pages": share.pages, "metaTitle": share.meta_title,
              "outline": [[s.level, s.title, s.page] for s in share.outline]}  # fmt: skip
    if request.get("notes"):
        _others(job, requests, texts, share.pages)
        channel.send({"id": job, "type": "generating"})
        doc = assemble(share, texts)
        require_text(doc)
        answer["notes"] = build_notes(doc).to_wire()
    return answer


def serve(requests: BinaryIO, channel: _Channel) -> int:
    channel.send({"type": "ready", "pid": os.getpid()})
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        if request.get("op") != "extract":
            continue  # pages forwarded for a parse that has ended
        job = request.get("id")
        try:
            channel.send(_extract(request, channel, requests))
        except JobError as exc:
            channel.send({"id": job, "type": "error", "code": exc.code, "message": exc.message,
                          "recoverable": exc.recoverable})  # fmt: skip
        except _EndOfInput:
            return 0
        except MemoryError:
            channel.send({"id": job, "type": "error", "code": PARSE_MEMORY, "recoverable": False,
                          "message": "Parsing the PDF needed more memory than a parser may use",
                          "exiting": True})
            return EXIT_MEMORY  # fmt: skip
        except Exception as exc:  # a bug of ours, not the file's fault: say so and carry on
            channel.send({"id": job, "type": "error", "code": PARSE_CRASHED, "recoverable": True,
                          "message": f"The parser failed unexpectedly ({type(exc).__name__})"})


def main(argv: list[str]) -> int:
    _die_with_parent()
    _cap_memory(int(argv[1]))
    os.nice(NICENESS)
    # stdout carries frames only: anything printed by a library goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    _warm_up()
    return serve(sys.stdin.buffer, _Channel(out))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
