"""Loaded (through PYTHONPATH) only by the agent processes the fleet tests run under libfaketime
with FAKETIME_DONT_FAKE_MONOTONIC=1, so that only the wall clock is skewed. libfaketime 0.9.10
then rejects CPython's time.sleep (clock_nanosleep with TIMER_ABSTIME on CLOCK_MONOTONIC: EINVAL),
while condition waits work; so sleeps become condition waits. Faking the monotonic clock too is
worse: every threading wait hangs."""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
