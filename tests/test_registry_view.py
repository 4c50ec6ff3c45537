"""The registry view's watch time (controller/registry/view.py): an agent expires only on
heartbeats missed while the watch was confirmed to follow the bucket."""

from __future__ import annotations

from controller.registry.view import Registry
from schemas.messages import Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def heartbeat(hostname: str) -> Heartbeat:
    return Heartbeat(hostname=hostname, instance_id="i", interval_s=1.0)


def test_without_confirmations_agents_expire_by_the_clock() -> None:
    clock = Clock()
    registry = Registry(clock)
    registry.observe("h1", heartbeat("h1"))
    clock.now += 2.9
    assert registry.get("h1") is not None
    clock.now += 0.2
    assert registry.get("h1") is None


def test_no_agent_expires_past_the_last_confirmation() -> None:
    clock = Clock()
    registry = Registry(clock)
    registry.confirm(registry.watch_time())  # the watch delivered the bucket
    registry.observe("h1", heartbeat("h1"))
    clock.now += 10  # the watch stalled: no check confirmed it since
    assert [hb.hostname for hb in registry.live()] == ["h1"]
    registry.confirm(registry.watch_time())  # a check proved it whole: h1 is gone
    assert registry.live() == []


def test_a_lost_watch_suspends_the_view_back_to_its_last_confirmation() -> None:
    clock = Clock()
    registry = Registry(clock)
    registry.confirm(registry.watch_time())
    registry.observe("h1", heartbeat("h1"))
    clock.now += 2.0
    registry.confirm(registry.watch_time())
    clock.now += 5.0  # the watch stalls here, noticed late
    registry.suspend()
    clock.now += 5.0
    registry.resume()  # watched again: h1 has the rest of its time to be heard
    registry.confirm(registry.watch_time())
    assert registry.get("h1") is not None
    clock.now += 0.9
    registry.confirm(registry.watch_time())
    assert registry.get("h1") is not None
    clock.now += 0.2
    registry.confirm(registry.watch_time())
    assert registry.get("h1") is None
