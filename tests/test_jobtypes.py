"""The public job-type API: declaring types and stages, loading modules, and running them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest

from jobserver import JobContext, Stage, job_type
from jobserver.config import Settings
from jobserver.errors import InvalidPayload
from jobserver.plugins import StartupError, load

from .conftest import MakeApi
from .liveserver import ROOT, LiveServer, call
from .test_api import wait_status

SHAPES = "tests.plugins.shapes"


def settings(tmp_path: Path, *jobs: str, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", jobs=jobs, **kw)


def test_a_module_s_job_types_and_their_stages_are_loaded(tmp_path: Path) -> None:
    plugins = load(settings(tmp_path, SHAPES))
    registry = plugins.registry
    assert {"pdf-notes", "shapes.draw", "shapes.slow", "shapes.rogue"} <= set(registry.names())
    names = registry.stage_names()
    assert names["measuring"] == "Measuring the shape" and names["drawing"] == "Drawing it"
    assert names["extracting"] == "Extracting text"  # the PDF plugin's, merged
    assert names["queued"] == "Waiting in queue"  # the server's own
    draw = registry.get("shapes.draw")
    assert draw.display_name == "Draw a shape" and draw.options.max_attempts == 2
    assert draw.label_for({"sides": 5}) == "5-gon"


def test_built_in_types_can_be_turned_off(tmp_path: Path) -> None:
    plugins = load(settings(tmp_path, SHAPES, disable_job_types=("pdf-notes", "shapes.slow")))
    assert "pdf-notes" not in plugins.registry.names()
    assert "shapes.slow" not in plugins.registry.names()
    assert plugins.storage_modules == []  # the PDF plugin was not set up at all
    assert "pdf-notes" in load(settings(tmp_path)).registry.names()  # on by default


@pytest.mark.parametrize(
    ("modules", "words"),
    [
        ((SHAPES, "tests.plugins.clash"), ["'measuring'", "Measuring the shape",
                                           "Taking measurements", "tests.plugins.clash"]),
        ((SHAPES, "tests.plugins.twice"), ["'shapes.draw'", "declared twice", SHAPES,
                                           "tests.plugins.twice"]),
        (("tests.plugins.broken",), ["tests.plugins.broken", "jobserver_does_not_exist"]),
        (("tests.plugins.nowhere",), ["tests.plugins.nowhere"]),
        (("tests.plugins",), ["declares no job type"]),
    ],
)  # fmt: skip
def test_what_cannot_be_loaded_stops_start_up_naming_the_module(
    tmp_path: Path, modules: tuple[str, ...], words: list[str]
) -> None:
    with pytest.raises(StartupError) as caught:
        load(settings(tmp_path, *modules))
    for word in words:
        assert word in str(caught.value)


def test_the_server_refuses_to_start_with_a_module_that_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--jobs", SHAPES, "--jobs", "tests.plugins.broken"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "tests.plugins.broken" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("(LOAD_FAILED)"), done.stderr


@pytest.mark.parametrize("script", ["server.py", "jobserver"])
def test_jobs_finds_a_module_in_the_folder_the_server_starts_in(
    tmp_path: Path, script: str
) -> None:
    """The docs' `mytasks.py` + `--jobs mytasks` failed with ModuleNotFoundError unless the file
    sat beside server.py. This one is found: its import says so, and start-up stops there."""
    (tmp_path / "drive_mytasks.py").write_text("raise RuntimeError('found drive_mytasks')\n")
    argv = ([sys.executable, str(ROOT / "server.py")] if script == "server.py"
            else [str(Path(sys.executable).parent / "jobserver")])  # fmt: skip
    done = subprocess.run(
        [*argv, "--port", "0", "--data-dir", str(tmp_path / "d"), "--jobs", "drive_mytasks"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "found drive_mytasks" in done.stderr, done.stderr


def test_job_types_come_from_an_installed_package_s_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution that offers ``shapes`` in the ``jobserver.job_types`` group; it is
    loaded only when named."""
    site = tmp_path / "site"
    info = site / "shapes_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shapes-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[jobserver.job_types]\nshapes = {SHAPES}\n")
    monkeypatch.syspath_prepend(str(site))
    assert "shapes.draw" not in load(settings(tmp_path)).registry.names()
    assert "shapes.draw" in load(settings(tmp_path, "shapes")).registry.names()


def test_stage_and_type_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="server"):
        Stage("completed", "Done")
    with pytest.raises(ValueError, match="stage id"):
        Stage("Has Spaces", "x")
    with pytest.raises(ValueError, match="twice"):
        job_type("t.x", stages=[Stage("a", "A"), Stage("a", "A")])(_noop)
    with pytest.raises(ValueError, match="timeout"):
        job_type("t.x", process=True, timeout=None)(_noop)


async def _noop(ctx: JobContext) -> dict[str, Any]:
    return {}


class Thumb(pydantic.BaseModel):
    width: int = pydantic.Field(gt=0, le=4096)
    name: str = "image"


def test_a_pydantic_model_checks_and_normalises_the_payload() -> None:
    jt = job_type("img.thumb", payload=Thumb)(_noop)
    check = jt.options.check_payload
    assert check is not None
    assert check({"width": 64}) == {"width": 64, "name": "image"}
    with pytest.raises(InvalidPayload, match="width"):
        check({"width": -1})


