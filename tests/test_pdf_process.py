"""Parser processes and the real server process: none outlives a killed server."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import aiohttp

from tests import pdfs
from tests.liveserver import LiveServer


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_server_leaves_no_parser_running(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", pdf_workers=2)
    url = server.start().url
    try:
        assert server.proc is not None
        async with asyncio.timeout(30):
            while len(parsers := children(server.proc.pid)) < 2:
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/api/session", json={"userId": "alice"}) as resp:
                token = (await resp.json())["token"]
            form = aiohttp.FormData()
            # Seconds of parsing: only being killed with the server ends it sooner.
            form.add_field("file", io.BytesIO(pdfs.slow_pdf()), filename="slow.pdf",
                           content_type="application/pdf")  # fmt: skip
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{url}/api/jobs", data=form, headers=headers) as resp:
                assert resp.status == 202
                job = await resp.json()
            async with asyncio.timeout(30):  # the file was read; a parser has it now
                while True:
                    async with session.get(f"{url}/api/jobs/{job['jobId']}",
                                           headers=headers) as resp:  # fmt: skip
                        if (await resp.json())["message"].startswith("Read "):
                            break
                    await asyncio.sleep(0.05)
            start = {pid: cpu_seconds(pid) for pid in parsers}
            async with asyncio.timeout(30):  # and is busy with it (past its warm-up)
                while max(cpu_seconds(pid) - start[pid] for pid in parsers) < 0.5:
                    await asyncio.sleep(0.05)
    finally:
        server.kill()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in parsers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not [pid for pid in parsers if alive(pid)], "parsers outlived the server"
