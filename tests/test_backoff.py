"""One backoff for every retry loop: the write retries, the controller's NATS setup and
its registry and fleet pause watches (runtime/retry.py)."""

from __future__ import annotations

import itertools

from runtime.retry import RETRY_MAX_S, backoff_s


def test_the_waits_start_at_half_a_second_and_double_up_to_the_bound() -> None:
    assert list(itertools.islice(backoff_s(), 7)) == [0.5, 1, 2, 4, 8, RETRY_MAX_S, RETRY_MAX_S]
    assert list(itertools.islice(backoff_s(5.0), 6)) == [0.5, 1, 2, 4, 5, 5]
