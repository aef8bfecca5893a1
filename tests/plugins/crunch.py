"""CPU-bound job types run in worker processes (``process=True``), with stages of their own."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from jobserver import JobError, ProcessContext, Stage, job_type

COUNTING = Stage("counting", "Counting primes")
SUMMING = Stage("summing", "Adding them up")
MB = 1024 * 1024


@job_type("crunch.primes", display_name="Count primes", stages=[COUNTING, SUMMING],
          process=True, timeout=60, label=lambda p: f"primes below {p.get('below')}")  # fmt: skip
def primes(ctx: ProcessContext) -> dict[str, Any]:
    below = int(ctx.payload.get("below", 20_000))
    ctx.log.info("counting primes below %d", below)
    found = []
    for n in range(2, below):
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        if n % (below // 4) == 0:
            ctx.progress(COUNTING, 80 * n / below, f"{len(found)} primes below {n}",
                         {"n": n, "pid": os.getpid()})  # fmt: skip
    ctx.progress(SUMMING, 90, "Adding them up", label=f"{len(found)} primes")
    return {"title": f"{len(found)} primes below {below}", "count": len(found),
            "sum": sum(found), "pid": os.getpid(), "attempt": ctx.attempt}  # fmt: skip


@job_type("crunch.forever", stages=[COUNTING], process=True, timeout=1.5, max_attempts=1)
def forever(ctx: ProcessContext) -> dict[str, Any]:
    """Counts for ever and never looks at ``ctx.cancelled``: only its timeout stops it."""
    ctx.progress(COUNTING, 5, "Counting for ever", {"pid": os.getpid()})
    n = 0
    while True:
        n += 1


@job_type("crunch.spin", stages=[COUNTING], process=True, timeout=120, max_attempts=1)
def spin(ctx: ProcessContext) -> dict[str, Any]:
    """Like ``forever`` but with a long timeout: a cancel has to stop it."""
    ctx.progress(COUNTING, 5, "Spinning", {"pid": os.getpid()})
    while True:
        pass


@job_type("crunch.hog", process=True, memory_mb=256, max_attempts=2, timeout=60)
def hog(ctx: ProcessContext) -> dict[str, Any]:
    """Allocates 16 MB at a time until its 256 MB address space runs out."""
    ctx.progress("processing", 10, "Allocating", {"pid": os.getpid()})
    blocks = []
    for _ in range(1000):  # 16 GB at most: far past the cap
        blocks.append(bytearray(16 * MB))
    return {"blocks": len(blocks)}


@job_type("crunch.crash", process=True, max_attempts=1, timeout=30)
def crash(ctx: ProcessContext) -> dict[str, Any]:
    """Takes its process down: ``exit`` (os._exit) or ``segfault`` (SIGSEGV)."""
    ctx.progress("processing", 10, "About to crash", {"pid": os.getpid()})
    if ctx.payload.get("how") == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    os._exit(7)


@job_type("crunch.patient", stages=[COUNTING], process=True, timeout=60, concurrency=1)
def patient(ctx: ProcessContext) -> dict[str, Any]:
    """Works in small steps and stops early once ``ctx.cancelled``, noting it in a file."""
    ctx.progress(COUNTING, 5, "Waiting to be cancelled", {"pid": os.getpid()})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ctx.cancelled:
            Path(ctx.payload["mark"]).write_text(f"stopped {os.getpid()}")
            raise JobError("STOPPED", "Stopped as asked")
        time.sleep(0.02)
    return {"stoppedEarly": False}


@job_type("crunch.rogue", process=True, timeout=30)
def rogue(ctx: ProcessContext) -> dict[str, Any]:
    """Reports a stage it never declared: the progress call raises UNKNOWN_STAGE."""
    ctx.progress("painting", 50)
    return {}
