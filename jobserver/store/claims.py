"""What one claim may take: each capped job type's and each user's room, shared by all backends.

A claim takes due jobs oldest first, but no more of a job type than its ``caps`` entry (its
concurrency less what already runs) and, with ``per_user``, no more of one user's jobs than
that user has room for on this worker pool (``max_running_per_user`` less what the user
already runs), so one user's backlog cannot hold every worker while another user waits.
A backend reads pages of at most ``want`` due jobs, oldest first, excluding the types and users
that are full, and claims the jobs ``page`` picks from each, while ``more`` says another page
may hold one.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..models import Job

# (most jobs one user may run at once on the claiming pool, {user: jobs it runs now})
PerUser = tuple[int, dict[str, int]]


class ClaimBudget:
    """The room left, per capped type and per user, while one claim takes jobs page by page.

    Args:
        limit: the most jobs the claim takes.
        caps: {job type: how many more of it may start}.
        per_user: the per-user limit and each user's running jobs, or None for no limit.
    """

    __slots__ = ("limit", "more", "per_user", "running", "taken", "types")

    def __init__(
        self, limit: int, caps: Mapping[str, int] | None, per_user: PerUser | None
    ) -> None:
        self.limit = limit
        self.taken = 0
        self.more = limit > 0  # whether to read another page
        self.types = dict(caps or {})
        self.per_user = 0 if per_user is None else per_user[0]
        self.running = {} if per_user is None else dict(per_user[1])

    @property
    def want(self) -> int:
        """How many due jobs the next page reads."""
        return self.limit - self.taken

    def page(self, jobs: list[Job]) -> list[Job]:
        """The jobs of a page (at most ``want``, oldest first) to claim; sets ``more``.

        Another page is read only when this one was full and a job in it was skipped (its
        type or user filled up in this page, so the next page's query leaves those out):
        otherwise no due job is left, or the page was all taken.
        """
        want = self.want
        chosen = [job for job in jobs if self.take(job)]
        self.taken += len(chosen)
        self.more = self.taken < self.limit and len(jobs) >= want and len(chosen) < len(jobs)
        return chosen

    def full_types(self) -> list[str]:
        return [t for t, n in self.types.items() if n <= 0]

    def full_users(self) -> list[str]:
        if self.per_user <= 0:
            return []
        return [u for u, n in self.running.items() if n >= self.per_user]

    def take(self, job: Job) -> bool:
        """Count ``job`` in if its type and its user have room; False to skip it."""
        room = self.types.get(job.type)
        if room is not None and room <= 0:
            return False
        if self.per_user > 0:
            running = self.running.get(job.user_id, 0)
            if running >= self.per_user:
                return False
            self.running[job.user_id] = running + 1
        if room is not None:
            self.types[job.type] = room - 1
        return True
