"""PDF pipeline benchmark: upload to job.completed vs the engines alone, cache hits, loop lag.

    python bench/pdf_pipeline.py [--quick] [--json PATH]

Starts a real server (``server.py``) as a subprocess on 127.0.0.1 with a fresh data dir and
measures, with medians over repetitions:

1. a 20-page text PDF from the start of its upload to the client receiving ``job.completed``,
   against ``pypdf`` extracting the text of the same file directly in this process;
2. a 200-300-page real manual (R's "Writing R Extensions", 236 pages, from Debian's
   ``r-doc-pdf``; ``tests/corpus.py`` fetches it) the same way, against pypdf and against
   pypdfium2 (the server's engine) extracting it alone in this process;
3. a cache hit: the same file uploaded again, upload to ``job.completed``;
4. event-loop lag (the server's own probe, ``/api/debug/loop-lag``, 5 ms timer) while four
   PDFs are parsed at once, and whether progress events keep flowing meanwhile.

Events are read with long-polling (``GET /api/events``) when the server has it, else by
polling the job every 2 ms. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pypdf
import pypdfium2 as pdfium
from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import corpus  # noqa: E402

PAGES = 20
CONCURRENT = 4
STEP_TIMEOUT = 120.0
TARGET_RATIO = 1.2
TARGET_MANUAL_RATIO = 0.2
TARGET_CACHE_MS = 50.0
TARGET_LAG_MS = 50.0

TOPICS = [
    "queueing", "scheduling", "throughput", "latency", "backpressure", "durability",
    "replication", "caching", "indexing", "compression", "encryption", "monitoring",
]
SENTENCES = [
    "A job server accepts work from clients and runs it in the background while they wait.",
    "Each {t} decision changes how quickly users see their results and how much it costs.",
    "Operators measure {t} under load before they promise anything to their users.",
    "The event loop must never block, or every connected client notices the delay at once.",
    "Progress events tell a person what the server is doing and how far it has come.",
    "Careful {t} keeps the system responsive when many documents arrive together.",
    "A worker process that misbehaves is replaced without taking the server down with it.",
    "Good notes name the sections of a document and the few points that matter most.",
]


# -- documents ------------------------------------------------------------------------------


def make_pdf(seed: int, pages: int = PAGES) -> bytes:
    """A ``pages``-page text PDF (fpdf2 takes about 50 ms a page to lay it out)."""
    rng = random.Random(seed)
    pdf = FPDF()
    pdf.set_title(f"Operating a Job Server, edition {seed:08d}")
    for page in range(pages):
        topic = TOPICS[(page + seed) % len(TOPICS)]
        pdf.add_page()
        pdf.start_section(f"{page + 1}. {topic.capitalize()}")
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 10, f"{page + 1}. {topic.capitalize()} in practice",
                 new_x="LMARGIN", new_y="NEXT")  # fmt: skip
        pdf.set_font("Helvetica", size=10)
        for _ in range(6):
            text = " ".join(rng.choice(SENTENCES).format(t=topic) for _ in range(5))
            pdf.multi_cell(0, 5, f"{text} (Note {seed}-{page}-{rng.randrange(10**6)}.)")
            pdf.ln(2)
    return bytes(pdf.output())


class Documents:
    """Distinct PDFs of one size without laying each out again: the same pages, and a title
    of the same length that differs, so every file has its own sha256 (no cache hit) while
    the cross-reference offsets stay right."""

    def __init__(self) -> None:
        self._base: dict[int, bytes] = {}
        self._next = 1

    def new(self, pages: int = PAGES) -> bytes:
        if pages not in self._base:
            self._base[pages] = make_pdf(0, pages)
        self._next += 1
        old, new = b"edition %08d" % 0, b"edition %08d" % self._next
        data = self._base[pages]
        assert data.count(old) == 1, "the title must appear once, uncompressed"
        return data.replace(old, new)


def pypdf_alone(path: Path) -> float:
    """Seconds for pypdf to read the file and extract every page's text, in this process."""
    start = time.perf_counter()
    reader = pypdf.PdfReader(path)
    for page in reader.pages:
        page.extract_text()
    return time.perf_counter() - start


def pdfium_alone(path: Path) -> float:
    """Seconds for pypdfium2 to open the file and read every page's text, in this process."""
    start = time.perf_counter()
    doc = pdfium.PdfDocument(str(path))
    for index in range(len(doc)):
        page = doc[index]
        text_page = page.get_textpage()
        text_page.get_text_range()
        text_page.close()
        page.close()
    doc.close()
    return time.perf_counter() - start


