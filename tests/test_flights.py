"""Flights: the shared work on one file, followed by every job that asks for it."""

from __future__ import annotations

import asyncio

import pytest

from jobserver.errors import JobError
from jobserver.pdf.flights import Flight, Update


async def test_a_flight_cancelled_before_it_started_releases_its_followers() -> None:
    started = False

    async def work(flight: Flight) -> None:
        nonlocal started
        started = True

    flight = Flight(work)
    flight.task.cancel()  # before the task's first step: its body never runs
    follower = flight.join()

    async def report(update: Update) -> None:
        pass

    with pytest.raises(JobError) as failure:
        await asyncio.wait_for(flight.follow(follower, report), 5)
    assert failure.value.code == "PARSE_CRASHED" and not started