async def test_jobs_of_a_loaded_type_run_with_their_stages_labels_and_retries(
    make_api: MakeApi,
) -> None:
    api = await make_api(jobs=(SHAPES,))
    status, meta = await api.get("/api/meta")
    assert status == 200
    assert meta["stageNames"]["measuring"] == "Measuring the shape"
    assert meta["types"]["shapes.draw"] == {
        "displayName": "Draw a shape", "stages": ["measuring", "drawing"], "acceptsUpload": False,
    }  # fmt: skip
    assert meta["types"]["pdf-notes"]["acceptsUpload"] is True
    assert set(meta["terminalStatuses"]) == {"completed", "failed", "cancelled"}
    status, job = await api.post("/api/jobs", json={"type": "shapes.draw",
                                                    "payload": {"sides": 6, "fail": True}})
    assert status == 202 and job["label"] == "6-gon"
    done = await wait_status(api, job["jobId"], "completed", "failed", timeout=30)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    assert done["label"] == "6-gon, drawn" and done["result"]["attempt"] == 2
    status, page = await api.get(f"/api/events?since=0&jobId={job['jobId']}&timeout=0")
    stages = [e["stage"] for e in page["events"]]
    assert stages == ["queued", "initializing", "measuring", "queued", "initializing",
                      "measuring", "drawing", "completed"]  # fmt: skip
    retry = page["events"][3]
    assert retry["type"] == "job.retrying" and retry["error"]["code"] == "SHAPE_WOBBLED"
    assert all(e["jobType"] == "shapes.draw" for e in page["events"])
    status, mine = await api.post("/api/jobs", json={"type": "shapes.draw", "label": "Mine",
                                                     "payload": {"sides": 3}})
    assert status == 202 and mine["label"] == "Mine"
    status, bad = await api.post("/api/jobs", json={"type": "shapes.draw",
                                                    "payload": {"sides": 2}})
    assert status == 400 and bad["error"]["code"] == "INVALID_PAYLOAD"


async def test_a_handler_reporting_an_undeclared_stage_fails_with_a_code(
    make_api: MakeApi,
) -> None:
    api = await make_api(jobs=(SHAPES,))
    _, job = await api.post("/api/jobs", json={"type": "shapes.rogue"})
    done = await wait_status(api, job["jobId"], "failed", "completed", timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "UNKNOWN_STAGE"
    assert "painting" in done["error"]["message"] and done["error"]["recoverable"] is False


async def test_a_type_s_concurrency_limit_holds(make_api: MakeApi) -> None:
    api = await make_api(jobs=(SHAPES,), concurrency=8)
    ids = []
    for _ in range(4):
        _, job = await api.post("/api/jobs", json={"type": "shapes.slow",
                                                   "payload": {"seconds": 0.2}})
        ids.append(job["jobId"])
    _, other = await api.post("/api/jobs", json={"type": "shapes.draw", "payload": {"sides": 4}})
    for job_id in [*ids, other["jobId"]]:
        await wait_status(api, job_id, "completed", timeout=30)
    _, page = await api.get("/api/events?since=0&timeout=0")
    running: set[str] = set()
    most = 0
    for event in page["events"]:
        if event["jobType"] != "shapes.slow":
            continue
        if event["stage"] == "initializing":
            running.add(event["jobId"])
        elif event["status"] == "completed":
            running.discard(event["jobId"])
        most = max(most, len(running))
    assert most == 1


async def test_cancelling_a_loaded_type_s_job_stops_it(make_api: MakeApi) -> None:
    api = await make_api(jobs=(SHAPES,))
    _, job = await api.post("/api/jobs", json={"type": "shapes.slow", "payload": {"seconds": 30}})
    await wait_status(api, job["jobId"], "active", timeout=30)
    await asyncio.sleep(0.05)
    status, cancelled = await api.post(f"/api/jobs/{job['jobId']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"


def test_a_label_function_that_fails_on_a_payload_is_a_400_not_a_500(tmp_path: Path) -> None:
    """The docs' `label=lambda p: p["url"]`, sent a payload without `url`, answered 500
    INTERNAL_ERROR; it is the submitter's 400 INVALID_PAYLOAD, and the server goes on."""
    live = LiveServer(tmp_path / "data", "--jobs", "tests.plugins.wordcount").start()
    try:
        token = live.token("lena")

        def post(body: dict[str, Any]) -> tuple[int, Any]:
            return call(live, "POST", "/api/jobs", token, body)

        status, body = post({"type": "web.wordcount", "payload": {}})
        assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD", body
        assert "web.wordcount" in body["error"]["message"] and "url" in body["error"]["message"]
        status, body = post({"jobs": [{"type": "web.wordcount", "payload": {"url": "u"}},
                                      {"type": "web.wordcount", "payload": {"nope": 1}}]})
        assert status == 400 and body["error"]["index"] == 1, body
        status, body = post({"type": "web.wordcount", "payload": {"url": "http://x/"}})
        assert status == 202 and body["label"] == "http://x/", body
    finally:
        live.stop()
