"""The wall clock, for tests that reckon their expectations in the UTC hour they start in while the code they test
reads its own clock (the database's `now()`, a processor's tally of completed hours)."""

from __future__ import annotations

import time


def clear_of_hour_end(margin_s: float) -> None:
    """Return once the current UTC hour has more than `margin_s` seconds left: at once, or after sleeping into the
    next hour. A test that runs for less than `margin_s` after this then starts and ends in the same hour."""
    left = 3600.0 - time.time() % 3600.0
    if left <= margin_s:
        time.sleep(left + 0.5)