# -- the server -----------------------------------------------------------------------------


class Server:
    """``server.py`` in a subprocess with its own data dir; stopped with SIGTERM."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        env = dict(os.environ, JOBSERVER_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the server exited with {self.proc.wait()}")
            match = re.search(r"listening on (http://\S+?)/?$", line.strip())
            if match:
                self.url = match.group(1)
                # Keep reading its output, so a chatty server never blocks on a full pipe.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise RuntimeError("the server did not start within 60 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the client -----------------------------------------------------------------------------


@dataclass
class Watch:
    """What the event reader saw for one job."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    done_at: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)
    progress_at: list[float] = field(default_factory=list)


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.headers: dict[str, str] = {}
        self.watches: dict[str, Watch] = {}
        self.long_poll = False
        self._reader: asyncio.Task[None] | None = None
        self._pollers: set[asyncio.Task[None]] = set()

    async def sign_in(self) -> None:
        async with self.session.post(f"{self.url}/api/session", json={"userId": "bench"}) as r:
            r.raise_for_status()
            self.headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with self.session.get(f"{self.url}/api/events?timeout=0",
                                    headers=self.headers) as r:  # fmt: skip
            self.long_poll = r.status == 200
            cursor = int((await r.json()).get("cursor", 0)) if self.long_poll else 0
        if self.long_poll:
            self._reader = asyncio.create_task(self._read_events(cursor))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def _seen(self, job_id: str, event: dict[str, Any], now: float) -> None:
        watch = self.watches.setdefault(job_id, Watch())
        if event.get("type") == "job.progress":
            watch.progress_at.append(now)
        if event.get("status") in ("completed", "failed", "cancelled") and not watch.done.is_set():
            watch.done_at, watch.final = now, event
            watch.done.set()

    async def _read_events(self, cursor: int) -> None:
        while True:
            async with self.session.get(
                f"{self.url}/api/events", params={"since": cursor, "timeout": 30},
                headers=self.headers,
            ) as r:  # fmt: skip
                body = await r.json()
            now = time.perf_counter()
            for event in body.get("events", []):
                self._seen(event["jobId"], event, now)
            cursor = int(body.get("cursor", cursor))

    async def _poll_job(self, job_id: str) -> None:
        last = -1
        deadline = time.perf_counter() + STEP_TIMEOUT
        while time.perf_counter() < deadline:
            async with self.session.get(f"{self.url}/api/jobs/{job_id}",
                                        headers=self.headers) as r:  # fmt: skip
                job = await r.json()
            now = time.perf_counter()
            if job["lastSeq"] != last:
                last = job["lastSeq"]
                self._seen(job_id, {"type": "job.progress", **job}, now)
            if job["status"] in ("completed", "failed", "cancelled"):
                return
            await asyncio.sleep(0.002)

    async def upload(self, data: bytes, name: str) -> str:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(data), filename=name, content_type="application/pdf")
        async with self.session.post(f"{self.url}/api/jobs", data=form,
                                     headers=self.headers) as r:  # fmt: skip
            job = await r.json()
            if r.status != 202:
                raise RuntimeError(f"upload answered {r.status}: {job}")
        job_id: str = job["jobId"]
        self.watches.setdefault(job_id, Watch())
        if not self.long_poll:
            task = asyncio.create_task(self._poll_job(job_id))
            self._pollers.add(task)
            task.add_done_callback(self._pollers.discard)
        return job_id

    async def finished(self, job_id: str) -> Watch:
        watch = self.watches.setdefault(job_id, Watch())
        async with asyncio.timeout(STEP_TIMEOUT):
            await watch.done.wait()
        if watch.final.get("status") != "completed":
            raise RuntimeError(f"job {job_id} ended {watch.final.get('status')}: {watch.final}")
        return watch

    async def timed_run(self, data: bytes, name: str) -> tuple[float, dict[str, Any]]:
        """Seconds from the start of the upload to job.completed, and the job's result."""
        start = time.perf_counter()
        job_id = await self.upload(data, name)
        watch = await self.finished(job_id)
        return watch.done_at - start, dict(watch.final.get("result") or {})

    async def lag(self, method: str, **body: Any) -> dict[str, Any]:
        async with self.session.request(method, f"{self.url}/api/debug/loop-lag",
                                        json=body or None, headers=self.headers) as r:
            r.raise_for_status()
            data: dict[str, Any] = await r.json()
            return data  # fmt: skip


