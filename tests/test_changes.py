"""The pure state changes every backend shares (``store/changes.py``)."""

from __future__ import annotations

from jobserver.store.changes import new_job_id


def test_job_ids_sort_by_creation_time_and_stay_unique() -> None:
    """Inserts append to the indexes only if later jobs get larger ids."""
    times = [1_700_000_000.0 + i * 0.001 for i in range(200)]
    ids = [new_job_id(t) for t in times]
    assert ids == sorted(ids) and all(len(i) == 32 for i in ids)
    assert len({new_job_id(times[0]) for _ in range(1000)}) == 1000
