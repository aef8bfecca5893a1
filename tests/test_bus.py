"""The bus: taps see every event in order; a subscriber gets its events of one publish in
order, each once, in one ``deliver_many`` call when it has one (a socket's one write)."""

from __future__ import annotations

from jobserver.bus import EventBus
from jobserver.models import Event, EventType


def event(seq: int, job_id: str, user_id: str = "u") -> Event:
    return Event(seq, EventType.PROGRESS, job_id, user_id, b"{}")


class One:
    def __init__(self) -> None:
        self.got: list[int] = []

    def deliver(self, event: Event) -> None:
        self.got.append(event.seq)


class Many(One):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def deliver_many(self, events: list[Event]) -> None:
        self.calls.append([e.seq for e in events])


def test_a_publish_reaches_each_subscriber_once_per_event_in_one_call_when_it_can() -> None:
    bus = EventBus()
    tapped: list[int] = []
    bus.add_tap(lambda e: tapped.append(e.seq))
    user, job, both = Many(), One(), Many()
    bus.subscribe(user, user_id="u")
    bus.subscribe(job, job_id="j1")
    bus.subscribe(both, user_id="u", job_id="j1")
    bus.publish([event(1, "j1"), event(2, "j2"), event(3, "j1"), event(4, "j3", "other")])
    assert tapped == [1, 2, 3, 4]
    assert user.calls == [[1, 2, 3]] and both.calls == [[1, 2, 3]]
    assert job.got == [1, 3]
    bus.publish([event(5, "j1")])  # one event: deliver, as always
    assert user.got == [5] and job.got == [1, 3, 5] and both.calls == [[1, 2, 3]]
