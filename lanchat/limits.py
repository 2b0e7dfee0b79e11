"""Bounds on what peers may make this node do: send times, and (for strangers) how fast
they may send, how much they may store, how many identities one address may bring.

No I/O; callers pass `now`.
"""

from __future__ import annotations

import math

# A peer's send time is believed within this window around our clock; outside it (a
# forged or broken clock, 1e300) the message gets the time it arrived. Messages may wait
# in an outbox for weeks, so the past reaches far; clocks run ahead by time-zone mistakes.
SEND_TIME_PAST_S = 366 * 24 * 3600.0
SEND_TIME_FUTURE_S = 24 * 3600.0


def accepted_time(sent: float, now: float) -> float | None:
    """`sent` if it is a sane send time, else None (use the receive time)."""
    if math.isfinite(sent) and now - SEND_TIME_PAST_S <= sent <= now + SEND_TIME_FUTURE_S:
        return sent
    return None
