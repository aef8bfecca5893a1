"""Real PDFs for the notes evaluation and the engine bench, fetched from PyPI and Debian.

Nobody here wrote them: they ship in PyPI source distributions (pypdf's and OCRmyPDF's test
files) and in Debian documentation packages (R's manuals and package vignettes, the Debian
Policy, TeX Live documentation). Each is pinned by package version and by the SHA-256 of the
PDF itself, and cached under ``.cache/eval-pdfs/`` (gitignored; ``JOBSERVER_EVAL_CACHE``
moves it), so only the first run downloads. Every file keeps its package's licence: the
package's copyright file (Debian) or licence (PyPI) says which, and none is committed here.

    python -m tests.corpus        # fetch everything, print where it is
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FETCH_TIMEOUT = 600


@dataclass(frozen=True, slots=True)
class Doc:
    """One PDF of the evaluation set.

    Args:
        name: short id (the cached file is ``<name>.pdf``).
        source: ``pypi:NAME==VERSION`` (its sdist) or ``deb:NAME=VERSION``.
        member: path of the PDF inside the sdist or package (``.gz`` is unpacked).
        sha256: of the PDF itself.
        kind: guideline, manual (specifications too), essay, paper, slides or scanned.
        lang: ISO 639-1 code of its text.
        references: it has a references or bibliography section.
        running_headers: its pages repeat a header or footer line.
    """

    name: str
    source: str
    member: str
    sha256: str
    kind: str
    lang: str = "en"
    references: bool = False
    running_headers: bool = False


PYPDF = "pypi:pypdf==7.1.1"
OCRMYPDF = "pypi:ocrmypdf==17.13.0"
R_DOC = "deb:r-doc-pdf=4.2.2.20221110-2"
POLICY = "deb:debian-policy=4.6.2.0"
TL_GERMAN = "deb:texlive-lang-german=2022.20230122-1"
TL_RECOMMENDED = "deb:texlive-latex-recommended-doc=2022.20230122-3"
SITE = "usr/lib/R/site-library"
TLDOC = "usr/share/doc/texlive-doc/latex"

DOCS: tuple[Doc, ...] = (
    Doc("policy", POLICY, "usr/share/doc/debian-policy/policy.pdf.gz",
        "220f9366d6deb3984e84236f02f04bdd6275d6fe7b5587acd6c689dfeb99020f", "guideline",
        running_headers=True),
    Doc("scrjura", TL_GERMAN, f"{TLDOC}/koma-script-examples/Kapitel-11/result/scrjuraexample.pdf",
        "1d0afc156486538136db90adffa7f963ab16f42ba03fd15785d261274c4aad2c", "guideline", "de"),
    Doc("fhs", POLICY, "usr/share/doc/debian-policy/fhs/fhs-3.0.pdf.gz",
        "53d239e569a2d7b31a74fa09d585368c0f5a164e4624723fa2894660dd10fd23", "manual",
        running_headers=True),
    Doc("geobase", PYPDF, "pypdf-7.1.1/resources/GeoBase_NHNC1_Data_Model_UML_EN.pdf",
        "738c3bd4d56f3ffa5b88861c8c7b6b5c87ceee292fb9e6e8fa729c5f10288667", "manual",
        running_headers=True),
    Doc("r-intro", R_DOC, "usr/share/R/doc/manual/R-intro.pdf",
        "337ccd0b490b1e66f7e783b45f4588d0599730b4206c0c051edfe1419c568c51", "manual",
        running_headers=True),
    Doc("r-exts", R_DOC, "usr/share/R/doc/manual/R-exts.pdf",
        "792220b273d40e8629664d5dd0d6ae4151419d14f613a949aebe85b8c2a1f85c", "manual",
        running_headers=True),
    Doc("r-faq", R_DOC, "usr/share/R/doc/manual/R-FAQ.pdf",
        "de8768520d4fb90dad64c28483ffb92dca7dd9d8dc8556905b35c2e62a939255", "manual",
        running_headers=True),
    Doc("zoo-faq", "deb:r-cran-zoo=1.8-11-1", f"{SITE}/zoo/doc/zoo-faq.pdf",
        "10441a849d6dcd7901cdeca635d798ac6171e005a1530693d0228c6550fb6087", "manual"),
    Doc("lualatex-de", TL_GERMAN, f"{TLDOC}/lualatex-doc-de/lualatex-doc-DE.pdf",
        "3d9954892bb32ab3e2e85186c3cd2127bc5251b0400fcfa5733697bd963ef95e", "manual", "de"),
    Doc("hausarbeit-jura", TL_GERMAN, f"{TLDOC}/hausarbeit-jura/hausarbeit-jura.pdf",
        "4eba82a7c71368db6010d40bae695630c0c8bba7063d11ec0ba54a6282113305", "manual", "de"),
    Doc("eyesj-fr", "deb:expeyes-doc-fr=4.3-3", "usr/share/expeyes/doc/fr-eyesj-progman.pdf",
        "ecabecb6e0f6d6e91df7bf4b638c19d05f837eceabc6253e593f50eed5e31733", "manual", "fr"),
    Doc("crazyones", PYPDF, "pypdf-7.1.1/resources/crazyones.pdf",
        "9c59fa59b3e5ac73f8fa894a11bd17f8c92030dcf6d91924f133f8887456b3bc", "essay"),
    Doc("vicksburg", PYPDF, "pypdf-7.1.1/resources/Seige_of_Vicksburg_Sample_OCR.pdf",
        "e8b9d461f035f8ce2440f9061d35b2164148eb3511a487aacfc26a94cb9d90fe", "essay",
        running_headers=True),
    Doc("l2tabu", TL_GERMAN, f"{TLDOC}/l2tabu/l2tabu.pdf",
        "785c3e6662fea5097ec854d96a9521eca4fb3b6f762dbc6f4d7521ec08061e8f", "essay", "de",
        running_headers=True),
    Doc("zoo", "deb:r-cran-zoo=1.8-11-1", f"{SITE}/zoo/doc/zoo.pdf",
        "fd63de7b0dc3122272339ff49e6ceeb47ea71a89a9cb5b7c411c78a7d6c8c332", "paper",
        references=True, running_headers=True),
    Doc("sandwich", "deb:r-cran-sandwich=3.0-2-1", f"{SITE}/sandwich/doc/sandwich.pdf",
        "ab762c22ff2d6b0c26e6e642171f116a11ec4dcfe58821148bdf41856f293a1b", "paper",
        references=True, running_headers=True),
    Doc("sandwich-cl", "deb:r-cran-sandwich=3.0-2-1", f"{SITE}/sandwich/doc/sandwich-CL.pdf",
        "f3a765482a629c8c9369020d13632ec5c37520df17e22266eb9e2928270e94bb", "paper",
        references=True, running_headers=True),
    Doc("lmtest", "deb:r-cran-lmtest=0.9.40-1", f"{SITE}/lmtest/doc/lmtest-intro.pdf",
        "a60f149a85222f49e47cdd1a432719f044e4f32c1cdb229f91af8e9171ac87b7", "paper",
        references=True),
    Doc("strucchange", "deb:r-cran-strucchange=1.5-3-1",
        f"{SITE}/strucchange/doc/strucchange-intro.pdf",
        "56587481ea07ff51645290c24e328d4461656bcbf19d6e9426056e7559a4a198", "paper",
        references=True, running_headers=True),
    Doc("survival-compete", "deb:r-cran-survival=3.5-3-1",
        "usr/lib/R/library/survival/doc/compete.pdf",
        "1d83a2c90440051bef67554f06c942e418645a07e56d44e7cb1c42ba7c40ba88", "paper"),
    Doc("survival-validate", "deb:r-cran-survival=3.5-3-1",
        "usr/lib/R/library/survival/doc/validate.pdf",
        "bad9bc7ef9940a735197e2f5bf0d353690c99a3dd1af5da7aa13c48b93ce5d8b", "paper",
        references=True),
    Doc("beamer-talk", TL_RECOMMENDED, f"{TLDOC}/beamer/beamerexample-conference-talk.pdf",
        "4b11425166212ed695a5c99506303bddd7cc1beb02b17da48565c48f51eb38d6", "slides",
        running_headers=True),
    Doc("beamer-lecture", TL_RECOMMENDED,
        f"{TLDOC}/beamer/beamerexample-lecture-beamer-version.pdf",
        "282e8a68d95e0f7afb6d4ab8fe17abf53449dc6274acb694bf3806e81da31b88", "slides", "de",
        running_headers=True),
    Doc("linn", OCRMYPDF, "ocrmypdf-17.13.0/tests/resources/linn.pdf",
        "e923f6e8e036185f8f2aae5f7fdeefd8ac658d627cebd4ebf630de4cbf0a2d64", "scanned"),
    Doc("francais", OCRMYPDF, "ocrmypdf-17.13.0/tests/resources/francais.pdf",
        "600c27f8dd2ef085a94d3500f6ccdb3b37f4b89aa8ffdf9a00a06a1367887e8b", "scanned", "fr"),
    Doc("skew", OCRMYPDF, "ocrmypdf-17.13.0/tests/resources/skew.pdf",
        "6be6b54d49df71351974774404e299b756d8d3cbeb2c4a31f15fae8dd983d72f", "scanned"),
)  # fmt: skip

# The one 200-300-page manual the pipeline bench times against the engines alone.
MANUAL = "r-exts"


def cache_dir() -> Path:
    return Path(os.environ.get("JOBSERVER_EVAL_CACHE") or ROOT / ".cache" / "eval-pdfs")


class FetchError(RuntimeError):
    """A package could not be downloaded, or a PDF in it is not the pinned one."""


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
    if done.returncode != 0:
        raise FetchError(f"{' '.join(args)} failed: {done.stderr.strip()[-400:]}")


def _download(source: str, work: Path) -> Path:
    """The sdist or .deb of ``source`` in ``work``."""
    kind, spec = source.split(":", 1)
    if kind == "pypi":
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              "--disable-pip-version-check", "-q", "-d", str(work), spec], work)  # fmt: skip
        return next(work.glob("*.tar.gz"))
    try:
        _run(["apt-get", "download", spec], work)
    except FetchError:  # the package lists may be missing or stale: refresh them once
        _run(["apt-get", "update", "-qq"], work)
        _run(["apt-get", "download", spec], work)
    return next(work.glob("*.deb"))


def _members(archive: Path, members: list[str], prefix: str, out: Path) -> None:
    """Unpack ``members`` of an sdist or a .deb (its data, streamed), and every file under
    ``prefix`` if one is given, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    unpack: subprocess.Popen[bytes] | None = None
    if archive.suffix == ".deb":
        unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)],
                                  stdout=subprocess.PIPE)  # fmt: skip
        assert unpack.stdout is not None
        tar, lead = tarfile.open(fileobj=unpack.stdout, mode="r|"), "./"  # noqa: SIM115
    else:
        tar, lead = tarfile.open(archive), ""  # noqa: SIM115
    wanted = {lead + m for m in members}
    try:
        with tar:
            for info in tar:
                name = info.name.removeprefix(lead)
                if not info.isfile() or not (
                    info.name in wanted or (prefix and name.startswith(prefix))
                ):
                    continue
                source = tar.extractfile(info)
                assert source is not None
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                wanted.discard(info.name)
                if not wanted and not prefix:
                    break
    finally:
        if unpack is not None:
            unpack.kill()
            unpack.wait(timeout=FETCH_TIMEOUT)
            assert unpack.stdout is not None
            unpack.stdout.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch_source(source: str, docs: list[Doc], prefix: str, root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="eval-pdfs-") as tmp:
        work = Path(tmp)
        archive = _download(source, work)
        _members(archive, [d.member for d in docs], prefix, work / "x")
        for doc in docs:
            got = work / "x" / doc.member
            if not got.exists():
                raise FetchError(f"{doc.member} is not in {source}")
            if got.suffix == ".gz":
                got.write_bytes(gzip.decompress(got.read_bytes()))
            if _sha256(got) != doc.sha256:
                raise FetchError(f"{doc.name}: the PDF in {source} is not the pinned one")
            shutil.copyfile(got, root / f"{doc.name}.pdf")
        if prefix:
            target = root / "extra" / prefix
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(work / "x" / prefix, target)
            (target / ".complete").touch()


