"""The offline notes generator's cost: per page of text, and for one 500-page document.

    python bench/pdf_notes.py [--rounds N]

In one process, on the evaluation set's documents with a text layer (``tests/corpus.py``):
the generator's CPU time per page (the engine's excluded), median of the rounds, beside
PDFium's time to read the same pages in the same run; then a 500-page document made of the
set's longest manuals' pages, the issue's worst case (target: 2 s in all). CPU time, not wall
time, because the machine is shared: the generator runs alone in its process either way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobserver.pdf.extract import Document, Limits, read_all  # noqa: E402
from jobserver.pdf.offline import build_notes, warm_up_notes  # noqa: E402
from tests import corpus  # noqa: E402

LIMITS = Limits(1000, 10_000_000)
TARGET_MS_PER_PAGE = 3.0
TARGET_500_S = 2.0
LONG = ("r-exts", "policy", "r-intro", "r-faq")


def cpu(fn: object, rounds: int) -> float:
    """Median CPU seconds of ``fn()`` over ``rounds``."""
    assert callable(fn)
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = max(1, args.rounds)
    paths = corpus.fetch()
    warm_up_notes()
    docs = {d.name: read_all(str(paths[d.name]), LIMITS, lambda p, n: None)
            for d in corpus.DOCS if d.kind != "scanned"}  # fmt: skip
    print(f"median CPU time of {rounds} rounds, one process\n")
    print("| document | pages | PDFium read (ms) | generator (ms) | generator ms/page | "
          "generator / PDFium |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total_pages = 0
    total_gen = 0.0
    for name, doc in docs.items():
        engine = cpu(lambda n=name: read_all(str(paths[n]), LIMITS, lambda p, q: None), rounds)
        gen = cpu(lambda d=doc: build_notes(d), rounds)
        pages = len(doc.pages)
        total_pages += pages
        total_gen += gen
        print(f"| {name} | {pages} | {engine * 1000:.0f} | {gen * 1000:.0f} | "
              f"{gen * 1000 / pages:.2f} | {gen / engine:.2f}x |")  # fmt: skip
    average = total_gen * 1000 / total_pages
    met = "met" if average <= TARGET_MS_PER_PAGE else "NOT met"
    print(f"\nall {total_pages} pages: {average:.2f} ms per page "
          f"(target <= {TARGET_MS_PER_PAGE} ms) - {met}")

    pages: list[str] = []
    sizes: list[tuple[float, ...]] = []
    for name in LONG:
        pages += docs[name].pages
        sizes += docs[name].sizes
    big = Document(tuple(pages[:500]), "A long manual", (), tuple(sizes[:500]))
    gen = cpu(lambda: build_notes(big), rounds)
    verdict = "met" if gen <= TARGET_500_S else "NOT met"
    print(f"500-page document ({', '.join(LONG)} pages, {sum(map(len, big.pages))} characters): "
          f"generator {gen:.2f} s (target <= {TARGET_500_S} s) - {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