# -- the measurements -------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


async def measure(client: Client, work: Path, reps: int, lag_reps: int) -> dict[str, Any]:
    docs = Documents()
    # Warm-up, both sides: the server's parsers finish starting, pypdf is imported here.
    warm = docs.new()
    (work / "warmup.pdf").write_bytes(warm)
    pypdf_alone(work / "warmup.pdf")
    await client.timed_run(warm, "warmup.pdf")

    pipeline, direct, ratios, cached = [], [], [], []
    for rep in range(reps):
        data = docs.new()
        path = work / f"doc-{rep}.pdf"
        path.write_bytes(data)
        alone = pypdf_alone(path)
        seconds, result = await client.timed_run(data, path.name)
        if result.get("cacheHit") or result.get("pageCount") != PAGES:
            raise RuntimeError(f"unexpected result: {result}")
        pipeline.append(seconds * 1000)
        direct.append(alone * 1000)
        ratios.append(seconds / alone)
        again, hit = await client.timed_run(data, f"again-{rep}.pdf")
        if not hit.get("cacheHit"):
            raise RuntimeError(f"the second upload was not a cache hit: {hit}")
        cached.append(again * 1000)

    manual_path = corpus.fetch(tuple(d for d in corpus.DOCS if d.name == corpus.MANUAL))[
        corpus.MANUAL
    ]
    manual = manual_path.read_bytes()
    manual_ms, manual_pypdf, manual_pdfium, manual_ratios = [], [], [], []
    for rep in range(max(1, reps // 3)):
        by_pypdf, by_pdfium = pypdf_alone(manual_path), pdfium_alone(manual_path)
        # A comment after the end keeps the PDF as it is and gives it a new sha256 (no cache).
        seconds, result = await client.timed_run(manual + b"\n%% copy %d\n" % rep, "manual.pdf")
        if result.get("cacheHit") or not result.get("pageCount"):
            raise RuntimeError(f"unexpected result: {result}")
        manual_ms.append(seconds * 1000)
        manual_pypdf.append(by_pypdf * 1000)
        manual_pdfium.append(by_pdfium * 1000)
        manual_ratios.append(seconds / by_pypdf)
    manual_pages = int(result["pageCount"])

    lag_p99, lag_max, events_seen, gaps = [], [], [], []
    for _ in range(lag_reps):
        batch = [docs.new(PAGES * 2) for _ in range(CONCURRENT)]
        await client.lag("POST", seconds=STEP_TIMEOUT, intervalMs=5)
        start = time.perf_counter()
        ids = await asyncio.gather(*(client.upload(d, f"parallel-{i}.pdf")
                                     for i, d in enumerate(batch)))  # fmt: skip
        watches = [await client.finished(job_id) for job_id in ids]
        end = max(w.done_at for w in watches)
        stats = await client.lag("DELETE")
        lag_p99.append(float(stats["p99Ms"]))
        lag_max.append(float(stats["maxMs"]))
        stamps = sorted(t for w in watches for t in w.progress_at if start <= t <= end)
        events_seen.append(float(len(stamps)))
        edges = [start, *stamps, end]
        gaps.append(max(b - a for a, b in itertools.pairwise(edges)) * 1000)

    return {
        "pipeline_ms": spread(pipeline),
        "pypdf_ms": spread(direct),
        "ratio": spread(ratios),
        "ratio_of_medians": statistics.median(pipeline) / statistics.median(direct),
        "cache_hit_ms": spread(cached),
        "manual_pages": manual_pages,
        "manual_ms": spread(manual_ms),
        "manual_pypdf_ms": spread(manual_pypdf),
        "manual_pdfium_ms": spread(manual_pdfium),
        "manual_ratio": spread(manual_ratios),
        "manual_pdfium_ratio": spread([b / a for a, b in zip(manual_pypdf, manual_pdfium,
                                                             strict=True)]),
        "loop_lag_p99_ms": spread(lag_p99),
        "loop_lag_max_ms": spread(lag_max),
        "progress_events_while_parsing": spread(events_seen),
        "largest_progress_gap_ms": spread(gaps),
        "events_via": "long-poll" if client.long_poll else "polling every 2 ms",
    }


def _fmt(value: float) -> str:
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def report(m: dict[str, Any], reps: int, lag_reps: int) -> tuple[str, list[dict[str, Any]]]:
    targets = [
        {"target": f"20-page PDF upload to job.completed <= {TARGET_RATIO}x pypdf alone",
         "measured": f"{m['ratio']['median']:.2f}x (median of {reps})",
         "met": m["ratio"]["median"] <= TARGET_RATIO},
        {"target": f"{m['manual_pages']}-page manual upload to job.completed <= "
                   f"{TARGET_MANUAL_RATIO}x pypdf alone",
         "measured": f"{m['manual_ratio']['median']:.3f}x (median of {m['manual_ratio']['n']}; "
                     f"pypdfium2 alone {m['manual_pdfium_ratio']['median']:.3f}x)",
         "met": m["manual_ratio"]["median"] <= TARGET_MANUAL_RATIO},
        {"target": f"cache hit < {TARGET_CACHE_MS:g} ms median",
         "measured": f"{m['cache_hit_ms']['median']:.1f} ms",
         "met": m["cache_hit_ms"]["median"] < TARGET_CACHE_MS},
        {"target": f"event-loop lag p99 < {TARGET_LAG_MS:g} ms while {CONCURRENT} PDFs parse",
         "measured": f"{m['loop_lag_p99_ms']['median']:.1f} ms (median of {lag_reps} runs)",
         "met": m["loop_lag_p99_ms"]["median"] < TARGET_LAG_MS},
        {"target": f"progress events keep flowing while {CONCURRENT} PDFs parse",
         "measured": f"{m['progress_events_while_parsing']['median']:.0f} events, largest gap "
                     f"{m['largest_progress_gap_ms']['median']:.0f} ms",
         "met": m["progress_events_while_parsing"]["min"] > 0},
    ]  # fmt: skip
    rows = [
        (f"{PAGES}-page PDF, upload to job.completed (ms)", m["pipeline_ms"], ""),
        ("pypdf extract_text alone, same files (ms)", m["pypdf_ms"], ""),
        ("ratio pipeline / pypdf", m["ratio"], f"<= {TARGET_RATIO}"),
        (f"{m['manual_pages']}-page manual, upload to job.completed (ms)", m["manual_ms"], ""),
        ("pypdf extract_text alone, the manual (ms)", m["manual_pypdf_ms"], ""),
        ("pypdfium2 alone, the manual (ms)", m["manual_pdfium_ms"], ""),
        ("ratio manual pipeline / pypdf", m["manual_ratio"], f"<= {TARGET_MANUAL_RATIO}"),
        ("ratio pypdfium2 alone / pypdf", m["manual_pdfium_ratio"], ""),
        ("cache hit, upload to job.completed (ms)", m["cache_hit_ms"], f"< {TARGET_CACHE_MS:g}"),
        (f"loop lag p99 while {CONCURRENT} x {PAGES * 2}-page PDFs parse (ms)",
         m["loop_lag_p99_ms"], f"< {TARGET_LAG_MS:g}"),
        ("loop lag max in those runs (ms)", m["loop_lag_max_ms"], ""),
        ("progress events received while they parse", m["progress_events_while_parsing"], "> 0"),
        ("largest gap between progress events (ms)", m["largest_progress_gap_ms"], ""),
    ]  # fmt: skip
    lines = ["| measure | median | min | max | n | target |", "|---|---|---|---|---|---|"]
    for label, s, target in rows:
        lines.append(f"| {label} | {_fmt(s['median'])} | {_fmt(s['min'])} | {_fmt(s['max'])} "
                     f"| {s['n']} | {target} |")  # fmt: skip
    lines.append("")
    lines.append(f"Events read via {m['events_via']}; ratio of medians "
                 f"{m['ratio_of_medians']:.2f}x.")  # fmt: skip
    lines.append("")
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |"
              for t in targets]  # fmt: skip
    return "\n".join(lines), targets


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    reps = 1 if args.quick else 10
    lag_reps = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="pdf-bench-") as tmp:
        work = Path(tmp)
        server = Server(work / "data")
        server.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = Client(session, server.url)
                await client.sign_in()
                try:
                    measured = await measure(client, work, reps, lag_reps)
                finally:
                    await client.close()
        finally:
            server.stop()
    table, targets = report(measured, reps, lag_reps)
    return {
        "markdown": table,
        "targets": targets,
        "measurements": measured,
        "command": " ".join(["python", "bench/pdf_pipeline.py", *sys.argv[1:]]),
        "versions": {
            "python": platform.python_version(),
            "pypdf": pypdf.__version__,
            "pypdfium2": str(pdfium.PYPDFIUM_INFO),
            "aiohttp": aiohttp.__version__,
            "cpus": os.cpu_count(),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of each")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(result["markdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
