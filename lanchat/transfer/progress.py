"""A transfer's progress as people read it: size, rate over the last seconds, time left, a bar.

Pure text (no terminal, no clock of its own): callers feed `(done, now)` samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RATE_WINDOW_S = 3.0  # the rate shown is over roughly the last few seconds
BAR_CELLS = 20
UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: float) -> str:
    """`512 B`, `1.5 MiB`."""
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def clock_text(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Meter:
    """Bytes done of a size, with the rate over a sliding window of samples."""

    size: int
    done: int = 0
    started: float | None = None
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def update(self, done: int, now: float) -> None:
        """A new sample: `done` bytes at monotonic time `now`."""
        if self.started is None:
            self.started = now
        self.done = done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()

    @property
    def fraction(self) -> float:
        """0..1 (1 for an empty file)."""
        return min(1.0, self.done / self.size) if self.size else 1.0

    @property
    def rate(self) -> float:
        """Bytes per second over the window; 0 until two samples."""
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None while unknown."""
        rate = self.rate
        return (self.size - self.done) / rate if rate > 0 else None

    def line(self, label: str, width: int = 80) -> str:
        """`label [#######-------]  42%  12.0 MiB/s  0:07 left`, at most `width` cells."""
        filled = int(self.fraction * BAR_CELLS)
        eta = self.eta
        tail = (f" [{'#' * filled}{'-' * (BAR_CELLS - filled)}] {self.fraction:4.0%}"
                f"  {human_size(self.rate)}/s  {'--:--' if eta is None else clock_text(eta)}"
                " left")
        room = max(8, width - len(tail) - 1)
        if len(label) > room:
            label = label[:room - 1] + "~"
        return label + tail
