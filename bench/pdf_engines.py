"""PDF engines compared: pypdf against pypdfium2 (PDFium) extracting every page's text.

    python bench/pdf_engines.py [--rounds N] [--json PATH]

In one process, on the pipeline bench's 20-page PDF and on real documents (the evaluation set
of ``tests/corpus.py``, fetched from PyPI and Debian on first use): the median seconds of each
engine reading every page's text, the ratio pypdfium2 / pypdf, and how much text each found
(so a fast engine that reads less would show). Every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pypdf
import pypdfium2 as pdfium

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pdf_pipeline import make_pdf  # noqa: E402
from tests import corpus  # noqa: E402

# Real documents of every size the set has, the 200-300-page manual among them.
REAL = ("r-exts", "policy", "r-intro", "fhs", "zoo", "geobase", "beamer-talk", "l2tabu",
        "sandwich-cl", "vicksburg")  # fmt: skip


def with_pypdf(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    reader = pypdf.PdfReader(path)
    chars = sum(len(page.extract_text()) for page in reader.pages)
    return time.perf_counter() - start, chars


def with_pdfium(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    doc = pdfium.PdfDocument(str(path))
    chars = 0
    for index in range(len(doc)):
        page = doc[index]
        text_page = page.get_textpage()
        chars += len(text_page.get_text_range())
        text_page.close()
        page.close()
    doc.close()
    return time.perf_counter() - start, chars


def measure(path: Path, rounds: int) -> dict[str, float]:
    a = [with_pypdf(path) for _ in range(rounds)]
    b = [with_pdfium(path) for _ in range(rounds)]
    slow, fast = statistics.median(t for t, _ in a), statistics.median(t for t, _ in b)
    return {"pages": len(pypdf.PdfReader(path).pages), "pypdf_ms": slow * 1000,
            "pdfium_ms": fast * 1000, "ratio": fast / slow,
            "pypdf_chars": a[0][1], "pdfium_chars": b[0][1]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # pypdf's complaints about real files' small faults
    paths = corpus.fetch(tuple(d for d in corpus.DOCS if d.name in REAL))
    with tempfile.TemporaryDirectory() as tmp:
        bench_pdf = Path(tmp) / "bench-20.pdf"
        bench_pdf.write_bytes(make_pdf(0))
        files = {"bench 20-page PDF": bench_pdf, **{n: paths[n] for n in REAL}}
        rows = {name: measure(path, max(1, args.rounds)) for name, path in files.items()}
    print(f"pypdf {pypdf.__version__} vs pypdfium2 {pdfium.PYPDFIUM_INFO} "
          f"(PDFium {pdfium.PDFIUM_INFO}), median of {args.rounds} rounds, one process\n")
    print("| file | pages | pypdf (ms) | pypdfium2 (ms) | pypdfium2 / pypdf | text chars "
          "pypdf / pypdfium2 |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['pages']:.0f} | {r['pypdf_ms']:.0f} | {r['pdfium_ms']:.1f} | "
              f"{r['ratio']:.3f}x | {r['pypdf_chars']:.0f} / {r['pdfium_chars']:.0f} |")
    ratios = [r["ratio"] for r in rows.values()]
    print(f"\nmedian ratio {statistics.median(ratios):.3f}x "
          f"(pypdfium2 {1 / statistics.median(ratios):.1f}x faster)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
