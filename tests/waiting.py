"""The tests' two ways to wait, each written once (see tests/README.md):

- `EventStream`: the events of one node as they arrive (an in-process node's `Event`
  objects, tests/nodes.py; a lab process's JSON lines, tests/lab.py), and `wait` for the
  events matching a name, fields (dicts match as nested subsets), a predicate, since a mark,
  `count` of them; at the deadline an AssertionError lists the last events.
- `wait_until(pred, what, timeout)`: anything else (a screen showing text, a counter, a
  file), checked at each notification of `cond` when given, otherwise polled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

POLL_S = 0.02  # how often wait_until checks a condition nothing notifies about
WAKE_S = 1.0  # longest sleep between two checks of a stream that may have been closed
TAIL = 15  # events a failure message lists


def subset_match(expected: Any, actual: Any) -> bool:
    """``expected`` matches ``actual``; dicts match as nested subsets, the rest by equality."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(k in actual and subset_match(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 10.0, *,
               cond: threading.Condition | None = None,
               state: Callable[[], str] | None = None, poll: float = POLL_S) -> None:
    """Wait until `pred()` is true. With `cond`, `pred` is checked (holding it) at each
    notification; without, it is polled every `poll` seconds. At the deadline an
    AssertionError names `what` and shows `state()` (a screen, a table) when given."""
    deadline = time.monotonic() + timeout
    if cond is not None:
        with cond:
            ok = cond.wait_for(pred, timeout)
    else:
        while not (ok := pred()) and time.monotonic() < deadline:
            time.sleep(poll)
    if not ok:
        raise AssertionError(f"not within {timeout} s: {what}"
                             + (f"\n{state()}" if state is not None else ""))


class EventStream(Generic[T]):
    """One node's events as they arrive, checked against the headless contract, with the
    one event wait. Subclasses say how to read an event's name and fields, and may add to
    the failure message (`describe`)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[T] = []
        self.contract_violations: list[str] = []
        self.ended: str | None = None  # why no more events will come (a process exited)
        self._consumed: set[int] = set()

    # -- how to read an event (overridden for Event objects)
    def name_of(self, event: T) -> str | None:
        return event.get("event") if isinstance(event, Mapping) else None

    def fields_of(self, event: T) -> Mapping[str, Any]:
        return event if isinstance(event, Mapping) else {}

    # -- feeding
    def add(self, event: T, wrong: Iterable[str] = ()) -> None:
        """Append one event (and what about it breaks the headless contract) and wake waiters."""
        with self.cond:
            self.contract_violations += wrong
            self.events.append(event)
            self.cond.notify_all()

    def end(self, why: str) -> None:
        """No more events will come: waits fail now instead of at their deadline."""
        with self.cond:
            self.ended = why
            self.cond.notify_all()

    # -- reading
    def check_contract(self) -> None:
        """Fail if an event broke the headless contract's schema (docs/HEADLESS.md)."""
        with self.cond:
            wrong = list(self.contract_violations)
        if wrong:
            raise AssertionError(f"{self!r} broke the headless contract (docs/HEADLESS.md, "
                                 "lanchat/headless/schema.json):\n" + "\n".join(wrong[:20]))

    def mark(self) -> int:
        """The number of events so far; pass it as ``since`` to wait for newer ones."""
        with self.cond:
            return len(self.events)

    def snapshot(self) -> list[T]:
        with self.cond:
            return list(self.events)

    def named(self, name: str) -> list[T]:
        """Events with this name so far."""
        self.check_contract()
        with self.cond:
            return [e for e in self.events if self.name_of(e) == name]

    def describe(self, n_events: int = TAIL) -> str:
        """What a failed wait shows: the last events."""
        tail = self.snapshot()[-n_events:]
        return f"{self!r}\n--- last {len(tail)} events:\n" + "\n".join(map(str, tail))

    # -- the wait
    def wait(self, name: str | None, pred: Callable[[T], bool] | None = None,
             timeout: float = 10.0, *, count: int = 1, since: int = 0,
             match: Mapping[str, Any] | None = None, consume: bool = False,
             **fields: Any) -> list[T]:
        """The first `count` events at index >= `since` named `name` (any name if None)
        whose fields match `fields` and `match` (dicts as nested subsets, e.g.
        ``peer={"nick": "bob"}``; ``match={"from": ...}`` for keyword names) and for which
        `pred` is true. With `consume`, an event returned once is skipped by later consuming
        waits. Counts incrementally (tens of thousands stay cheap). AssertionError with the
        last events at the deadline or when the stream ends."""
        want = {**(match or {}), **fields}
        deadline = time.monotonic() + timeout
        found: list[int] = []
        at = max(since, 0)
        with self.cond:
            while True:
                for i in range(at, len(self.events)):
                    event = self.events[i]
                    if ((name is None or self.name_of(event) == name)
                            and not (consume and i in self._consumed)
                            and (not want or subset_match(want, self.fields_of(event)))
                            and (pred is None or pred(event))):
                        found.append(i)
                        if len(found) == count:
                            break
                at = found[-1] + 1 if len(found) == count else len(self.events)
                if len(found) == count:
                    if consume:
                        self._consumed.update(found)
                    got = [self.events[i] for i in found]
                    break
                left = deadline - time.monotonic()
                if self.ended is not None or left <= 0:
                    why = (f"{self.ended} before" if self.ended is not None
                           else f"timed out after {timeout} s waiting for")
                    got = None
                    break
                self.cond.wait(min(left, WAKE_S))
        if got is None:
            raise AssertionError(
                f"{why} {count} x {name!r}{f' with {want!r}' if want else ''}"
                f"{' and pred' if pred else ''} (since={since}; got {len(found)})\n"
                + self.describe())
        self.check_contract()
        return got

    def wait_event(self, name: str | None, timeout: float = 10.0,
                   pred: Callable[[T], bool] | None = None, *, consume: bool = True,
                   **kw: Any) -> T:
        """The next matching event not yet returned by a consuming wait (`wait`'s rules)."""
        return self.wait(name, pred, timeout, consume=consume, **kw)[0]

    def wait_until(self, pred: Callable[[list[T]], bool], timeout: float = 10.0,
                   what: str = "condition") -> None:
        """Wait until `pred(all events so far)` is true (checked at each new event)."""
        wait_until(lambda: self.ended is not None or pred(self.events), what, timeout,
                   cond=self.cond, state=self.describe)
        with self.cond:
            if not pred(self.events):
                raise AssertionError(f"{self.ended} before {what}\n{self.describe()}")
