"""The in-memory moving window (`http.ratelimit.MovingWindows`), on a clock the test moves."""

from __future__ import annotations

from limits import parse

from runbase.http.ratelimit import MovingWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_moves_with_the_oldest_counted_request() -> None:
    clock = Clock()
    windows = MovingWindows(clock)
    limit = parse("3/10 seconds")
    answers = []
    for _ in range(3):
        answers.append(windows.hit(limit, "key_a"))
        clock.now += 2
    assert answers == [(True, 2, 10.0), (True, 1, 8.0), (True, 0, 6.0)]
    # Full: refused, and a refusal is not counted (it does not push the window on).
    assert windows.hit(limit, "key_a") == (False, 0, 4.0)
    clock.now += 3.9
    assert windows.hit(limit, "key_a")[0] is False
    clock.now += 0.1  # the first request (t=1000) leaves the window at t=1010 exactly
    assert windows.hit(limit, "key_a") == (True, 0, 2.0)
    assert windows.hit(limit, "key_a")[0] is False
    # Other keys, and other limits of the same key, have windows of their own.
    assert windows.hit(limit, "key_b") == (True, 2, 10.0)
    assert windows.hit(parse("5/minute"), "key_a") == (True, 4, 60.0)
    clock.now += 60
    assert windows.hit(limit, "key_a") == (True, 2, 10.0)  # everything before has left
