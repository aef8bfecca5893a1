"""The client installs light: ``clients/python`` builds a wheel with aiohttp as its only
dependency, which works in a fresh venv without any of the server's dependencies."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.liveserver import ROOT, LiveServer

CLIENT = ROOT / "jobserver" / "client"


def server_dependencies() -> set[str]:
    """The server's own dependencies (pyproject.toml), but aiohttp, by normalised name."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        wanted = tomllib.load(f)["project"]["dependencies"]
    names = {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0] for spec in wanted}
    return {re.sub(r"[-_.]+", "-", n).lower() for n in names} - {"aiohttp"}


def _imports(path: Path) -> set[str]:
    """Top-level names a module imports; a relative import counts as ``.`` (or ``..``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level if node.level else (node.module or "").split(".")[0])
    return names


def test_the_client_imports_only_the_standard_library_aiohttp_and_itself() -> None:
    stdlib = sys.stdlib_module_names
    for path in sorted(CLIENT.glob("*.py")):
        outside = {n for n in _imports(path) if n not in stdlib and n not in {"aiohttp", "."}}
        assert not outside, f"{path.name} imports {outside}: the client must stay light"


def _run(*cmd: str | Path, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with nothing but the client's wheel and what pip brings for it."""
    where = tmp_path_factory.mktemp("light")
    # Built with this environment's setuptools (a test dependency): no download for it.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", where / "dist", ROOT / "clients" / "python", cwd=where)  # fmt: skip
    wheels = list((where / "dist").glob("jobserver_client-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        shipped = {n for n in wheel.namelist() if not n.startswith("jobserver_client-")}
    assert shipped == {f"jobserver/client/{p.name}" for p in CLIENT.iterdir() if p.is_file()
                       and p.suffix in (".py", ".typed")}  # fmt: skip
    venv.EnvBuilder(with_pip=False).create(where / "venv")  # this pip installs into it
    python = where / "venv" / "bin" / "python"
    _pip(python, "install", "-q", wheels[0], cwd=where)
    return python


def _pip(python: Path, *args: str | Path, cwd: Path) -> str:
    """pip run from the test's own environment, acting on the venv of ``python``."""
    return _run(sys.executable, "-m", "pip", "--python", python, *args, cwd=cwd)


def test_the_light_install_has_the_client_and_none_of_the_servers_dependencies(
    light_venv: Path, tmp_path: Path
) -> None:
    listed = json.loads(_pip(light_venv, "list", "--format=json", cwd=tmp_path))
    installed = {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in listed}
    assert "jobserver-client" in installed and "aiohttp" in installed
    heavy = server_dependencies()
    assert {"aiosqlite", "orjson", "rich", "prometheus-client"} <= heavy
    assert not installed & heavy, f"server dependencies came along: {installed & heavy}"
    assert "jobserver" not in installed
    probe = textwrap.dedent("""
        import importlib.util, json, jobserver.client
        print(json.dumps({
            "client": jobserver.client.__file__,
            "server": importlib.util.find_spec("jobserver.app") is not None,
        }))
    """)  # fmt: skip
    found = json.loads(_run(light_venv, "-c", probe, cwd=tmp_path))
    site = sysconfig.get_path("purelib", vars={"base": str(light_venv.parent.parent)})
    assert found["client"].startswith(site) and not found["server"]


def test_the_light_install_hands_work_to_a_real_server(light_venv: Path, tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        script = textwrap.dedent("""
            import asyncio, sys
            from jobserver.client import Client, JobCompleted, NotFound, SyncClient

            async def main(url):
                async with await Client.sign_in(url, "light") as client:
                    async with client.follow() as events:
                        job = await client.submit("demo.sleep", {"seconds": 0.2, "steps": 2})
                        async for event in events:
                            if isinstance(event, JobCompleted):
                                break
                    done = await client.wait(job.jobId, timeout=30)
                    try:
                        await client.get("missing")
                    except NotFound as exc:
                        code = exc.code
                    return done.status, code

            status, code = asyncio.run(main(sys.argv[1]))
            with SyncClient.sign_in(sys.argv[1], "light") as client:
                job = client.submit("demo.sleep", {"seconds": 0, "steps": 1})
                sync_status = client.wait(job.jobId, timeout=30).status
            print(status, code, sync_status)
        """)  # fmt: skip
        out = _run(light_venv, "-c", script, live.url, cwd=tmp_path, timeout=120)
        assert out.split() == ["completed", "JOB_NOT_FOUND", "completed"]
    finally:
        live.stop()


def test_the_servers_distribution_lists_every_package_so_it_ships_the_client_too() -> None:
    """``pip install .`` installs the packages pyproject.toml names: all of them, the client
    among them."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "jobserver").rglob("__init__.py")
    }
    assert "jobserver.client" in found and listed == found
