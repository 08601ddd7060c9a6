"""The one cancel token, draining a progress generator, and the redraw throttle of live views."""

import threading

from napari_lesionseg._progress import CancelToken, RedrawThrottle, drain


def test_cancel_token_is_thread_safe_and_sticky():
    token = CancelToken()
    assert not token.is_set()
    thread = threading.Thread(target=token.cancel)
    thread.start()
    thread.join()
    assert token.is_set()


def test_drain_passes_every_event_and_returns_the_value():
    def steps():
        yield 1
        yield 2
        return "done"

    seen = []
    assert drain(steps(), seen.append) == "done" and seen == [1, 2]


def test_throttle_draws_at_once_then_at_most_once_per_interval():
    now = [100.0]
    throttle = RedrawThrottle(1.0, clock=lambda: now[0])
    assert throttle.request() == 0.0  # nothing drawn yet: draw at once
    assert throttle.request() is None  # already scheduled: updates in between are drawn together
    throttle.drawn()
    now[0] += 0.25
    assert throttle.request() == 0.75  # the rest of the interval
    throttle.drawn()
    now[0] += 5.0
    assert throttle.request() == 0.0


def test_the_cpu_redraws_less_often_than_an_accelerator():
    assert RedrawThrottle.for_device("cpu").interval_s > RedrawThrottle.for_device("cuda").interval_s