def fetch(docs: tuple[Doc, ...] = DOCS, *, extra: dict[str, str] | None = None) -> dict[str, Path]:
    """Every doc's cached path (downloading what is missing, a few sources at once);
    FetchError if one cannot be had.

    ``extra`` maps a source to a folder in it whose files are wanted too, unpinned, cached
    under ``extra/`` as they are named there (pypdf's ``resources/``, for the hostile files).
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    missing: dict[str, list[Doc]] = {}
    for doc in docs:
        path = root / f"{doc.name}.pdf"
        if not path.exists() or _sha256(path) != doc.sha256:
            missing.setdefault(doc.source, []).append(doc)
    for source, prefix in (extra or {}).items():
        if not (root / "extra" / prefix / ".complete").exists():
            missing.setdefault(source, [])
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(_fetch_source, source, wanted, (extra or {}).get(source, ""), root)
                for source, wanted in missing.items()]  # fmt: skip
        for job in jobs:
            job.result()
    return {d.name: root / f"{d.name}.pdf" for d in docs}


PYPDF_RESOURCES = "pypdf-7.1.1/resources/"


def pypdf_resources() -> list[Path]:
    """Every PDF in pypdf's sdist ``resources/`` (its encryption cases included)."""
    fetch((), extra={PYPDF: PYPDF_RESOURCES})
    return sorted((cache_dir() / "extra" / PYPDF_RESOURCES).rglob("*.pdf"))


if __name__ == "__main__":
    for name, path in fetch(extra={PYPDF: PYPDF_RESOURCES}).items():
        print(f"{name:20s} {path}")
